"""Training: the per-worker loop, evaluation and self-describing checkpoints."""
from .checkpoint import load_model, load_payload, model_payload
from .evaluate import evaluate, save_evaluation
from .loop import train_func_per_worker, train_local

__all__ = ["evaluate", "load_model", "load_payload", "model_payload", "save_evaluation",
           "train_func_per_worker", "train_local"]
