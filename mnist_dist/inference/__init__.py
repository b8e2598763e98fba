"""Using trained models: `predict` image files, `evaluate` on a dataset or an image
folder, `export` to TorchScript/ONNX. Preprocessing (preprocess.py) turns photos and
scans into the 28x28 inputs the model was trained on."""
# Before anything loads cv2: the data layer sets OpenCV's pixel limit, which cv2 reads
# only once, when it is loaded.
from ..data import images as _images  # noqa: F401
from .predictor import Failure, Prediction, Predictor, save_preprocessed
from .preprocess import ImageError, read_image, recipe_for

__all__ = ["Failure", "ImageError", "Prediction", "Predictor", "read_image", "recipe_for",
           "save_preprocessed"]
