"""Training: the per-worker loop, evaluation and self-describing checkpoints.

Names are imported on first use: every Ray Train worker imports this package, and
evaluation's scikit-learn import alone would add over a second to each worker's start."""
import importlib

_EXPORTS = {"evaluate": "evaluate", "save_evaluation": "evaluate", "load_model": "checkpoint",
            "load_payload": "checkpoint", "model_payload": "checkpoint",
            "train_func_per_worker": "loop", "train_local": "loop"}
__all__ = list(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
