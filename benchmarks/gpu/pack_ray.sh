#!/usr/bin/env bash
# Pack Ray and Optuna for a GPU machine that has PyTorch but no Ray, no Optuna and no package
# index, where what a run can carry is limited (64 MiB here). Ray's wheel is 79 MB; without
# the parts a sweep never loads (Java jars, RLlib, Serve, the dashboard's source maps) and
# packed with xz it is about 30 MB, plus 12 MB of wheels (Optuna, the dashboard's packages).
#
#   bash benchmarks/gpu/pack_ray.sh DIR [PYTHON_VERSION]     # default 3.12, the GPU image's
#
# (unzip, not python -m zipfile: Ray's binaries need their exec bits.)
# On the GPU machine, with DIR carried there:
#   mkdir -p /tmp/site && python3 -m pip install -q --no-index --no-deps --target /tmp/site DIR/whl/*.whl \
#     && tar -xJf DIR/ray.tar.xz -C /tmp/site && export PYTHONPATH=/tmp/site:$PWD
# The wheels assume the machine already has what Ray's core needs (aiohttp, grpcio, numpy,
# pandas, pyarrow, protobuf, ...); see docs/performance.md, "How the GPU runs were made".
set -euo pipefail
out=$(realpath -m "${1:?usage: pack_ray.sh DIR [PYTHON_VERSION]}")  # the packing below runs elsewhere
py=${2:-3.12}
mkdir -p "$out/whl"
platforms=(--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64
           --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform any)
get() { python3 -m pip download -q --no-deps --only-binary=:all: --python-version "$py" --implementation cp \
          "${platforms[@]}" -d "$1" "${@:2}"; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
get "$tmp" ray==2.60.0
get "$out/whl" optuna==5.0.0 alembic colorlog mako greenlet sqlalchemy tensorboardX \
  jsonschema jsonschema-specifications referencing rpds-py attrs \
  aiohttp_cors colorful opencensus opencensus-context google-api-core googleapis-common-protos proto-plus \
  google-auth cachetools pyasn1 pyasn1-modules rsa opentelemetry-sdk opentelemetry-api \
  opentelemetry-exporter-prometheus opentelemetry-proto opentelemetry-semantic-conventions importlib-metadata \
  pydantic pydantic-core annotated-types typing-inspection smart_open \
  typing_extensions protobuf aiohttp yarl multidict propcache
(cd "$tmp" && unzip -q ray-*.whl -d unpacked \
  && cd unpacked && rm -rf ray/jars ray/rllib ray/serve ray/dashboard/client/build/speedscope* \
  && find ray/dashboard/client/build -name '*.map' -delete \
  && tar -cf - ray ray-*.dist-info | xz -T0 -6 > "$out/ray.tar.xz")
du -sh "$out/ray.tar.xz" "$out/whl"
