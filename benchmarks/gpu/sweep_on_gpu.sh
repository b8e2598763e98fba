#!/usr/bin/env bash
# A full sweep (search + --final-seeds) on a lent GPU machine that has PyTorch but no Ray,
# no Optuna and no package index, with Ray carried as benchmarks/gpu/pack_ray.sh packs it;
# the training step against a plain loop is timed first, while Ray unpacks.
#
#   MNIST_DIST_DATA_DIR=DATA bash benchmarks/gpu/sweep_on_gpu.sh RAY_DIR OUT_DIR ARCH [sweep flags]
#
# Everything ends within $GPU_SECONDS (default 540); TRAIN_STEP=0 skips the training-step timing
# (then only Ray's unpacking comes before the sweep). OUT_DIR gets log.txt, the sweep's log
# and its folder without models or Tune's trial folders (ARCH-gpu.tgz, also copied every
# 20 s while the sweep runs, so a run cut by the machine's limit still returns its trials).
set -u
deadline=$((SECONDS + ${GPU_SECONDS:-540}))
left() { echo $((deadline - SECONDS)); }
ray_dir=${1:?usage: sweep_on_gpu.sh RAY_DIR OUT_DIR ARCH [sweep flags]}
out=${2:?}; arch=${3:?}; shift 3
: "${MNIST_DIST_DATA_DIR:?set MNIST_DIST_DATA_DIR to the folder holding mnist/}"
mkdir -p "$out"
log="$out/log.txt"
step() { echo "=== $(date -u +%T) (+${SECONDS}s) $*" | tee -a "$log"; }
export PYTHONUNBUFFERED=1

step "machine"
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
  python3 -c "import torch, sys; print('python', sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda)"
  nproc; } 2>&1 | tee -a "$log"

site=/tmp/site
( mkdir -p $site && python3 -m pip install -q --no-index --no-deps --target $site "$ray_dir"/whl/*.whl \
  && tar -xJf "$ray_dir/ray.tar.xz" -C $site ) >"$out/unpack.txt" 2>&1 &
unpack=$!

[ "${TRAIN_STEP:-1}" = 0 ] || step "training loop vs plain loop vs DataLoader (Ray unpacking meanwhile)"
for bs in $([ "${TRAIN_STEP:-1}" = 0 ] || echo 128 32); do
  # 30,000 images and 5 runs: with 20,000 images and 3 runs (H200, 2026-11-26) one
  # loop's runs spread by 10-19%, more than the gap being measured
  PYTHONPATH=$PWD timeout 60 python3 benchmarks/train_step.py --arch lenet5 --batch-size $bs --images 30000 \
    --repeats 5 --loader-workers 4 2>&1 | tee -a "$log"
done
wait $unpack || { step "Ray did not unpack"; cat "$out/unpack.txt" | tee -a "$log"; exit 1; }
step "Ray unpacked"
export PYTHONPATH=$site:$PWD

results=/tmp/results
name=$arch-gpu
folder=$results/$name
pack() {  # the sweep folder without models, checkpoints or Tune's trial folders
  local tmp="$out/.$name.$BASHPID.tgz"  # the copier's and the last pack's never share a file
  [ -d "$folder" ] && tar -czf "$tmp" -C "$results" --exclude='*.pt' --exclude="$name/tune" "$name" \
    2>/dev/null && mv "$tmp" "$out/$name.tgz"
}
step "sweep: python3 sweeps/run.py $arch --results-dir $results --name $name $*"
( while sleep 20; do pack; done ) & copier=$!
budget=$(( $(left) - 15 )); budget=$(( budget > 1 ? budget : 1 ))  # timeout 0 would mean no limit
timeout $budget \
  python3 sweeps/run.py "$arch" --results-dir "$results" --name "$name" "$@" 2>&1 | tee "$out/sweep-log.txt" | tail -40 >>"$log"
step "sweep exit ${PIPESTATUS[0]}"
kill $copier 2>/dev/null
pack
rm -f "$out"/.*.tgz  # a copier's tar cut short
nvidia-smi --query-gpu=memory.used --format=csv,noheader >>"$log" 2>&1
step "done"
