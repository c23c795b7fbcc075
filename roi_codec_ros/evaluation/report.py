"""Reports of an evaluation run: JSON (everything), Markdown (tables) and RD plots (PNG).

RD curves are per codec *family* (one setting per point, x = mean bpp of the whole frame, y = mean PSNR of the
whole frame / the ROI / the background). BD-rate and BD-PSNR (bdrate.py, PCHIP) compare every family with the
chosen anchor family on each of the three PSNRs.  For our codec, ``roi_weight_gains`` reports the ROI PSNR each
ROI weight gains over uniform quality (α = 1) at equal total bpp.  The per-class ROI PSNR (``psnr_class`` /
``class_frames`` of each summary row) gets its own table.
"""
from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from scipy.interpolate import PchipInterpolator

from roi_codec_ros.files import atomic_path, write_text_atomic

from .bdrate import bd_psnr, bd_rate, try_bd

# (summary key, label) of the quality axes that get a BD column and a plot
QUALITY_AXES = (("psnr", "whole frame"), ("psnr_roi", "ROI"), ("psnr_bg", "background"))
PLOT_FILES = {"psnr": "rd_psnr_whole.png", "psnr_roi": "rd_psnr_roi.png", "psnr_bg": "rd_psnr_bg.png"}


def families(summary: Sequence[dict]) -> list[str]:
    """Family names in first-seen order."""
    seen: dict[str, None] = {}
    for row in summary:
        seen.setdefault(row["family"], None)
    return list(seen)


def curve(summary: Sequence[dict], family: str, quality: str = "psnr") -> tuple[list[float], list[float]]:
    """(bpp, quality) points of one family, sorted by bpp, skipping points whose quality is NaN."""
    points = sorted(
        (row["bpp"], row[quality]) for row in summary if row["family"] == family and not _isnan(row[quality])
    )
    return [p[0] for p in points], [p[1] for p in points]


