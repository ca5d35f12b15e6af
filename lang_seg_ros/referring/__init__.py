"""Referring expressions ("the car on the left") -> one object's mask (no ROS).

Two paths: `ZeroShotReferrer` works on any LSeg model today (the phrase competes with the
model's vocabulary, `vocabulary.model_vocabulary`; `benchmark` scores it on real frames); the
trainable Locate-then-Segment model (Jing et al., CVPR 2021, arXiv 2103.16284) lives in
`lang_seg_ros.model.lts` (re-exported here), its training in `lang_seg_ros.train.lts` and its
data readers in `lang_seg_ros.data.refcoco`, `lang_seg_ros.data.referring_synthetic` and
`lang_seg_ros.data.referring_camvid`.
"""
from ..model.lts import LocateThenSegment, LTSConfig, load_lts, save_lts
from .metrics import ReferringMetrics
from .parse import ReferringQuery, parse_expression, read_expression
from .select import select_instance
from .vocabulary import load_vocabulary, model_vocabulary
from .zero_shot import DEFAULT_THRESHOLDS, ReferringResult, ZeroShotReferrer, model_thresholds, query_labels

__all__ = [
    "DEFAULT_THRESHOLDS", "LTSConfig", "LocateThenSegment", "ReferringMetrics", "ReferringQuery", "ReferringResult",
    "ZeroShotReferrer", "load_lts", "load_vocabulary", "model_thresholds", "model_vocabulary", "parse_expression",
    "read_expression", "query_labels", "save_lts", "select_instance",
]
