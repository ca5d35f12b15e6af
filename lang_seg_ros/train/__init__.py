"""Training and evaluation of LSeg (Li et al., ICLR 2022, arXiv 2201.03546, Sec. 3-4).

Depends on ``lang_seg_ros.model`` and ``lang_seg_ros.data``; the model never imports this.
"""
from .config import DatasetConfig, OptimConfig, TrainConfig, load_train_config
from .loss import class_weights_from_counts, lseg_loss
from .metrics import ConfusionMatrix, confusion_matrix, fb_iou, mean_iou, per_class_iou, pixel_accuracy, summarize
from .trainer import Trainer, evaluate_model, train

__all__ = [
    "ConfusionMatrix", "DatasetConfig", "OptimConfig", "TrainConfig", "Trainer", "class_weights_from_counts",
    "confusion_matrix", "evaluate_model", "fb_iou", "load_train_config", "lseg_loss", "mean_iou",
    "per_class_iou", "pixel_accuracy", "summarize", "train",
]
