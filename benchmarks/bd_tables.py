"""BD-rate tables of a saved evaluation report against several anchors at once (prints Markdown).

    python benchmarks/bd_tables.py outputs/eval_kodak/report.json [MORE_REPORTS.json ...] --anchor JPEG
        --anchor "x264 420" [--quality psnr|psnr_roi|psnr_bg ...] [--families "x264 420 IPPP veryfast k10" ...]

Several reports of the *same frames* (the same eval command with different --codec lists, run in parallel) are
merged: a family evaluated in more than one of them must have identical summary rows (checked; e.g. JPEG in
each part), since every codec setting is deterministic and independent of the others.

One row per family, one column per (anchor, quality): BD-rate in percent (PCHIP, x axis = whole-frame bpp;
negative = fewer bits for the same PSNR of that region), from ``report.bd_table`` on the report's summary, so
the numbers are the report's own; plus each family's bpp and PSNR range.
"""
from __future__ import annotations

import argparse
import json
import math
import sys

from roi_codec_ros.evaluation.report import bd_table, families

LABELS = {"psnr": "whole", "psnr_roi": "ROI", "psnr_bg": "bg"}


def merge_summaries(reports: list[dict]) -> list[dict]:
    """The summary rows of several reports on the same frames; shared families must agree exactly."""
    frames = {json.dumps(r["meta"].get("frames")) + str(r["meta"].get("source")) for r in reports}
    if len(frames) > 1:
        raise SystemExit(f"reports are not on the same frames: {sorted(frames)}")
    merged: dict[tuple[str, str], dict] = {}
    for report in reports:
        for row in report["summary"]:
            key = (row["family"], row["setting"])
            if key in merged:
                a, b = merged[key], row
                if any(a[k] != b[k] for k in ("num_bytes", "psnr", "psnr_roi", "psnr_bg")):
                    raise SystemExit(f"{key} differs between reports: {a['num_bytes']} vs {b['num_bytes']} bytes")
                continue
            merged[key] = row
    return list(merged.values())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("reports", nargs="+")
    parser.add_argument("--anchor", action="append", required=True)
    parser.add_argument("--quality", action="append", choices=tuple(LABELS))
    parser.add_argument("--families", nargs="*", default=None)
    args = parser.parse_args(argv)
    summary = merge_summaries([json.loads(open(path).read()) for path in args.reports])
    qualities = args.quality or ["psnr"]
    names = args.families or families(summary)
    tables = {anchor: {row["family"]: row for row in bd_table(summary, anchor)} for anchor in args.anchor}
    header = ["codec", "bpp range", "PSNR range"] + [f"vs {a} ({LABELS[q]})" for a in args.anchor for q in qualities]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for name in names:
        rows = [r for r in summary if r["family"] == name]
        bpp = [r["bpp"] for r in rows]
        psnr = [r["psnr"] for r in rows]
        cells = [name, f"{min(bpp):.3f}–{max(bpp):.3f}", f"{min(psnr):.2f}–{max(psnr):.2f} dB"]
        for anchor in args.anchor:
            for q in qualities:
                if name == anchor:
                    cells.append("(anchor)")
                    continue
                value = tables[anchor].get(name, {}).get(f"bd_rate_{q}", float("nan"))
                cells.append("n/a" if value is None or math.isnan(value) else f"{value:+.1f} %")
        print("| " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
