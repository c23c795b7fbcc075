"""Online model of a frame's size vs the codec's knobs: ``ln(bytes / pixel)`` as a function of rate and ROI weight.

Both candidates of issue 12 are one Kalman-filtered linear regression (recursive least squares whose parameters
drift as a random walk, i.e. RLS with a forgetting rate per parameter), differing only in the feature map:

* ``loglinear``: ``ln bpp = t0 + t1*rate + t2*ln(alpha) + t3*coverage*ln(alpha)``.  A straight line in rate,
  refitted around the operating point; the drift keeps it local (the real curve is concave, see
  docs/rate_control.md).
* ``table``: ``ln bpp`` at ``knots`` rates, linearly interpolated, plus the same two ROI-weight terms.  A scene
  change moves all knots together (the process noise has a common-mode part), the curve's shape only slowly.

Why a Kalman filter rather than plain exponential-forgetting RLS: with forgetting, the covariance of directions
that are not excited (the slope, while the rate sits still) grows without bound and the next rate change makes a
wild step.  Random-walk process noise with a per-parameter size grows them only linearly and the covariance is
capped at the prior, so the model stays well conditioned however long the rate is constant.  The observation noise
is estimated online from the innovations, and an innovation beyond ``cut_sigma`` (a scene cut) reopens the
content (intercept) uncertainty so the next frame is refitted at once.

Nothing here knows a particular codec: the prior is wide (``ModelPrior``), and a calibration (``fit_prior``) or a
saved state (``state``/``load_state``) can replace it.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np

MODEL_KINDS = ("loglinear", "table")


@dataclass(frozen=True)
class ModelPrior:
    """Where the model starts, and how fast each part may drift per frame (standard deviations, natural log units).

    ln_bpp_mid: ln(bytes/pixel) at the middle of the rate range (0.02 bytes/px ~ 0.16 bpp; +-2 covers 0.003..0.15).
    slope: d ln(bytes)/d rate over the whole range (a codec spanning ~4.5x from rate min to max has ~1.5).
    roi_weight_slope: d ln(bytes)/d ln(alpha); its sign depends on the codec, so the prior is 0 +- 0.2.
    """

    ln_bpp_mid: float = math.log(0.02)
    ln_bpp_mid_std: float = 2.0
    slope: float = 1.5
    slope_std: float = 1.0
    roi_weight_slope: float = 0.0
    roi_weight_slope_std: float = 0.2
    coverage_roi_weight_slope: float = 0.0
    coverage_roi_weight_slope_std: float = 1.0
    # per-frame drift: content changes fast, the curve's shape and the ROI terms slowly
    content_drift: float = 0.05
    shape_drift: float = 0.01
    roi_drift: float = 0.003
    noise_std: float = 0.1
    min_slope: float = 0.05  # bytes must grow with rate; keeps the inverse well defined

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if not math.isfinite(value):
                raise ValueError(f"ModelPrior.{name} must be finite, got {value}")
            if name.endswith(("_std", "drift")) and value < 0:
                raise ValueError(f"ModelPrior.{name} must be >= 0, got {value}")
        if self.noise_std <= 0 or self.min_slope <= 0:
            raise ValueError("ModelPrior.noise_std and min_slope must be > 0")


class KalmanRegression:
    """y = phi . theta + v, theta a random walk: a scalar-observation Kalman filter (= RLS with drift)."""

    def __init__(self, mean: np.ndarray, cov: np.ndarray, drift_cov: np.ndarray, noise_var: float,
                 cut_sigma: float = 4.0, reopen: np.ndarray | None = None):
        self.theta = np.array(mean, dtype=np.float64)
        self.P = np.array(cov, dtype=np.float64)
        self.P_cap = self.P.copy()  # the prior: no direction ever becomes more uncertain than it was at start
        self.Q = np.array(drift_cov, dtype=np.float64)
        self.noise_var = float(noise_var)
        self.noise_floor = float(noise_var) * 0.01
        self.cut_sigma = float(cut_sigma)
        self.reopen = reopen  # covariance added at a scene cut (content direction)
        self.updates = 0
        self.cuts = 0

    def predict(self, phi: np.ndarray) -> tuple[float, float]:
        """Mean and standard deviation (parameter + observation noise) of y at features phi."""
        phi = np.asarray(phi, dtype=np.float64)
        mean = float(phi @ self.theta)
        var = float(phi @ self.P @ phi) + self.noise_var
        return mean, math.sqrt(max(var, 0.0))

    def update(self, phi: np.ndarray, y: float) -> float:
        """Fold in one observation; returns the innovation (y - prediction) before the update."""
        phi = np.asarray(phi, dtype=np.float64)
        self.P = self.P + self.Q
        innovation = float(y - phi @ self.theta)
        s = float(phi @ self.P @ phi) + self.noise_var
        if self.reopen is not None and innovation * innovation > self.cut_sigma**2 * s and self.updates > 0:
            # a scene cut: trust this frame over the history in the content direction
            self.P = self.P + self.reopen
            s = float(phi @ self.P @ phi) + self.noise_var
            self.cuts += 1
        gain = self.P @ phi / s
        self.theta = self.theta + gain * innovation
        # Joseph form keeps P symmetric positive semi-definite in floating point
        ikh = np.eye(len(phi)) - np.outer(gain, phi)
        self.P = ikh @ self.P @ ikh.T + self.noise_var * np.outer(gain, gain)
        self._cap()
        # observation noise from the innovations (robust: one outlier moves it by at most a clipped step)
        expected = float(phi @ self.P @ phi)
        sample = min(innovation * innovation, 9.0 * s) - expected
        self.noise_var = max(self.noise_floor, 0.95 * self.noise_var + 0.05 * sample)
        self.updates += 1
        return innovation

    def _cap(self) -> None:
        d = np.sqrt(np.clip(np.diag(self.P), 1e-300, None))
        cap = np.sqrt(np.diag(self.P_cap))
        scale = np.minimum(1.0, cap / d)
        if np.any(scale < 1.0):
            self.P = self.P * np.outer(scale, scale)

    def state(self) -> dict:
        return {"theta": self.theta.tolist(), "P": self.P.tolist(), "noise_std": math.sqrt(self.noise_var),
                "updates": self.updates, "cuts": self.cuts}

    def load_state(self, state: dict) -> None:
        theta = np.asarray(state["theta"], dtype=np.float64)
        P = np.asarray(state["P"], dtype=np.float64)
        if theta.shape != self.theta.shape or P.shape != self.P.shape or not (np.isfinite(theta).all() and np.isfinite(P).all()):
            raise ValueError("model state does not match this model's parameters")
        self.theta, self.P = theta, P
        self.noise_var = float(state["noise_std"]) ** 2
        self.updates = int(state.get("updates", 0))
        self.cuts = int(state.get("cuts", 0))


class BitsModel:
    """ln(bytes/pixel) vs (rate, ROI weight, ROI coverage) for one class of frames (type and size).

    Rate is normalised to [0, 1] over ``rate_range`` internally, so the prior means the same for any knob range.
    """

    def __init__(self, kind: str = "loglinear", prior: ModelPrior | None = None,
                 rate_range: tuple[float, float] = (0.0, 1.0), knots: int = 5, cut_sigma: float = 4.0):
        if kind not in MODEL_KINDS:
            raise ValueError(f"model kind must be one of {MODEL_KINDS}, got {kind!r}")
        lo, hi = (float(v) for v in rate_range)
        if not (math.isfinite(lo) and math.isfinite(hi) and hi > lo):
            raise ValueError(f"rate_range must be two finite numbers lo < hi, got {rate_range}")
        if kind == "table" and int(knots) < 2:
            raise ValueError(f"a table model needs >= 2 knots, got {knots}")
        self.kind, self.prior, self.rate_range = kind, prior or ModelPrior(), (lo, hi)
        self.knots = np.linspace(0.0, 1.0, int(knots)) if kind == "table" else None
        p = self.prior
        if kind == "loglinear":
            # parameters: ln bpp at rate 0 (normalised), slope, alpha term, coverage*alpha term
            mean = [p.ln_bpp_mid - 0.5 * p.slope, p.slope, p.roi_weight_slope, p.coverage_roi_weight_slope]
            std = np.array([p.ln_bpp_mid_std, p.slope_std, p.roi_weight_slope_std, p.coverage_roi_weight_slope_std])
            # intercept and slope correlated so that the mid-rate value has exactly ln_bpp_mid_std
            cov = np.diag(std**2)
            cov[0, 0] = p.ln_bpp_mid_std**2 + 0.25 * p.slope_std**2
            cov[0, 1] = cov[1, 0] = -0.5 * p.slope_std**2
            drift = np.diag([p.content_drift**2, p.shape_drift**2, p.roi_drift**2, p.roi_drift**2])
            reopen = np.zeros((4, 4))
            reopen[0, 0] = p.ln_bpp_mid_std**2
        else:
            k = self.knots
            n = len(k)
            mean = np.concatenate([p.ln_bpp_mid + p.slope * (k - 0.5), [p.roi_weight_slope, p.coverage_roi_weight_slope]])
            ones, centred = np.ones(n), k - 0.5
            cov = np.zeros((n + 2, n + 2))
            cov[:n, :n] = p.ln_bpp_mid_std**2 * np.outer(ones, ones) + p.slope_std**2 * np.outer(centred, centred)
            cov[:n, :n] += (0.1 * p.slope_std) ** 2 * np.eye(n)  # room for curvature
            cov[n, n], cov[n + 1, n + 1] = p.roi_weight_slope_std**2, p.coverage_roi_weight_slope_std**2
            drift = np.zeros_like(cov)
            drift[:n, :n] = p.content_drift**2 * np.outer(ones, ones) + p.shape_drift**2 * np.eye(n)
            drift[n, n] = drift[n + 1, n + 1] = p.roi_drift**2
            reopen = np.zeros_like(cov)
            reopen[:n, :n] = p.ln_bpp_mid_std**2 * np.outer(ones, ones)
        self.filter = KalmanRegression(np.asarray(mean, float), cov, drift, p.noise_std**2, cut_sigma, reopen)
        self.innovations: list[float] = []  # recent, for the statistics (|error| of the prediction)

    # ------------------------------------------------------------------------------------- features
    def _u(self, rate) -> np.ndarray:
        lo, hi = self.rate_range
        return np.clip((np.asarray(rate, dtype=np.float64) - lo) / (hi - lo), 0.0, 1.0)

    def features(self, rate, roi_weight: float, coverage: float) -> np.ndarray:
        """Feature rows for one or several rates (same ROI weight and coverage)."""
        u = np.atleast_1d(self._u(rate))
        la = math.log(max(float(roi_weight), 1e-9))
        roi = np.column_stack([np.full_like(u, la), np.full_like(u, float(coverage) * la)])
        if self.kind == "loglinear":
            return np.column_stack([np.ones_like(u), u, roi])
        hat = np.clip(1.0 - np.abs(u[:, None] - self.knots[None, :]) * (len(self.knots) - 1), 0.0, None)
        return np.column_stack([hat, roi])

    # ------------------------------------------------------------------------------------- use
    def predict(self, rate: float, roi_weight: float, coverage: float) -> tuple[float, float]:
        """(mean, std) of ln(bytes/pixel) at these knobs."""
        return self.filter.predict(self.features(rate, roi_weight, coverage)[0])

    def curve(self, rates: np.ndarray, roi_weight: float, coverage: float) -> np.ndarray:
        """Mean ln(bytes/pixel) at each rate, made non-decreasing (the inverse needs a monotone curve)."""
        y = self.features(rates, roi_weight, coverage) @ self.filter.theta
        return np.maximum.accumulate(y)

    def update(self, rate: float, roi_weight: float, coverage: float, nbytes: float, pixels: int) -> float:
        """Fold in a coded frame; returns the prediction error in ln(bytes) before the update."""
        y = math.log(max(float(nbytes), 1.0) / pixels)
        innovation = self.filter.update(self.features(rate, roi_weight, coverage)[0], y)
        self._keep_monotone()
        self.innovations = (self.innovations + [innovation])[-50:]
        return innovation

    def _keep_monotone(self) -> None:
        th = self.filter.theta
        if self.kind == "loglinear":
            th[1] = max(th[1], self.prior.min_slope)
        else:
            n = len(self.knots)
            step = self.prior.min_slope / (n - 1)
            for i in range(1, n):
                th[i] = max(th[i], th[i - 1] + step)

    def slope(self, rate: float, roi_weight: float, coverage: float) -> float:
        """d ln(bytes)/d rate at this point (per unit of the caller's rate)."""
        lo, hi = self.rate_range
        if self.kind == "loglinear":
            return float(self.filter.theta[1]) / (hi - lo)
        k = self.knots
        u = float(self._u(rate))
        i = min(int(u * (len(k) - 1)), len(k) - 2)
        th = self.filter.theta
        return float(th[i + 1] - th[i]) * (len(k) - 1) / (hi - lo)

    @property
    def rms_error(self) -> float:
        """RMS of the recent prediction errors in ln(bytes) (0.1 = about 10 %)."""
        if not self.innovations:
            return float("nan")
        return float(np.sqrt(np.mean(np.square(self.innovations))))

    def state(self) -> dict:
        return {"kind": self.kind, "rate_range": list(self.rate_range),
                "knots": None if self.knots is None else self.knots.tolist(), **self.filter.state(),
                "rms_error": self.rms_error}

    def load_state(self, state: dict) -> None:
        if state.get("kind") != self.kind:
            raise ValueError(f"model state is of kind {state.get('kind')!r}, this model is {self.kind!r}")
        self.filter.load_state(state)

    def copy_shifted(self, offset: float) -> "BitsModel":
        """A new model with this one's curve shifted by ``offset`` in ln(bytes) and the prior's uncertainty:
        the start for a frame class not seen yet (another size, or the first P-frame)."""
        other = BitsModel(self.kind, self.prior, self.rate_range, 2 if self.knots is None else len(self.knots),
                          self.filter.cut_sigma)
        other.filter.theta = self.filter.theta.copy()
        n = len(other.filter.theta) - 2
        if self.kind == "loglinear":
            other.filter.theta[0] += offset
        else:
            other.filter.theta[:n] += offset
        return other


def fit_prior(samples: Sequence[dict], rate_range: tuple[float, float] = (0.0, 1.0), **overrides) -> ModelPrior:
    """A ModelPrior from calibration encodes (dicts with rate, bytes, pixels[, roi_weight, coverage]): least squares
    of ln(bytes/pixel) on [1, rate]; the ROI terms keep the generic prior (a calibration rarely varies them)."""
    if len(samples) < 2:
        raise ValueError("fit_prior needs at least two calibration samples")
    lo, hi = rate_range
    u = np.array([(float(s["rate"]) - lo) / (hi - lo) for s in samples])
    y = np.array([math.log(float(s["bytes"]) / float(s["pixels"])) for s in samples])
    if np.ptp(u) <= 0:
        raise ValueError("fit_prior needs samples at two or more different rates")
    slope, intercept = np.polyfit(u, y, 1)
    residual = y - (intercept + slope * u)
    values = dict(ln_bpp_mid=float(intercept + 0.5 * slope), ln_bpp_mid_std=0.5, slope=float(slope),
                  slope_std=0.3, noise_std=float(max(np.std(residual), 0.02)))
    values.update(overrides)
    return ModelPrior(**values)
