"""Device choice shared by the codec and the detector adapter (one place for 'auto' and the CUDA check)."""
from __future__ import annotations

import torch


def resolve_device(device: str | torch.device = "cpu") -> torch.device:
    """'auto' -> cuda when available else cpu; otherwise a torch device ('cpu', 'cuda', 'cuda:1')."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {str(device)!r} requested but CUDA is not available (use 'cpu' or 'auto')")
    return dev
