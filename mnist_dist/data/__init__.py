"""Data layer: verified IDX datasets, image folders, per-batch device transforms."""
from .datasets import DATASETS, Dataset, dataset_info, load_dataset, locate, split_indices
from .folder import load_image_folder
from .idx import DataError
from .transforms import InputSpec, prepare_batch

__all__ = ["DATASETS", "DataError", "Dataset", "InputSpec", "dataset_info", "load_dataset",
           "load_image_folder", "locate", "prepare_batch", "split_indices"]
