"""The trend and the prediction: log best LR against log axis value, with its uncertainty.

Pure numpy. A *point* is one swept value's best LR with the bracket the sweep located it to
and bootstrap draws of it (sweeps/transfer/points.py). The fit is a weighted least-squares
line through (log value, log best LR), each point weighted by 1 / sigma^2 where sigma is half
its bracket's log width (a point located to within 1.1x counts for more than one located to
within a grid step). The exponent's and the prediction's intervals come from refitting every
bootstrap draw (seeds resampled, the best LR drawn within its bracket): the 2.5th and 97.5th
percentiles.

Then, in words, when a number should not be trusted (`judge`):
- the trend bends: the points sit off the line by more than their own uncertainty
  (reduced chi-square above `BEND_CHI2` with three or more points);
- the longest runs overfit: at the best LR their validation loss was already rising at the end,
  or (on the horizon) the longest swept horizon's best loss is above a shorter one's (a longer
  run will want a much smaller LR than any trend says);
- the target is far beyond the swept range: more than `FAR` times the swept span (in log) past
  its end;
- the interval is too wide to act on: the prediction's 95 % interval spans more than `WIDE`x;
- the trend misses itself: fitted without the swept value nearest the target, it misses that
  value by an amount that, carried to the target, passes `HELD_OUT` (log2) (`held_out_error`);
  with two values this cannot be checked, and the prediction is not called reliable;
- the target runs in another regime than the swept values (`regime`, in words: e.g. the
  target's run repeats the training data while the swept runs never did).

On the horizon, with four or more swept values, the slowing trend (`slowing_trend`) can
check itself on the longest swept value (`slowing_held_out_error`) and predicts instead of
the line where that miss is the smaller (`choose_method`); `judge` then applies the same
rules to it, its own held-out miss and interval, but not the chi-square. Where every LR's
loss curve can be read (sweeps/transfer/curves.py, three horizons or more), that predicts the
horizon instead of either, judged the same way.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

BEND_CHI2 = 4.0  # reduced chi-square of the line above this: the trend bends
FAR = 2.0  # a target more than 2x the swept log span past its end is far beyond it
WIDE = 4.0  # a 95 % interval wider than 4x is too wide to act on
MIN_SIGMA = 0.05  # log units: no point is known better than 5 %
FLAT = 0.5  # |log2 change| over the whole swept range below this: "does not move"
HELD_OUT = 0.5  # log2: a held-out miss carried to the target past this: not reliable
METHOD_WORDS = {"power_law": "the trend", "slowing": "the slowing trend",
                "loss_curves": "the loss curves"}  # fmt: skip


@dataclass
class Fit:
    exponent: float
    exponent_interval: list[float]
    intercept: float  # log best LR at value 1
    chi2: float  # reduced chi-square of the line (NaN with two points)
    draws: np.ndarray = field(repr=False)  # (B, 2) slope, intercept per bootstrap draw

    def predict(self, value: float) -> float:
        return math.exp(self.intercept + self.exponent * math.log(value))

    def interval(self, value: float) -> list[float]:
        logs = self.draws[:, 1] + self.draws[:, 0] * math.log(value)
        lo, hi = np.percentile(logs, [2.5, 97.5])
        return [math.exp(lo), math.exp(hi)]


def weighted_line(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> tuple[float, float]:
    """(slope, intercept) of the weighted least-squares line y = a x + b."""
    sw = w.sum()
    mx, my = (w * x).sum() / sw, (w * y).sum() / sw
    sxx = (w * (x - mx) ** 2).sum()
    slope = (w * (x - mx) * (y - my)).sum() / sxx if sxx > 0 else 0.0
    return float(slope), float(my - slope * mx)


def sigma_of(bracket: list[float] | None, best: float) -> float:
    """A point's uncertainty in log LR: half its bracket's log width (at least MIN_SIGMA)."""
    if not bracket:
        return 1.0  # no bracket: known to about e either way
    lo, hi = bracket
    return max(MIN_SIGMA, 0.5 * math.log(max(hi, best) / min(lo, best)))


def fit_power_law(
    values: list[float], best_lrs: list[float], sigmas: list[float], draws: np.ndarray
) -> Fit:
    """Fit log best LR = exponent x log value + intercept. `draws` (B, n): bootstrap draws of
    each point's best LR (columns in the order of `values`)."""
    x = np.log(np.asarray(values, float))
    y = np.log(np.asarray(best_lrs, float))
    s = np.asarray(sigmas, float)
    w = 1.0 / s**2
    slope, intercept = weighted_line(x, y, w)
    resid = (y - (slope * x + intercept)) / s
    chi2 = float((resid**2).sum() / (len(x) - 2)) if len(x) > 2 else math.nan
    boot = np.array([weighted_line(x, np.log(d), w) for d in np.asarray(draws, float)])
    lo, hi = np.percentile(boot[:, 0], [2.5, 97.5])
    return Fit(slope, [float(lo), float(hi)], intercept, chi2, boot)


