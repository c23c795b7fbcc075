"""Per-frame records of a rate-controlled stream -> acceptance figures and a plot of achieved vs target.

Shared by ``roi-codec encode-stream``, ``roi-codec eval-bag`` and ``scripts/rate_control_eval.py``.  A record is
a dict with at least ``t`` (seconds), ``bytes`` (0 for a skipped frame) and ``target`` (kbps in force).
matplotlib is imported only by ``plot_records``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from .meter import tracking_summary, trailing_bitrates, window_bitrates


def records_summary(records: Sequence[dict], schedule, window_s: float = 1.0) -> dict:
    """``tracking_summary`` of the records plus per-window start times (aligned ``window_s`` windows)."""
    t = [float(r["t"]) for r in records]
    b = [float(r["bytes"]) for r in records]
    out = tracking_summary(t, b, schedule, window_s=window_s)
    starts, _ = window_bitrates(t, b, window_s)
    out["window_start_s"] = starts.tolist()
    out["frames"] = len(records)
    out["skipped"] = int(sum(1 for r in records if r.get("skip")))
    return out


def window_table(times_s: Sequence[float], nbytes: Sequence[float], window_s: float = 1.0) -> list[dict]:
    """[{start_s, kbps, frames}] for aligned windows (the eval reports' per-window bitrate, no target needed)."""
    t = np.asarray(times_s, dtype=np.float64)
    starts, kbps = window_bitrates(t, nbytes, window_s)
    counts = [int(np.sum((t >= s - 1e-9) & (t < s + window_s - 1e-9))) for s in starts]
    return [{"start_s": float(s), "kbps": float(k), "frames": n} for s, k, n in zip(starts, kbps, counts)]


def plot_records(records: dict[str, list[dict]], path: str | Path, title: str,
                 panels: Sequence[tuple[str, Sequence[str]]] | None = None) -> None:
    """PNG of achieved bitrate (trailing 1-s window as a line, aligned windows as dots) against the target
    (dashed, with the +-15 % band) over time; one panel per ``(title, run names)`` (default: one panel, all runs)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(records)
    panels = list(panels) if panels else [("", names)]
    panels = [(t, list(g)) for t, g in panels if list(g)] or [("", names)]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 3.4), dpi=90, squeeze=False)
    axes = axes[0]
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    offset = 0
    for ax, (panel_title, group) in zip(axes, panels):
        for i, name in enumerate(group):
            rec = records[name]
            t = np.array([r["t"] for r in rec], dtype=np.float64)
            b = np.array([r["bytes"] for r in rec], dtype=np.float64)
            target = np.array([r["target"] for r in rec], dtype=np.float64)
            c = colours[(i + offset) % len(colours)]
            ax.plot(t, trailing_bitrates(t, b), color=c, lw=1.2, label=f"{name}")
            ax.step(t, target, where="post", color=c, lw=0.9, ls="--")
            starts, kbps = window_bitrates(t, b)
            ax.plot(starts + 0.5, kbps, "o", color=c, ms=3)
            ax.fill_between(t, 0.85 * target, 1.15 * target, step="post", color=c, alpha=0.08)
        offset += 3
        ax.set_xlabel("time (s)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
        if panel_title:
            ax.set_title(panel_title, fontsize=8)
    axes[0].set_ylabel("kbps")
    fig.suptitle(title, fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
