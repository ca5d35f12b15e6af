"""Inference on numpy images: the `Segmenter` facade and its pre/post-processing (no ROS).

Names are imported on first use, so that the label policy (`inference.labels`, pure Python) can
be used without loading torch: the ROS node checks label sets long before its model loads.
"""
from __future__ import annotations

from .._lazy import lazy_exports

_EXPORTS = {
    "MAX_EXPRESSION_CHARS": "labels", "MAX_LABELS": "labels", "MAX_LABEL_CHARS": "labels", "LabelSpec": "labels",
    "clean_expression": "labels", "clean_labels": "labels", "parse_label_spec": "labels", "parse_labels": "labels",
    "PUBLISHED_SCALES": "multiscale", "multiscale_logits": "multiscale",
    "NO_LABEL": "segmenter", "PRECISIONS": "segmenter", "LabelEmbeddingCache": "segmenter",
    "PreparedLabels": "segmenter", "SegmentationResult": "segmenter", "Segmenter": "segmenter",
}
__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
