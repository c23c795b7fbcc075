"""Budget across cameras (issue 12): split by weight and content, caps/floors, live total, closed loop."""
from __future__ import annotations

import math

import numpy as np
import pytest

from roi_codec_ros.rate_control import BudgetAllocator, RateController, trailing_bitrates, water_fill
from roi_codec_ros.rate_control.simulate import MEASURED_BYTES, SimulatedCodec, SimulatedScene

FPS = 10.0
PIXELS = 960 * 540


def test_split_by_weight_only():
    b = BudgetAllocator(4000, {"front": 2, "left": 1, "right": 1}, content="none")
    shares = b.allocate(0.0)
    assert shares == pytest.approx({"front": 2000, "left": 1000, "right": 1000})
    assert sum(shares.values()) == pytest.approx(4000)


def test_coverage_shifts_bits_within_the_gain():
    b = BudgetAllocator(3000, {"a": 1, "b": 1, "c": 1}, content="coverage", content_gain=0.25, smoothing=0.0)
    for cam, cov in (("a", 0.30), ("b", 0.05), ("c", 0.05)):
        b.report(cam, 0.0, roi_coverage=cov)
    shares = b.allocate(0.0)
    assert sum(shares.values()) == pytest.approx(3000)
    assert shares["a"] > shares["b"] == pytest.approx(shares["c"])
    assert shares["a"] / 1000 <= 1.25 / (1.25 * 0.75 * 0.75) ** (1 / 3) * 1.0001  # bounded by the gain


def test_equal_content_keeps_weight_shares():
    b = BudgetAllocator(4000, {"front": 2, "left": 1, "right": 1}, content="coverage")
    for cam in b.cameras:
        b.report(cam, 0.0, roi_coverage=0.08)
    assert b.allocate(0.0) == pytest.approx({"front": 2000, "left": 1000, "right": 1000})


def test_rd_slope_moves_bits_to_the_steeper_camera_until_slopes_meet():
    b = BudgetAllocator(2000, {"a": 1, "b": 1}, content="rd_slope", content_gain=0.5, smoothing=0.0)
    # a toy RD model per camera: slope (distortion drop per bit) falls as its bits grow, a is 'harder'
    slope = {"a": lambda k: 4.0 / k, "b": lambda k: 1.0 / k}
    shares = {"a": 1000.0, "b": 1000.0}
    for second in range(30):
        for cam in shares:
            b.report(cam, float(second), rd_slope=slope[cam](shares[cam]))
        shares = b.allocate(float(second))
    assert shares["a"] > shares["b"]
    assert sum(shares.values()) == pytest.approx(2000)
    # equal slopes would be a:b = 4:1; the gain bounds each factor to [0.5, 1.5], so at most 3:1
    assert 2.0 < shares["a"] / shares["b"] <= 3.0 + 1e-9


def test_water_fill_caps_and_floors():
    shares = water_fill(3000, np.array([1.0, 1.0, 1.0]), np.zeros(3), np.array([500, np.inf, np.inf]))
    assert shares.tolist() == pytest.approx([500, 1250, 1250])
    shares = water_fill(3000, np.array([1.0, 1.0, 1.0]), np.array([0, 0, 1800]), np.full(3, np.inf))
    assert shares.tolist() == pytest.approx([600, 600, 1800])
    shares = water_fill(1000, np.array([1.0, 1.0]), np.array([800, 800]), np.full(2, np.inf))
    assert shares.tolist() == pytest.approx([500, 500])  # floors over the total: scaled down
    shares = water_fill(3000, np.array([1.0, 1.0]), np.zeros(2), np.array([500, 700]))
    assert shares.tolist() == pytest.approx([500, 700])  # nobody can use the rest


def test_reported_range_redistributes_unusable_bits():
    b = BudgetAllocator(3000, {"a": 1, "b": 1, "c": 1}, content="none")
    b.report("a", 0.0, kbps_min=100, kbps_max=600)  # a static camera that cannot use more
    shares = b.allocate(0.0)
    assert shares["a"] == pytest.approx(600) and shares["b"] == pytest.approx(1200)
    assert sum(shares.values()) == pytest.approx(3000)


