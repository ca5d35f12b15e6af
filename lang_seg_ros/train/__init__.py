"""Training and evaluation of LSeg (Li et al., ICLR 2022, arXiv 2201.03546, Sec. 3-4).

Depends on ``lang_seg_ros.model`` and ``lang_seg_ros.data``; the model never imports this.
"""
from .config import DatasetConfig, LossConfig, OptimConfig, TrainConfig, load_train_config
from .loss import class_weights_from_counts, lseg_loss, lseg_loss_terms, ohem_keep_mask
from .metrics import ConfusionMatrix, confusion_matrix, fb_iou, mean_iou, per_class_iou, pixel_accuracy, summarize
from .trainer import Trainer, evaluate_model, train
from .wordings import WordingBank, WordingConfig, build_wording_bank

__all__ = [
    "ConfusionMatrix", "DatasetConfig", "LossConfig", "OptimConfig", "TrainConfig", "Trainer", "WordingBank",
    "WordingConfig", "build_wording_bank", "class_weights_from_counts", "confusion_matrix", "evaluate_model",
    "fb_iou", "load_train_config", "lseg_loss", "lseg_loss_terms", "mean_iou", "ohem_keep_mask",
    "per_class_iou", "pixel_accuracy", "summarize", "train",
]
