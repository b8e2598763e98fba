"""Sweeps: Ray Tune + Optuna over trials in reused trial processes, or Ray Train DDP runs."""
