"""Learning curves of the default model from its training logs (docs/training.md): one PNG, three panels.

    python scripts/plot_training.py [--stages docs/training] [--long runs/default_long] \
                                    [--out docs/images/training_curve.png]

1. the shipped model's stages 3-5 (``docs/training/default_stage{3,4,5}_val.csv``): validation PSNR at each
   validation rate against the cumulative step of the whole training (stages 1+2 = 6,691 steps before stage 3);
2. the long run (``<long>/val.csv``, warm-started from the shipped model at step 0 of its own count): validation
   PSNR per rate and the RD score (lower is better) against its step.  Its validation set (16 images, the widened
   beta range 2..1024) differs from the stages' (8 images, beta 8..512), so the two panels are not comparable in
   absolute terms, only each within itself;
3. training throughput (``images_per_s`` of every ``log.csv``) against the cumulative step.

Reads CSVs only (no torch); a missing long run just leaves its panel empty.
"""
from __future__ import annotations

import argparse
import csv
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

# steps trained before each stage's own step 0 (stage 1: 2,691, stage 2: 4,000, stage 3: 2,691, stage 4: 4,200)
STAGE_OFFSETS = {"default_stage3": 6691, "default_stage4": 9382, "default_stage5": 13582}
SHIPPED_STEPS = 15582  # the shipped model = end of stage 5; the long run starts from it


def read_csv(path: Path) -> list[dict]:
    """Rows of a log; a resumed run logs the steps after its last checkpoint again: the later row wins."""
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    last = {(r["step"], r.get("rate")): i for i, r in enumerate(rows)}
    return [r for i, r in enumerate(rows) if last[(r["step"], r.get("rate"))] == i]


def by_rate(rows: list[dict], offset: int = 0) -> dict[float, tuple[list[int], list[float]]]:
    curves: dict[float, tuple[list[int], list[float]]] = {}
    for r in rows:
        steps, psnr = curves.setdefault(float(r["rate"]), ([], []))
        steps.append(int(r["step"]) + offset)
        psnr.append(float(r["psnr"]))
    return curves


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--stages", default="docs/training", help="folder with default_stage*_{log,val}.csv")
    ap.add_argument("--long", default="runs/default_long", help="the long run's folder (log.csv, val.csv)")
    ap.add_argument("--out", default="docs/images/training_curve.png")
    args = ap.parse_args(argv)
    stages, long_dir = Path(args.stages), Path(args.long)

    fig, axes = plt.subplots(1, 3, figsize=(16, 4.6))
    colours = {0.0: "tab:blue", 0.25: "tab:cyan", 0.5: "tab:green", 0.75: "tab:olive", 1.0: "tab:red"}

    ax = axes[0]
    for name, offset in STAGE_OFFSETS.items():
        for rate, (steps, psnr) in sorted(by_rate(read_csv(stages / f"{name}_val.csv"), offset).items()):
            ax.plot(steps, psnr, "o-", color=colours.get(rate, "k"), label=f"rate {rate:g}" if name.endswith("4") else None)
        ax.axvline(offset, color="0.8", lw=0.8)
        ax.text(offset + 80, 0.02, name.replace("default_", ""), transform=ax.get_xaxis_transform(), fontsize=8)
    ax.set(title="shipped model, stages 3-5: validation (8 images, alpha 1)", xlabel="cumulative training step",
           ylabel="PSNR [dB]")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)

    ax = axes[1]
    val = read_csv(long_dir / "val.csv")
    for rate, (steps, psnr) in sorted(by_rate(val).items()):
        ax.plot(steps, psnr, "o-", color=colours.get(rate, "k"), label=f"rate {rate:g}")
    ax.set(title="long run (configs/default_long.yaml): validation (16 images)", xlabel="long-run step",
           ylabel="PSNR [dB]")
    ax.grid(alpha=0.3)
    if val:
        scores = {int(r["step"]): float(r["score"]) for r in val}
        twin = ax.twinx()
        twin.plot(list(scores), list(scores.values()), "k--", marker="s", label="RD score (lower = better)")
        twin.set_ylabel("RD score")
        twin.legend(loc="lower right", fontsize=8)
        ax.legend(loc="upper left", fontsize=8)
    else:
        ax.text(0.5, 0.5, f"no {long_dir / 'val.csv'}", ha="center", transform=ax.transAxes)

    ax = axes[2]
    for name, offset in STAGE_OFFSETS.items():
        log = read_csv(stages / f"{name}_log.csv")
        ax.plot([int(r["step"]) + offset for r in log], [float(r["images_per_s"]) for r in log], ".-", ms=3,
                label=name.replace("default_", ""))
    log = read_csv(long_dir / "log.csv")
    if log:
        ax.plot([int(r["step"]) + SHIPPED_STEPS for r in log], [float(r["images_per_s"]) for r in log], ".-", ms=3,
                label="long run (bf16, shared cores)")
    ax.set(title="training throughput (batch 8, 2 CPU cores)", xlabel="cumulative training step",
           ylabel="images/s", ylim=(0, None))
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)

    fig.tight_layout()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
