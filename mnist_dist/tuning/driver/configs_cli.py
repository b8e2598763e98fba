"""`mnist-dist sweeps`: the shipped sweep configs, where they are, and what each searches.

Copy one, edit it and pass it with `mnist-dist sweep ARCH --config FILE`."""
from __future__ import annotations

from ...models import list_models
from ..spec import CONFIGS_DIR, load_spec


def add_arguments(p) -> None:
    p.add_argument("--path", action="store_true", help="print only the folder holding them")


def run(args) -> int:
    if args.path:
        print(CONFIGS_DIR)
        return 0
    print(f"shipped sweep configs in {CONFIGS_DIR}")
    for arch in list_models():
        spec = load_spec(arch)
        print(f"  {arch + '.yaml':<22}{spec.trials:>3} trials  {spec.metric} ({spec.mode})  "
              f"searches {', '.join(spec.space)}")
    print("copy one and run `mnist-dist sweep ARCH --config FILE` to search differently")
    return 0
