"""mnist-dist: distributed hyperparameter sweeps for MNIST-family classifiers."""
__version__ = "0.1.0"
