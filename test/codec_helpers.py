"""Helpers shared by tests that compare decodes across processes and thread counts."""
from __future__ import annotations

import numpy as np
import torch


def decode_with_threads(codec, data: bytes, threads: int) -> np.ndarray:
    """Decode with torch set to ``threads`` (pixels are bit-exact only for a matching CPU thread count class)."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return codec.decode(data)
    finally:
        torch.set_num_threads(before)
