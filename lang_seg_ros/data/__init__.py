"""Data set adapters and augmentation for LSeg training and evaluation (numpy + OpenCV)."""
from .datasets import (
    CAMVID_NAMES,
    FolderSegDataset,
    SyntheticSegDataset,
    ade20k,
    build_dataset,
    camvid,
    folder,
    list_datasets,
    read_names,
    register_dataset,
    synthetic,
)
from .transforms import AugmentConfig, augment, color_jitter, normalize_image

__all__ = [
    "CAMVID_NAMES", "AugmentConfig", "FolderSegDataset", "ade20k", "augment", "build_dataset",
    "camvid", "color_jitter", "folder", "list_datasets", "normalize_image", "read_names",
    "register_dataset", "SyntheticSegDataset", "synthetic",
]
