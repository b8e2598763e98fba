"""Sweeps: Ray Tune + Optuna over Ray Train trials."""
