"""Model registry; importing the package registers the nine architectures."""
from . import zoo  # noqa: F401  (registers the architectures)
from .registry import (ModelEntry, UnknownModelError, count_parameters, create_model, get_entry,
                       list_models, register)

__all__ = ["ModelEntry", "UnknownModelError", "count_parameters", "create_model", "get_entry",
           "list_models", "register"]
