"""Bjøntegaard delta metrics (BD-rate, BD-PSNR) with piecewise-cubic Hermite (PCHIP) interpolation.

G. Bjøntegaard, "Calculation of average PSNR differences between RD-curves", VCEG-M33, 2001, with the PCHIP
interpolation of the JCT-VC/JVET common-test-condition spreadsheets (JCTVC-L1100, JVET-T2010) instead of the
original cubic polynomial fit, which overshoots on some curves::

    BD-rate = 10^( (1/(D_hi-D_lo)) * integral_{D_lo}^{D_hi} [log10 R_test(D) - log10 R_anchor(D)] dD ) - 1

log10-rate is interpolated as a function of the quality D (PSNR) through each curve's points, and the integral
runs over the quality range both curves cover. Negative BD-rate = the test codec needs fewer bits for the same
quality. BD-PSNR swaps the axes: the mean quality difference over the common log-rate range.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy.interpolate import PchipInterpolator


class BdError(ValueError):
    """The two curves do not allow a Bjøntegaard comparison (too few points, no overlap, bad values)."""


def _curve(rates: Sequence[float], qualities: Sequence[float], what: str) -> tuple[np.ndarray, np.ndarray]:
    rates = np.asarray(rates, dtype=np.float64).ravel()
    qualities = np.asarray(qualities, dtype=np.float64).ravel()
    if rates.shape != qualities.shape:
        raise BdError(f"{what}: {rates.size} rates but {qualities.size} quality values")
    keep = np.isfinite(rates) & np.isfinite(qualities)
    rates, qualities = rates[keep], qualities[keep]
    if rates.size < 2:
        raise BdError(f"{what}: need at least 2 finite rate-quality points, got {rates.size}")
    if np.any(rates <= 0):
        raise BdError(f"{what}: rates must be positive")
    return rates, qualities


def _mean_difference(x_a: np.ndarray, y_a: np.ndarray, x_b: np.ndarray, y_b: np.ndarray) -> float:
    """Mean of (PCHIP_b - PCHIP_a) over the x range both curves cover; the curves are y(x)."""
    curves = []
    for x, y in ((x_a, y_a), (x_b, y_b)):
        order = np.argsort(x)
        x, y = x[order], y[order]
        if np.any(np.diff(x) <= 0):
            raise BdError("two points of one curve have the same abscissa; cannot interpolate")
        curves.append((x, y))
    low = max(curves[0][0][0], curves[1][0][0])
    high = min(curves[0][0][-1], curves[1][0][-1])
    if not high > low:
        ranges = ", ".join(f"{x[0]:.4g}..{x[-1]:.4g}" for x, _ in curves)
        raise BdError(f"the curves do not overlap (ranges {ranges})")
    integrals = [PchipInterpolator(x, y).integrate(low, high) for x, y in curves]
    return float((integrals[1] - integrals[0]) / (high - low))


def bd_rate(
    rate_anchor: Sequence[float],
    quality_anchor: Sequence[float],
    rate_test: Sequence[float],
    quality_test: Sequence[float],
) -> float:
    """BD-rate of the test curve against the anchor, in percent (negative = test saves bits)."""
    r_a, q_a = _curve(rate_anchor, quality_anchor, "anchor")
    r_t, q_t = _curve(rate_test, quality_test, "test")
    mean_log_ratio = _mean_difference(q_a, np.log10(r_a), q_t, np.log10(r_t))
    return (10.0**mean_log_ratio - 1.0) * 100.0


def bd_psnr(
    rate_anchor: Sequence[float],
    quality_anchor: Sequence[float],
    rate_test: Sequence[float],
    quality_test: Sequence[float],
) -> float:
    """BD-PSNR (mean quality gain of the test curve over the common log-rate range), in the quality's unit."""
    r_a, q_a = _curve(rate_anchor, quality_anchor, "anchor")
    r_t, q_t = _curve(rate_test, quality_test, "test")
    return _mean_difference(np.log10(r_a), q_a, np.log10(r_t), q_t)


def try_bd(func, *curves) -> tuple[float, str]:
    """``func(*curves)`` or ``(nan, reason)`` when the curves cannot be compared; for report tables."""
    try:
        return func(*curves), ""
    except BdError as err:
        return math.nan, str(err)
