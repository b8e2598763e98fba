"""`mnist-dist models`: the registry as a table."""
from __future__ import annotations

from . import count_parameters, create_model, get_entry, list_models


def add_arguments(p) -> None:
    p.add_argument("--verbose", "-v", action="store_true", help="also print each model's layers")


def run(args) -> int:
    print(f"{'name':<16}{'input (CxHxW)':<15}{'parameters':>12}  {'dropout':<8}published result")
    for name in list_models():
        e = get_entry(name)
        model = create_model(name)
        shape = "x".join(map(str, e.input.shape))
        drop = "-" if e.dropout is None else str(e.dropout)
        print(f"{name:<16}{shape:<15}{count_parameters(model):>12,}  {drop:<8}{e.published}")
        if args.verbose:
            print(f"  {e.description}\n  baseline: {e.baseline}\n{model}\n")
    return 0