def held_out_error(
    values: list[float], best_lrs: list[float], sigmas: list[float], target: float
) -> float | None:
    """The trend checked against itself: fitted without the swept value nearest the target,
    how far (log2) it misses that value, carried to the target in proportion to how much
    further the target lies (in log). None with fewer than three values. A trend that bends
    shows here even when the points are too coarse for the chi-square to see it; it cannot see
    a bend that starts past the swept values."""
    if len(values) < 3:
        return None
    order = np.argsort(values)
    held = order[-1] if target > max(values) else order[0]
    keep = [i for i in range(len(values)) if i != held]
    x = np.log(np.asarray(values, float))
    y = np.log(np.asarray(best_lrs, float))
    w = 1.0 / np.asarray(sigmas, float)[keep] ** 2
    slope, intercept = weighted_line(x[keep], y[keep], w)
    miss = (slope * x[held] + intercept - y[held]) / math.log(2)
    near = x[keep][np.argmin(np.abs(x[keep] - x[held]))]
    step = abs(x[held] - near)
    return abs(miss) * abs(math.log(target) - x[held]) / step if step > 0 else None


def judge(
    fit: Fit,
    values: list[float],
    target: float,
    *,
    axis: str,
    overfitting_at: float | None = None,
    at_range_edge: list[float] | None = None,
    carried_error: float | None = None,
    regime: str | None = None,
    method: str = "power_law",
    interval: list[float] | None = None,
    stay_lr: float | None = None,
    at_window_edge: bool = False,
    longer_worse: tuple[float, float] | None = None,
) -> tuple[bool, str]:
    """(reliable, note): whether to trust the prediction at `target`, and why, in words.
    `carried_error`: `held_out_error`; `regime`: a reason, in words, why the target runs in
    another regime than the swept values (e.g. it repeats the data, they did not).
    `method`: "power_law" (the line `fit`), "slowing" (`slowing_trend`, chosen by
    `choose_method`) or "loss_curves" (sweeps/transfer/curves.py). For the other two
    `carried_error` is their own held-out miss (None for the loss curves with three horizons:
    not checked, so not reliable), `interval` their bootstrap interval (None: undefined in most
    draws, not to be acted on), and the chi-square rule is left out: a bend is what they
    model, and their held-out check is what tests it. `at_window_edge`: the loss curves'
    minimum at the lowest or highest LR they fitted. `longer_worse`: (the longest swept
    horizon, a shorter one whose best final loss was lower): longer runs already did worse.
    Every other rule holds for every method.
    `stay_lr`: on the horizon axis, the best LR at the longest swept horizon. A power law that
    has the best LR move from it by more than `HELD_OUT` (log2) at a longer target is not
    reliable: on every task measured the fall slowed past the swept horizons, so the truth lay
    between the two (docs/transfer.md), and a held-out check inside the swept range cannot see
    that (teacher, 200,000 rows, SGD, horizons 50–400: it passed, and the trend missed 2x)."""
    lo_v, hi_v = min(values), max(values)
    span = math.log(hi_v / lo_v)
    past = math.log(target / hi_v) if target > hi_v else math.log(lo_v / target)
    line = method == "power_law"
    which = METHOD_WORDS[method]
    low, high = fit.interval(target) if line else (interval or [1.0, math.inf])
    problems = []
    if len(values) < 3:
        problems.append("two values only: whether the trend bends cannot be checked")
    if carried_error is None and method == "loss_curves":
        problems.append(
            "with three horizons the loss curves cannot be checked on a horizon left out "
            "(sweep four)"
        )
    if carried_error is not None and carried_error > HELD_OUT:
        problems.append(
            f"fitted without its nearest swept value {which} "
            f"{'miss' if method == 'loss_curves' else 'misses'} it by enough to be off "
            f"by about {2**carried_error:.1f}x at the target"
        )
    if regime:
        problems.append(regime)
    if overfitting_at is not None:
        problems.append(
            f"at {axis} {overfitting_at:g} the validation loss at the best LR was already rising "
            "at the end (overfitting): a longer run will want a smaller LR than any trend says"
        )
    if line and not math.isnan(fit.chi2) and fit.chi2 > BEND_CHI2:
        problems.append(
            f"the trend bends across the swept values (the points sit off the line by "
            f"{math.sqrt(fit.chi2):.1f}x their own precision)"
        )
    if past > FAR * span:
        problems.append(
            f"the target {target:g} is far beyond the swept {lo_v:g}–{hi_v:g} "
            f"({math.exp(past):.0f}x past it, the swept range spans {math.exp(span):.0f}x)"
        )
    if not line and interval is None:
        problems.append(f"{which} is undefined in most bootstrap draws")
    elif high / low > WIDE:
        problems.append(f"the 95 % interval spans {high / low:.1f}x")
    if longer_worse is not None and overfitting_at is None:  # one overfitting reason is enough
        problems.append(
            f"the best validation loss at {axis} {longer_worse[0]:g} is above the one at "
            f"{longer_worse[1]:g}: longer runs already do worse (overfitting), and a longer one "
            "will want a smaller LR than any trend says"
        )
    if at_window_edge:
        problems.append(
            "the extrapolated losses are lowest at the edge of the LRs fitted around the valley"
        )
    if axis == "steps" and line and stay_lr and target > hi_v:
        moves_past = math.log2(fit.predict(target) / stay_lr)
        if abs(moves_past) > HELD_OUT:
            problems.append(
                f"the trend has the best LR move {2 ** abs(moves_past):.1f}x past the longest "
                f"swept horizon (from {stay_lr:.3g}), and on every task measured here that "
                "move slowed past the swept horizons"
            )
    if at_range_edge:
        where = ", ".join(f"{v:g}" for v in at_range_edge)
        problems.append(f"the best LR sits on the edge of the searched range at {axis} {where}")
    a_lo, a_hi = fit.exponent_interval
    moves = abs(fit.exponent) * span / math.log(2)  # log2 change over the swept range
    if a_lo <= 0.0 <= a_hi or moves < FLAT:
        bound = max(abs(a_lo), abs(a_hi))
        trend = f"the best LR does not move with {axis} within ±{bound:.2f} in the exponent"
    else:
        trend = f"best LR ∝ {axis}^{fit.exponent:.2f} (95 % interval {a_lo:.2f} to {a_hi:.2f})"
    if problems:
        return False, f"{trend}; not reliable: " + "; ".join(problems)
    return True, trend