def _isnan(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def bd_table(summary: Sequence[dict], anchor: str) -> list[dict]:
    """BD-rate (%) and BD-PSNR (dB) of every family against ``anchor`` for whole frame, ROI and background."""
    if anchor not in families(summary):
        raise ValueError(f"anchor {anchor!r} is not one of the evaluated families {families(summary)}")
    rows = []
    for family in families(summary):
        if family == anchor:
            continue
        row = {"family": family, "anchor": anchor}
        for quality, _ in QUALITY_AXES:
            ref = curve(summary, anchor, quality)
            test = curve(summary, family, quality)
            row[f"bd_rate_{quality}"], why_rate = try_bd(bd_rate, *ref, *test)
            row[f"bd_psnr_{quality}"], why_psnr = try_bd(bd_psnr, *ref, *test)
            if why_rate or why_psnr:
                row[f"note_{quality}"] = why_rate or why_psnr
        rows.append(row)
    return rows


def roi_weight_gains(summary: Sequence[dict]) -> list[dict]:
    """For our codec: ROI PSNR gained by each ROI weight α > 1 over α = 1 of the same model, at equal total bpp.

    ``mean_db`` is BD-PSNR of the ROI curve (PCHIP in log-bpp, mean over the common bpp range); ``min_db`` /
    ``max_db`` are the gaps at the α > 1 curve's own points inside that range (α = 1 interpolated there).
    Families are matched by the ``roi_weight`` and ``model_id`` in their params; other codecs are ignored.
    """
    by_model: dict[str, dict[float, str]] = {}
    for row in summary:
        params = row.get("params") or {}
        if "roi_weight" in params and "model_id" in params:
            by_model.setdefault(params["model_id"], {})[float(params["roi_weight"])] = row["family"]
    rows = []
    for weights in by_model.values():
        if 1.0 not in weights:
            continue
        base = curve(summary, weights[1.0], "psnr_roi")
        for weight in sorted(w for w in weights if w > 1.0):
            test = curve(summary, weights[weight], "psnr_roi")
            row = {"family": weights[weight], "anchor": weights[1.0], "roi_weight": weight}
            row["mean_db"], why = try_bd(bd_psnr, *base, *test)
            gaps = []
            if len(base[0]) >= 2 and not why:
                order = np.argsort(base[0])
                x, y = np.log10(np.asarray(base[0])[order]), np.asarray(base[1])[order]
                at = PchipInterpolator(x, y)
                gaps = [q - float(at(np.log10(b))) for b, q in zip(*test) if x[0] <= np.log10(b) <= x[-1]]
            row["min_db"] = min(gaps) if gaps else float("nan")
            row["max_db"] = max(gaps) if gaps else float("nan")
            if why:
                row["note"] = why
            rows.append(row)
    return rows


def _fmt(value, digits: int = 2) -> str:
    return "n/a" if _isnan(value) else f"{value:.{digits}f}"


def markdown_report(
    meta: dict, summary: Sequence[dict], bd_rows: Sequence[dict], plots: dict[str, str], gains: Sequence[dict] = ()
) -> str:
    """The Markdown text of a report."""
    fps = meta.get("fps", float("nan"))
    lines = [f"# Evaluation: {meta.get('title', meta.get('source', ''))}", ""]
    for key in ("source", "frames", "resolution", "roi", "detector", "fps", "anchor", "command"):
        if key in meta:
            lines.append(f"- {key}: `{meta[key]}`" if key == "command" else f"- {key}: {meta[key]}")
    lines.append("")
    has_task = any("task_recall" in row for row in summary)
    header = ["codec", "setting", "bpp", f"kbit/s @{fps:g} fps", "PSNR", "PSNR ROI", "PSNR bg", "MS-SSIM",
              "MS-SSIM ROI", "MS-SSIM bg", "enc ms", "dec ms"]
    if has_task:
        header += ["det. precision", "det. recall"]
    lines += ["## Per setting (means over frames)", "", "| " + " | ".join(header) + " |",
              "|" + "---|" * len(header)]
    for row in summary:
        cells = [row["family"], row["setting"], _fmt(row["bpp"], 3), _fmt(row["bitrate_bps"] / 1e3, 0),
                 _fmt(row["psnr"]), _fmt(row["psnr_roi"]), _fmt(row["psnr_bg"]), _fmt(row["msssim"], 4),
                 _fmt(row["msssim_roi"], 4), _fmt(row["msssim_bg"], 4), _fmt(row["encode_ms"], 1),
                 _fmt(row["decode_ms"], 1)]
        if has_task:
            cells += [_fmt(row.get("task_precision"), 3), _fmt(row.get("task_recall"), 3)]
        lines.append("| " + " | ".join(cells) + " |")
    if bd_rows:
        anchor = bd_rows[0]["anchor"]
        lines += ["", f"## BD-rate against {anchor} (PCHIP; negative = fewer bits for the same PSNR)", "",
                  "| codec | BD-rate whole | BD-rate ROI | BD-rate bg | BD-PSNR whole | BD-PSNR ROI | BD-PSNR bg |",
                  "|---|---|---|---|---|---|---|"]
        for row in bd_rows:
            rates = [_fmt(row[f"bd_rate_{q}"], 1) + (" %" if not _isnan(row[f"bd_rate_{q}"]) else "")
                     for q, _ in QUALITY_AXES]
            psnrs = [_fmt(row[f"bd_psnr_{q}"], 2) + (" dB" if not _isnan(row[f"bd_psnr_{q}"]) else "")
                     for q, _ in QUALITY_AXES]
            lines.append(f"| {row['family']} | " + " | ".join(rates + psnrs) + " |")
        notes = sorted({row[k] for row in bd_rows for k in row if k.startswith("note_")})
        if notes:
            lines += ["", "n/a: " + "; ".join(notes)]
    if gains:
        lines += ["", "## ROI weight: ROI PSNR gained over α = 1 at equal total bpp", "",
                  "| codec | vs | mean (BD-PSNR ROI) | min | max |", "|---|---|---|---|---|"]
        for row in gains:
            lines.append(f"| {row['family']} | {row['anchor']} | {_fmt(row['mean_db'])} dB | {_fmt(row['min_db'])} dB "
                         f"| {_fmt(row['max_db'])} dB |")
    lines += class_psnr_lines(summary)
    if plots:
        lines += ["", "## RD curves", ""]
        lines += [f"![{name}]({path})" for name, path in plots.items()]
    return "\n".join(lines) + "\n"


def class_psnr_lines(summary: Sequence[dict]) -> list[str]:
    """Markdown table of the per-class ROI PSNR: one row per setting, one column per class (mean dB over the
    frames where the class is present, that frame count in brackets); none when no frame had a known class."""
    classes = sorted({c for row in summary for c in row.get("psnr_class") or {}})
    if not classes:
        return []
    lines = ["", "## PSNR per ROI class (dB, mean over frames with the class; frames in brackets)", "",
             "| codec | setting | " + " | ".join(classes) + " |", "|" + "---|" * (len(classes) + 2)]
    for row in summary:
        values, counts = row.get("psnr_class") or {}, row.get("class_frames") or {}
        cells = [f"{_fmt(values[c])} ({counts[c]})" if c in values else "" for c in classes]
        lines.append(f"| {row['family']} | {row['setting']} | " + " | ".join(cells) + " |")
    return lines


def rd_plot(summary: Sequence[dict], quality: str, path: Path, title: str) -> Path:
    """PSNR (``quality``) vs bpp of every family, one line per family, saved as PNG (Agg, no display)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 4.4), dpi=100)
    ax = fig.add_subplot(1, 1, 1)
    markers = "os^vD<>ph*Xd"
    for i, family in enumerate(families(summary)):
        xs, ys = curve(summary, family, quality)
        if xs:
            ax.plot(xs, ys, marker=markers[i % len(markers)], markersize=4, linewidth=1.2, label=family)
    return _save_figure(fig, ax, "bits per pixel (whole frame)", "PSNR [dB]", title, path, legend="lower right")


def _save_figure(fig, ax, xlabel: str, ylabel: str, title: str, path: Path, legend: str) -> Path:
    """Labels, grid and legend of a report plot, written whole or not at all."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, loc=legend)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp)
    return path


ROI_BG_PLOT = "bd_roi_vs_bg.png"


def roi_bg_plot(bd_rows: Sequence[dict], anchor: str, path: Path, title: str) -> Path | None:
    """One point per family at (background BD-rate, ROI BD-rate) against ``anchor`` (Fathima et al. Fig. 3): down
    is fewer ROI bits, left fewer background bits; points of one codec at several ROI weights trace its trade-off.
    None when no family has both figures."""
    points = [(r["family"], r.get("bd_rate_psnr_bg"), r.get("bd_rate_psnr_roi")) for r in bd_rows]
    points = [(f, bg, roi) for f, bg, roi in points if not _isnan(bg) and not _isnan(roi)]
    if not points:
        return None
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 4.8), dpi=100)
    ax = fig.add_subplot(1, 1, 1)
    markers = "os^vD<>ph*Xd"
    for i, (family, bg, roi) in enumerate(points):
        ax.plot([bg], [roi], marker=markers[i % len(markers)], linestyle="none", markersize=7, label=family)
    ax.axhline(0.0, color="grey", linewidth=0.8)
    ax.axvline(0.0, color="grey", linewidth=0.8)
    return _save_figure(fig, ax, f"background BD-rate vs {anchor} [%]", f"ROI BD-rate vs {anchor} [%]", title, path,
                        legend="best")


