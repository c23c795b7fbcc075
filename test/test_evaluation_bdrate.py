"""Bjøntegaard delta (PCHIP) against examples whose value is known in closed form, and VCEG-M33 data."""
from __future__ import annotations

import math

import numpy as np
import pytest

from roi_codec_ros.evaluation.bdrate import BdError, bd_psnr, bd_rate

RATES = np.array([100.0, 200.0, 400.0, 800.0])


def test_same_quality_at_80_percent_of_the_bits_is_minus_20_percent():
    quality = np.array([30.0, 33.1, 35.9, 38.2])  # any increasing curve
    assert bd_rate(RATES, quality, 0.8 * RATES, quality) == pytest.approx(-20.0, abs=1e-9)
    assert bd_rate(RATES, quality, RATES, quality) == pytest.approx(0.0, abs=1e-12)


def test_textbook_log_linear_curves_with_different_slopes():
    """Anchor Q = 10 log10 R, test Q = 12 log10 R + 1 at R = 1, 2, 4, 8.

    PCHIP reproduces straight lines exactly, so the integrals have a closed form: log10 R_a(Q) = Q/10 and
    log10 R_t(Q) = (Q-1)/12 on the common quality range [1, 10 log10 8]; their difference is linear in Q, so its
    mean is its value at the range's midpoint. BD-PSNR: Q_t - Q_a = 2 L + 1 on L = log10 R in [0, log10 8].
    """
    rates = np.array([1.0, 2.0, 4.0, 8.0])
    q_anchor = 10 * np.log10(rates)
    q_test = 12 * np.log10(rates) + 1
    q_mid = (1.0 + 10 * math.log10(8)) / 2
    expected_rate = (10 ** ((q_mid - 1) / 12 - q_mid / 10) - 1) * 100  # = -31.92 %
    assert bd_rate(rates, q_anchor, rates, q_test) == pytest.approx(expected_rate, abs=1e-9)
    assert expected_rate == pytest.approx(-31.92, abs=0.01)
    assert bd_psnr(rates, q_anchor, rates, q_test) == pytest.approx(1 + math.log10(8), abs=1e-9)


def _vceg_m33_cubic_bd_rate(r_a, q_a, r_t, q_t) -> float:
    """The original VCEG-M33 method (cubic polynomial fit of log-rate over PSNR), as an independent check."""
    p_a, p_t = np.polyfit(q_a, np.log10(r_a), 3), np.polyfit(q_t, np.log10(r_t), 3)
    low, high = max(min(q_a), min(q_t)), min(max(q_a), max(q_t))
    integral = [np.polyval(np.polyint(p), high) - np.polyval(np.polyint(p), low) for p in (p_a, p_t)]
    return (10 ** ((integral[1] - integral[0]) / (high - low)) - 1) * 100


@pytest.mark.parametrize(
    "anchor, test",
    [
        # x265 preset comparison published with the FAU-LMS `bjontegaard` package (BSD-3-Clause)
        (([9487.76, 4593.60, 2486.44, 1358.24], [40.037, 38.615, 36.845, 34.851]),
         ([9787.80, 4469.00, 2451.52, 1356.24], [40.121, 38.651, 36.970, 34.987])),
        # the classic "sample 1" of the widely copied Bjontegaard_metric script
        (([686.76, 309.58, 157.11, 85.95], [40.28, 37.18, 34.24, 31.42]),
         ([893.34, 407.8, 204.93, 112.75], [40.39, 37.21, 34.17, 31.24])),
    ],
)
def test_pchip_agrees_with_vceg_m33_on_smooth_published_curves(anchor, test):
    ours = bd_rate(*anchor, *test)
    assert ours == pytest.approx(_vceg_m33_cubic_bd_rate(*anchor, *test), abs=0.1)


def test_swapping_anchor_and_test_inverts_the_rate_ratio():
    q_a = [31.0, 34.2, 36.9, 39.0]
    q_t = [31.5, 34.0, 37.5, 40.1]
    forward = 1 + bd_rate(RATES, q_a, RATES * 1.1, q_t) / 100
    backward = 1 + bd_rate(RATES * 1.1, q_t, RATES, q_a) / 100
    assert forward * backward == pytest.approx(1.0, abs=1e-12)


def test_point_order_does_not_matter():
    q = np.array([30.0, 33.0, 35.5, 37.0])
    shuffled = [2, 0, 3, 1]
    assert bd_rate(RATES[shuffled], q[shuffled], RATES, q + 0.5) == pytest.approx(bd_rate(RATES, q, RATES, q + 0.5))


def test_incomparable_curves_raise_bd_error():
    with pytest.raises(BdError, match="do not overlap"):
        bd_rate(RATES, [20, 21, 22, 23], RATES, [30, 31, 32, 33])
    with pytest.raises(BdError, match="at least 2"):
        bd_rate(RATES, [20, 21, 22, 23], [100.0], [21.0])
    with pytest.raises(BdError, match="same abscissa"):
        bd_rate(RATES, [20, 21, 21, 23], RATES, [20, 21, 22, 23])
    with pytest.raises(BdError, match="positive"):
        bd_rate([0, 1, 2, 3], [20, 21, 22, 23], RATES, [20, 21, 22, 23])


def test_roi_weight_gain_is_measured_at_equal_bpp_against_alpha_one_of_the_same_model():
    from roi_codec_ros.evaluation.report import roi_weight_gains

    def roi_psnr(bpp, offset):  # linear in log-bpp: PCHIP reproduces it exactly
        return 30.0 + 5.0 * math.log2(bpp / 0.1) + offset

    def row(family, bpp, offset, **params):
        return {"family": family, "bpp": bpp, "psnr_roi": roi_psnr(bpp, offset), "params": params}

    summary = [row("ours α=1", b, 0.0, roi_weight=1.0, model_id="m") for b in (0.1, 0.2, 0.4, 0.8)]
    summary += [row("ours α=8", b, 2.0, roi_weight=8.0, model_id="m") for b in (0.12, 0.25, 0.5, 1.6)]
    summary += [row("other α=8", b, 9.0, roi_weight=8.0, model_id="x") for b in (0.12, 0.25)]  # no α=1: skipped
    summary += [row("jpeg", b, -3.0, quality=50) for b in (0.2, 0.4)]
    (gain,) = roi_weight_gains(summary)
    assert gain["family"] == "ours α=8" and gain["anchor"] == "ours α=1" and gain["roi_weight"] == 8.0
    assert gain["mean_db"] == pytest.approx(2.0, abs=1e-9)
    assert gain["min_db"] == pytest.approx(2.0, abs=1e-9) and gain["max_db"] == pytest.approx(2.0, abs=1e-9)
