"""Image datasets and per-model preprocessing for the split pipeline."""

from testbed.split.data import photos  # noqa: F401  (registers the photos dataset)
from testbed.split.data.datasets import (
    DATASETS,
    IMAGE_EXTENSIONS,
    SAMPLE_PHOTOS,
    Dataset,
    DatasetSpec,
    dataset_names,
    load_dataset,
    parse_dataset,
)
from testbed.split.data.preprocess import IMAGENET_MEAN, IMAGENET_STD, Preprocess, preprocess_for

__all__ = [
    "DATASETS",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "IMAGE_EXTENSIONS",
    "SAMPLE_PHOTOS",
    "Dataset",
    "DatasetSpec",
    "Preprocess",
    "dataset_names",
    "load_dataset",
    "parse_dataset",
    "preprocess_for",
]
