"""Training: the per-worker loop, where its reports go, and `mnist-dist train`.

Names are imported on first use: every Ray Train worker and trial process imports this
package and should pay only for what it uses."""
import importlib

_EXPORTS = {"train_func_per_worker": "loop"}
__all__ = list(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