def _json_safe(value):
    if isinstance(value, float):
        return None if math.isnan(value) or math.isinf(value) else value
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if hasattr(value, "item"):  # numpy scalars
        return _json_safe(value.item())
    return value


def write_report(
    out_dir: str | Path,
    meta: dict,
    summary: Sequence[dict],
    records: Sequence[dict] = (),
    anchor: str | None = None,
    plots: bool = True,
) -> dict[str, Path]:
    """Write report.json, report.md and the RD plots into ``out_dir``; returns the written paths by name."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    anchor = anchor or (families(summary)[0] if summary else None)
    bd_rows = bd_table(summary, anchor) if anchor and len(families(summary)) > 1 else []
    meta = dict(meta, anchor=anchor)
    gains = roi_weight_gains(summary)
    written: dict[str, Path] = {}
    plot_links: dict[str, str] = {}
    if plots and summary:
        for quality, label in QUALITY_AXES:
            if all(_isnan(row[quality]) for row in summary):
                continue
            path = rd_plot(summary, quality, out / PLOT_FILES[quality], f"{label} PSNR vs bpp — {meta.get('title', '')}")
            written[PLOT_FILES[quality]] = path
            plot_links[f"{label} PSNR vs bpp"] = path.name
        path = roi_bg_plot(bd_rows, anchor, out / ROI_BG_PLOT, f"ROI vs background BD-rate — {meta.get('title', '')}")
        if path is not None:
            written[ROI_BG_PLOT] = path
            plot_links[f"ROI vs background BD-rate against {anchor}"] = path.name
    write_text_atomic(
        out / "report.json",
        json.dumps(_json_safe({"meta": meta, "summary": list(summary), "bd": bd_rows, "roi_weight_gains": gains,
                               "records": list(records)}), indent=1),
    )
    written["report.json"] = out / "report.json"
    write_text_atomic(out / "report.md", markdown_report(meta, summary, bd_rows, plot_links, gains))
    written["report.md"] = out / "report.md"
    return written