def test_period_and_live_total_change():
    b = BudgetAllocator(3000, {"a": 1, "b": 2}, content="coverage", smoothing=0.0)
    b.report("a", 0.0, roi_coverage=0.1)
    b.report("b", 0.0, roi_coverage=0.1)
    first = b.allocate(0.0)
    b.report("a", 0.5, roi_coverage=0.5)
    assert b.allocate(0.5) == first  # within the period: unchanged
    b.set_total(1500)
    halved = b.allocate(0.6)  # a total change applies at once
    assert sum(halved.values()) == pytest.approx(1500)
    assert halved["b"] / halved["a"] == pytest.approx(first["b"] / first["a"])
    later = b.allocate(1.6)  # next period: the new coverage counts
    assert later["a"] / later["b"] > halved["a"] / halved["b"]
    b.set_weight("c", 1)
    assert set(b.allocate(1.7)) == {"a", "b", "c"}
    b.remove_camera("c")
    assert set(b.allocate(1.8)) == {"a", "b"}


def test_stale_reports_are_ignored():
    b = BudgetAllocator(2000, {"a": 1, "b": 1}, content="none", stale_s=3.0)
    b.report("a", 0.0, kbps_max=200)
    assert b.allocate(1.0)["a"] == pytest.approx(200)
    assert b.allocate(5.0)["a"] == pytest.approx(1000)  # the camera went quiet: its cap no longer holds


@pytest.mark.parametrize("kwargs,msg", [
    (dict(total_kbps=-1, weights={"a": 1}), "> 0"), (dict(total_kbps=float("nan"), weights={"a": 1}), "finite"),
    (dict(total_kbps=0, weights={"a": 1}), "> 0"), (dict(total_kbps=100, weights={}), "at least one"),
    (dict(total_kbps=100, weights={"a": 0}), "weight"), (dict(total_kbps=100, weights={"a": float("inf")}), "weight"),
    (dict(total_kbps=100, weights={"a": 1}, content="faces"), "content"),
    (dict(total_kbps=100, weights={"a": 1}, content_gain=1.0), "content_gain"),
    (dict(total_kbps=100, weights={"": 1}), "camera name"),
])
def test_bad_budget_inputs_rejected(kwargs, msg):
    with pytest.raises(ValueError, match=msg):
        BudgetAllocator(**kwargs)


def test_bad_reports_and_changes_rejected():
    b = BudgetAllocator(100, {"a": 1})
    with pytest.raises(KeyError, match="unknown camera"):
        b.report("z", 0.0, roi_coverage=0.1)
    with pytest.raises(ValueError, match="roi_coverage"):
        b.report("a", 0.0, roi_coverage=1.5)
    with pytest.raises(ValueError, match="rd_slope"):
        b.report("a", 0.0, rd_slope=float("nan"))
    with pytest.raises(ValueError, match="> 0"):
        b.set_total(0)
    with pytest.raises(ValueError, match="last camera"):
        b.remove_camera("a")
    assert b.total_kbps == 100


