"""A trained Locate-then-Segment model behind the same answer type as the zero-shot path."""
from __future__ import annotations

import cv2
import numpy as np

from ..inference.preprocess import square_input, to_rgb
from ..model.lts import LocateThenSegment
from .parse import parse_expression
from .zero_shot import ReferringResult


class LTSReferrer:
    """Answers referring expressions with an LTS model (`load_lts`).

    image_size: long side the image is resized to, as in training (`data.image_size`).
    min_score: the mean mask probability over the predicted object must reach it, else the answer
    is "not found". Of the pixels above 0.5, the largest connected part is the object.
    """

    def __init__(self, lts: LocateThenSegment, image_size: int = 320, min_score: float = 0.5) -> None:
        self.lts = lts.eval()
        self.image_size = image_size
        self.min_score = min_score

    def refer(self, image: np.ndarray, expression: str, color_order: str = "rgb") -> ReferringResult:
        query = parse_expression(expression)
        rgb = to_rgb(image, color_order)
        height, width = rgb.shape[:2]
        config = self.lts.lseg_config
        x, (h, w) = square_input(rgb, self.image_size, config.mean, config.std)
        device = next(self.lts.parameters()).device
        prob = self.lts.predict(x[None].to(device), [query.expression])[0, :h, :w].float().cpu().numpy()
        prob = cv2.resize(prob, (width, height), interpolation=cv2.INTER_LINEAR)
        count, parts, stats, _ = cv2.connectedComponentsWithStats((prob > 0.5).astype(np.uint8), connectivity=8)
        empty = np.zeros((height, width), bool)
        if count <= 1:
            return ReferringResult(query.expression, query, False, 0.0, empty, None, None, (), "no pixel above 0.5")
        best = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
        mask = parts == best
        score = float(prob[mask].mean())
        if score < self.min_score:
            return ReferringResult(query.expression, query, False, score, empty, None, None, (),
                                   f"best object scores {score:.2f} < {self.min_score}")
        x0, y0 = int(stats[best, cv2.CC_STAT_LEFT]), int(stats[best, cv2.CC_STAT_TOP])
        bbox = (x0, y0, x0 + int(stats[best, cv2.CC_STAT_WIDTH]), y0 + int(stats[best, cv2.CC_STAT_HEIGHT]))
        return ReferringResult(query.expression, query, True, score, mask, bbox, None, (), "locate-then-segment")
