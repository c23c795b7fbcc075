"""Task-aware metric: does the detector still see on the decoded frame what it saw on the original?

The detector's output on the *original* frame is the reference (no human labels needed). Its detections on the
decoded frame are matched greedily, highest score first, to the unmatched reference box of the same class with
the highest IoU >= 0.5 (the PASCAL/COCO matching rule). Counts are pooled over frames per codec setting:
precision = TP / (TP + FP), recall = TP / (TP + FN).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

IOU_THRESHOLD = 0.5


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix (len(a), len(b)) of xyxy boxes (``torchvision.ops.box_iou``; 0 where both boxes are empty)."""
    import torch
    from torchvision.ops import box_iou as torch_box_iou

    a = torch.as_tensor(np.asarray(a, np.float64).reshape(-1, 4))
    b = torch.as_tensor(np.asarray(b, np.float64).reshape(-1, 4))
    return torch.nan_to_num(torch_box_iou(a, b), nan=0.0).numpy()


@dataclass
class MatchCounts:
    """True positives, false positives (extra detections) and false negatives (missed reference objects)."""

    tp: int = 0
    fp: int = 0
    fn: int = 0

    def __add__(self, other: "MatchCounts") -> "MatchCounts":
        return MatchCounts(self.tp + other.tp, self.fp + other.fp, self.fn + other.fn)

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else float("nan")

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else float("nan")


def match_detections(
    ref_boxes: np.ndarray,
    ref_classes: np.ndarray,
    test_boxes: np.ndarray,
    test_classes: np.ndarray,
    test_scores: np.ndarray | None = None,
    iou_threshold: float = IOU_THRESHOLD,
) -> MatchCounts:
    """Match test detections to reference detections (same class, IoU >= threshold, each used once)."""
    ref_boxes = np.asarray(ref_boxes, np.float64).reshape(-1, 4)
    test_boxes = np.asarray(test_boxes, np.float64).reshape(-1, 4)
    ref_classes = np.asarray(ref_classes).reshape(-1)
    test_classes = np.asarray(test_classes).reshape(-1)
    if len(ref_classes) != len(ref_boxes) or len(test_classes) != len(test_boxes):
        raise ValueError("one class id per box is required")
    if len(test_boxes) == 0 or len(ref_boxes) == 0:
        return MatchCounts(0, len(test_boxes), len(ref_boxes))
    order = np.argsort(-np.asarray(test_scores)) if test_scores is not None else np.arange(len(test_boxes))
    iou = box_iou(test_boxes, ref_boxes)
    iou[test_classes[:, None] != ref_classes[None, :]] = -1.0
    used = np.zeros(len(ref_boxes), bool)
    tp = 0
    for i in order:
        candidates = np.where(used, -1.0, iou[i])
        j = int(np.argmax(candidates))
        if candidates[j] >= iou_threshold:
            used[j] = True
            tp += 1
    return MatchCounts(tp, len(test_boxes) - tp, len(ref_boxes) - tp)
