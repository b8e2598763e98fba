"""A trained model plus the preprocessing its training data implies, for image files."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch

from ..models.checkpoint import input_spec, load_model
from ..evaluation import predict_proba
from .preprocess import RECIPES, ImageError, dark_background, preprocess, read_image, recipe_for


@dataclass
class Prediction:
    path: str
    label: str
    probability: float
    probabilities: dict[str, float]
    image: np.ndarray = field(repr=False)  # the 28x28 input, as the model saw it

    def top(self, k: int) -> list[tuple[str, float]]:
        return sorted(self.probabilities.items(), key=lambda kv: -kv[1])[:k]

    def to_dict(self) -> dict:
        return {"path": self.path, "label": self.label, "probability": self.probability,
                "probabilities": self.probabilities}


@dataclass
class Failure:
    path: str
    error: str


class Predictor:
    """Loads a model file once; predicts files or ready 28x28 uint8 arrays."""

    def __init__(self, model_path: str | Path, recipe: str = "auto", device: str = "cpu",
                 thicken: bool = True):
        if recipe != "auto" and recipe not in RECIPES:
            raise ValueError(f"unknown preprocessing {recipe!r}; choose auto or {', '.join(RECIPES)}")
        self.model, self.payload = load_model(model_path, device)
        self.device = device
        self.spec = input_spec(self.payload)
        self.mean = float(self.payload["normalization"]["mean"])
        self.std = float(self.payload["normalization"]["std"])
        self.classes = [str(c) for c in self.payload["classes"]]
        self.recipe = recipe_for(self.payload) if recipe == "auto" else recipe
        self.dark = dark_background(self.payload)
        self.thicken = thicken

    def prepare(self, path: str | Path) -> np.ndarray:
        """One file -> its (28, 28) uint8 model input; ImageError says what is wrong."""
        return preprocess(read_image(path), self.recipe, self.dark, self.thicken)

    def probabilities(self, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """(N, 28, 28) uint8 -> (N, classes) probabilities, through the same input
        transform and normalisation as training and `evaluate`."""
        x = torch.from_numpy(np.ascontiguousarray(images, dtype=np.uint8))
        return predict_proba(self.model, x, self.spec, self.mean, self.std, self.device,
                             batch_size).numpy()

    def predict_files(self, paths: list[Path], batch_size: int = 256) -> list[Prediction | Failure]:
        """One result per path, in order; a bad file becomes a Failure, the rest go on.
        Works in chunks so that a folder of many photos never sits in memory at once."""
        results: list[Prediction | Failure] = []
        for start in range(0, len(paths), batch_size):
            results += self._predict_chunk(paths[start:start + batch_size], batch_size)
        return results

    def _predict_chunk(self, paths: list[Path], batch_size: int) -> list[Prediction | Failure]:
        prepared: list[np.ndarray | Failure] = []
        for p in paths:
            try:
                prepared.append(self.prepare(p))
            except ImageError as e:
                prepared.append(Failure(str(p), str(e)))
        good = [im for im in prepared if not isinstance(im, Failure)]
        probs = iter(self.probabilities(np.stack(good), batch_size) if good else [])
        return [im if isinstance(im, Failure) else self._prediction(str(p), im, next(probs))
                for p, im in zip(paths, prepared)]

    def _prediction(self, path: str, image: np.ndarray, probs: np.ndarray) -> Prediction:
        best = int(probs.argmax())
        return Prediction(path, self.classes[best], float(probs[best]),
                          {c: float(v) for c, v in zip(self.classes, probs)}, image)


def save_preprocessed(predictions: list[Prediction], folder: str | Path) -> list[Path]:
    """Write each model input as a 28x28 PNG named after its source file (made unique)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written, used = [], set()
    for pred in predictions:
        stem, n = Path(pred.path).stem, 1
        name = f"{stem}.png"
        while name in used:  # same file name from two folders
            n += 1
            name = f"{stem}-{n}.png"
        used.add(name)
        cv2.imwrite(str(folder / name), pred.image)
        written.append(folder / name)
    return written
