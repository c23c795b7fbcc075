"""Device choice shared by the codec, the detector adapter and training (one place for 'auto' and the CUDA check)."""
from __future__ import annotations

import torch


def resolve_device(device: str | torch.device = "cpu", local_rank: int | None = None) -> torch.device:
    """'auto' -> cuda when available else cpu; otherwise a torch device ('cpu', 'cuda', 'cuda:1').

    ``local_rank`` (distributed training): 'auto' and a bare 'cuda' pick GPU ``local_rank % device_count`` so that
    each process of a node gets its own GPU.
    """
    if str(device) == "auto":
        if not torch.cuda.is_available():
            return torch.device("cpu")
        device = "cuda"
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {str(device)!r} requested but CUDA is not available (use 'cpu' or 'auto')")
    if dev.type == "cuda" and dev.index is None and local_rank is not None:
        dev = torch.device("cuda", local_rank % torch.cuda.device_count())
    return dev