# ------------------------------------------------------------------------------------------------ closed loop
def closed_loop(total_schedule, weights, scales, seconds=30, content="coverage", seed=0, coverages=None):
    """Cameras with simulated codecs of different content (size scales), each with its own controller; the
    allocator re-splits every second from the controllers' state (what the budget node will do)."""
    names = list(weights)
    codecs = {n: SimulatedCodec(bytes_table=[[b * s for b in row] for row in MEASURED_BYTES], seed=seed + i)
              for i, (n, s) in enumerate(zip(names, scales))}
    coverages = coverages or [0.05] * len(names)
    scenes = {n: SimulatedScene(fps=FPS, cut_every_s=8.0, cut_std=0.15, reversion=0.95, coverage_mean=cov,
                                coverage_std=0.0, seed=seed + 10 + i).frames(int(seconds * FPS))
              for i, (n, cov) in enumerate(zip(names, coverages))}
    budget = BudgetAllocator(total_schedule(0.0), weights, content=content)
    targets = budget.allocate(0.0)
    rcs = {n: RateController(targets[n], fps_hint=FPS) for n in names}
    sent = {n: [] for n in names}
    times = [f[0] for f in scenes[names[0]]]
    for k, t in enumerate(times):
        if total_schedule(t) != budget.total_kbps:
            budget.set_total(total_schedule(t))
        for n in names:
            state = rcs[n].state()
            if "kbps_at_rate_min" in state:
                budget.report(n, t, roi_coverage=state["roi_coverage"], achieved_kbps=state["achieved_kbps"],
                              kbps_min=state["kbps_at_rate_min"], kbps_max=state["kbps_at_rate_max"])
        targets = budget.allocate(t)
        for n in names:
            if targets[n] != rcs[n].target_kbps:
                rcs[n].set_target(targets[n])
            _, c, cov = scenes[n][k]
            d = rcs[n].plan(PIXELS, cov, "I", t, roi_weight=8.0)
            nbytes = 0 if d.skip else codecs[n].encode(d.rate, 8.0, cov, "I", PIXELS, c)
            rcs[n].update(d, nbytes)
            sent[n].append(nbytes)
    return np.array(times), {n: np.array(v) for n, v in sent.items()}, rcs


def test_three_encoders_share_a_total_by_weight_and_follow_a_live_change():
    total = lambda t: 3000.0 if t < 15 else 2000.0  # noqa: E731 - a link monitor halves... to two thirds
    weights = {"front": 2.0, "left": 1.0, "right": 1.0}
    times, sent, rcs = closed_loop(total, weights, scales=(1.5, 0.8, 1.2))  # every share inside its range
    share_of_weight = {n: w / sum(weights.values()) for n, w in weights.items()}
    for lo, hi in ((2.0, 15.0), (17.0, 30.0)):
        sel = (times >= lo) & (times < hi)
        span = hi - lo
        kbps = {n: 8 * sent[n][sel].sum() / span / 1000 for n in sent}
        tot = sum(kbps.values())
        assert abs(tot / total(lo) - 1) <= 0.05, (lo, kbps)
        for n in sent:
            assert abs((kbps[n] / tot) / share_of_weight[n] - 1) <= 0.10, (lo, n, kbps)
    # the change at 15 s is followed within 2 s: every trailing 1-s window of the sum from 17 s on
    trailing = sum(trailing_bitrates(times, sent[n]) for n in sent)
    after = trailing[times >= 17.0]
    assert np.all(np.abs(after / 2000.0 - 1) <= 0.15), np.round(after)
    assert all(rc.counters["skipped"] == 0 for rc in rcs.values())


def test_camera_that_cannot_use_its_share_gives_it_to_the_others():
    # 'static' is a tiny image: even its highest rate stays far below a third of the total
    total = lambda t: 3000.0  # noqa: E731
    weights = {"a": 1.0, "b": 1.0, "static": 1.0}
    times, sent, rcs = closed_loop(total, weights, scales=(1.0, 1.0, 0.2), seconds=20, content="none")
    sel = times >= 5.0
    kbps = {n: 8 * sent[n][sel].sum() / 15.0 / 1000 for n in sent}
    assert kbps["static"] < 600
    assert abs(sum(kbps.values()) / 3000 - 1) <= 0.05, kbps
    assert kbps["a"] > 1100 and kbps["b"] > 1100
    assert math.isclose(rcs["static"].state()["last_rate"], 1.0)


def test_more_road_users_more_bits_within_the_content_gain():
    total = lambda t: 3000.0  # noqa: E731
    weights = {"front": 1.0, "left": 1.0, "right": 1.0}
    times, sent, _ = closed_loop(total, weights, scales=(1.0, 1.0, 1.0), seconds=15, coverages=[0.15, 0.05, 0.05])
    sel = times >= 3.0
    kbps = {n: 8 * sent[n][sel].sum() / 12.0 / 1000 for n in sent}
    assert abs(sum(kbps.values()) / 3000 - 1) <= 0.05
    assert kbps["front"] > 1.15 * kbps["left"]
    assert kbps["front"] / 1000 <= 1.25 * 1.05  # the default gain (0.25) bounds the shift
