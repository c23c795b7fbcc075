"""Detections: boxes in frame pixels with class ids, scores and the class names of the model that made them.

The same type holds the detector adapter's output and boxes that come from elsewhere (e.g. another node's
detections, see ``Detections.from_boxes``), so the ROI mask code is shared by both.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Sequence

import numpy as np


@dataclass
class Detections:
    """K detections: ``boxes`` (K,4) float32 xyxy in frame pixels, ``class_ids`` (K,) int64, ``scores`` (K,) float32.

    ``names`` maps class id -> class name (from the model, or built from external labels).
    """

    boxes: np.ndarray
    class_ids: np.ndarray
    scores: np.ndarray
    names: dict[int, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.boxes = np.asarray(self.boxes, dtype=np.float32).reshape(-1, 4)
        self.class_ids = np.asarray(self.class_ids, dtype=np.int64).reshape(-1)
        self.scores = np.asarray(self.scores, dtype=np.float32).reshape(-1)
        k = len(self.boxes)
        if len(self.class_ids) != k or len(self.scores) != k:
            raise ValueError(
                f"Detections: {k} boxes but {len(self.class_ids)} class ids and {len(self.scores)} scores"
            )
        if not np.all(np.isfinite(self.boxes)):
            raise ValueError("Detections: boxes contain NaN or infinite values")
        if np.any(self.boxes[:, 2] < self.boxes[:, 0]) or np.any(self.boxes[:, 3] < self.boxes[:, 1]):
            raise ValueError("Detections: boxes must be xyxy with x2 >= x1 and y2 >= y1")
        self.names = {int(i): str(n) for i, n in dict(self.names).items()}

    def __len__(self) -> int:
        return len(self.boxes)

    @classmethod
    def empty(cls, names: dict[int, str] | None = None) -> "Detections":
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.int64), np.zeros(0, np.float32), names or {})

    @classmethod
    def from_boxes(
        cls,
        boxes: Sequence[Sequence[float]] | np.ndarray,
        labels: Iterable[int | str] | None = None,
        scores: Iterable[float] | None = None,
        names: dict[int, str] | None = None,
        xywh: bool = False,
    ) -> "Detections":
        """Build detections from external boxes (frame pixels, xyxy, or centre-xywh with ``xywh=True``).

        ``labels`` are class ids or class names (strings, e.g. from ``vision_msgs``); names are matched to
        ``names`` case-insensitively and unknown names get new ids. Missing labels become class ``-1``
        ("unlabelled", kept only when the mask config selects all classes); missing scores are 1.0.
        """
        b = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
        if xywh:
            b = np.concatenate([b[:, :2] - b[:, 2:] / 2, b[:, :2] + b[:, 2:] / 2], axis=1)
        k = len(b)
        table = dict(names or {})
        ids = np.full(k, -1, np.int64)
        if labels is not None:
            labels = list(labels)
            if len(labels) != k:
                raise ValueError(f"from_boxes: {k} boxes but {len(labels)} labels")
            by_name = {n.casefold(): i for i, n in table.items()}
            for j, label in enumerate(labels):
                if isinstance(label, (int, np.integer)):
                    ids[j] = int(label)
                    continue
                key = str(label).casefold()
                if key not in by_name:
                    new_id = max(table, default=-1) + 1
                    table[new_id] = str(label)
                    by_name[key] = new_id
                ids[j] = by_name[key]
        s = np.ones(k, np.float32) if scores is None else np.asarray(list(scores), dtype=np.float32)
        return cls(b, ids, s, table)

    def select(self, keep: np.ndarray | Sequence[int] | Sequence[bool]) -> "Detections":
        """A subset by boolean mask or indices (names kept)."""
        keep = np.asarray(keep)
        return Detections(self.boxes[keep], self.class_ids[keep], self.scores[keep], self.names)

    def rescaled(self, from_hw: tuple[int, int], to_hw: tuple[int, int]) -> "Detections":
        """The same detections for the frame resized from ``from_hw`` to ``to_hw`` (H, W)."""
        sx, sy = to_hw[1] / from_hw[1], to_hw[0] / from_hw[0]
        b = self.boxes * np.array([sx, sy, sx, sy], np.float32)
        return Detections(b, self.class_ids.copy(), self.scores.copy(), self.names)

    def label(self, i: int) -> str:
        """Class name of detection ``i`` (the id as text when the model has no name for it)."""
        cid = int(self.class_ids[i])
        return self.names.get(cid, str(cid))

    def to_list(self) -> list[dict]:
        """JSON-friendly list of {box, class_id, name, score}."""
        return [
            {
                "box": [round(float(v), 2) for v in self.boxes[i]],
                "class_id": int(self.class_ids[i]),
                "name": self.label(i),
                "score": round(float(self.scores[i]), 4),
            }
            for i in range(len(self))
        ]
