"""Using trained models: `predict` image files, `evaluate` on a dataset or an image
folder, `export` to TorchScript/ONNX. Preprocessing (preprocess.py) turns photos and
scans into the 28x28 inputs the model was trained on."""
from .predictor import Failure, Prediction, Predictor, save_preprocessed
from .preprocess import ImageError, read_image, recipe_for

__all__ = ["Failure", "ImageError", "Prediction", "Predictor", "read_image", "recipe_for",
           "save_preprocessed"]
