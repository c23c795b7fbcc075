"""Helpers shared by tests that compare decodes across processes and thread counts."""
from __future__ import annotations

import numpy as np
import torch


def decode_with_threads(decoder, data: bytes, threads: int) -> np.ndarray:
    """``decoder.decode(data)`` (a codec or a stream decoder) with torch set to ``threads``."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return decoder.decode(data)
    finally:
        torch.set_num_threads(before)
