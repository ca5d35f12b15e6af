"""Training and evaluation of LSeg (Li et al., ICLR 2022, arXiv 2201.03546, Sec. 3-4).

Depends on ``lang_seg_ros.model`` and ``lang_seg_ros.data``; the library (model, inference,
objects, referring, pipeline, ros) never imports this. Names are imported on first use, so that
registering the ``train`` / ``eval`` commands on the CLI loads neither torch nor the trainer.
"""
from __future__ import annotations

from .._lazy import lazy_exports

_EXPORTS = {
    "DatasetConfig": "config", "LossConfig": "config", "OptimConfig": "config", "TrainConfig": "config",
    "load_train_config": "config",
    "class_weights_from_counts": "loss", "lseg_loss": "loss", "lseg_loss_terms": "loss", "ohem_keep_mask": "loss",
    "ConfusionMatrix": "metrics", "confusion_matrix": "metrics", "fb_iou": "metrics", "mean_iou": "metrics",
    "per_class_iou": "metrics", "pixel_accuracy": "metrics", "summarize": "metrics",
    "Trainer": "trainer", "evaluate_model": "trainer", "train": "trainer",
    "WordingBank": "wordings", "WordingConfig": "wordings", "build_wording_bank": "wordings",
}
__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
