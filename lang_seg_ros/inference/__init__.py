"""Inference on numpy images: the `Segmenter` facade and its pre/post-processing (no ROS)."""
from .labels import MAX_LABELS, clean_labels, parse_labels
from .multiscale import PUBLISHED_SCALES, multiscale_logits
from .segmenter import NO_LABEL, PRECISIONS, LabelEmbeddingCache, SegmentationResult, Segmenter

__all__ = [
    "MAX_LABELS", "NO_LABEL", "PRECISIONS", "PUBLISHED_SCALES", "LabelEmbeddingCache", "SegmentationResult",
    "Segmenter", "clean_labels", "multiscale_logits", "parse_labels",
]
