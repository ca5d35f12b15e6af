"""Inference on numpy images: the `Segmenter` facade and its pre/post-processing (no ROS)."""
from .labels import (MAX_EXPRESSION_CHARS, MAX_LABEL_CHARS, MAX_LABELS, LabelSpec, clean_expression, clean_labels,
                     parse_label_spec, parse_labels)
from .multiscale import PUBLISHED_SCALES, multiscale_logits
from .segmenter import NO_LABEL, PRECISIONS, LabelEmbeddingCache, PreparedLabels, SegmentationResult, Segmenter

__all__ = [
    "MAX_EXPRESSION_CHARS", "MAX_LABELS", "MAX_LABEL_CHARS", "NO_LABEL", "PRECISIONS", "PUBLISHED_SCALES",
    "LabelEmbeddingCache", "LabelSpec", "PreparedLabels", "SegmentationResult", "Segmenter", "clean_expression",
    "clean_labels", "multiscale_logits", "parse_label_spec", "parse_labels",
]