def slowing_trend(xs: list[float], lrs: list[float], target: float) -> float | None:
    """The best LR at `target` if the trend keeps slowing as it slowed over the last three
    swept values: the log-log slope s(u), u = log2 value, measured between the first two
    (s1, at the middle m1) and the last two (s2, at m2), decays geometrically, s(u) =
    s2·q^(u − m2) with q = (s2/s1)^(1/(m2 − m1)), and log2 best LR is its integral from the
    last swept value to the target. None unless the trend slows without turning (0 < s2/s1
    < 1): a straight or steepening trend is the power law's to predict. Three points fix it
    exactly: only with a fourth swept value can it be checked (`slowing_held_out_error`), and
    only then can it be the reliable prediction (docs/transfer.md)."""
    if len(xs) < 3:
        return None
    u = [math.log2(v) for v in xs[-3:]]
    y = [math.log2(v) for v in lrs[-3:]]
    s1, s2 = (y[1] - y[0]) / (u[1] - u[0]), (y[2] - y[1]) / (u[2] - u[1])
    if s1 == 0 or not 0 < s2 / s1 < 1:
        return None
    m1, m2 = (u[0] + u[1]) / 2, (u[1] + u[2]) / 2
    q = (s2 / s1) ** (1 / (m2 - m1))
    rest = s2 * (q ** (math.log2(target) - m2) - q ** (u[2] - m2)) / math.log(q)
    return 2 ** (y[2] + rest)


def slowing_held_out_error(xs: list[float], lrs: list[float], target: float) -> float | None:
    """The slowing trend checked against itself, as `held_out_error` checks the line: taken
    from every swept value but the longest (`xs` ascending), how far (log2) it misses the
    longest's best LR, carried to the target in proportion to how much further it lies (in
    log). None with fewer than four values (three fix the trend exactly, so nothing is left
    out to check it), where the shorter values do not slow, or where the target is not past
    the longest value."""
    if len(xs) < 4 or target <= xs[-1]:
        return None
    guess = slowing_trend(xs[:-1], lrs[:-1], xs[-1])
    if guess is None:
        return None
    miss = math.log2(guess / lrs[-1])
    return abs(miss) * math.log(target / xs[-1]) / math.log(xs[-1] / xs[-2])


def slowing_interval(xs: list[float], draws: np.ndarray, target: float) -> list[float] | None:
    """The slowing trend's 95 % interval at `target`: refitted on every bootstrap draw of the
    best LRs (`draws` (B, n), columns in the order of `xs`). None where it is undefined (the
    draw does not slow) in half the draws or more: then the seeds do not agree that it slows."""
    got = [slowing_trend(xs, list(d), target) for d in np.asarray(draws, float)]
    ok = [g for g in got if g is not None]
    if 2 * len(ok) <= len(got):
        return None
    lo, hi = np.percentile(np.log(ok), [2.5, 97.5])
    return [math.exp(lo), math.exp(hi)]


def choose_method(power_error: float | None, slowing_error: float | None) -> str:
    """ "slowing" where the slowing trend has a held-out error and it is smaller than the
    power law's (or the power law has none), else "power_law". Decided from the swept values
    only: both errors are misses on a swept value left out of the fit."""
    if slowing_error is None:
        return "power_law"
    if power_error is None or slowing_error < power_error:
        return "slowing"
    return "power_law"
