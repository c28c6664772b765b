"""report.json["transfer"]: per group and axis (steps or batch_size), the points, the fit, the prediction at the
target and, where the target was trained too (`transfer.verify`), how far off it was.

Pure: reads the lanes' results (their histories end at their own horizon) and the groups'
verdicts (the stability edge at each value); no JAX, no spec beyond the transfer section.
A group here is an optimizer and schedule with their arguments, across the axis' values
(the quantity compared: the validation loss at the end of each lane's run).
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

import numpy as np

from sweeps.core.optimizers import OPTIMIZERS
from sweeps.core.schedules import HORIZON
from sweeps.transfer.curves import LossCurves, loss_curves
from sweeps.transfer.fit import (
    Fit,
    choose_method,
    fit_power_law,
    held_out_error,
    judge,
    sigma_of,
    slowing_held_out_error,
    slowing_interval,
    slowing_trend,
)
from sweeps.transfer.points import BestLR, best_lr, still_rising

# what report.json says of each swept value's best LR (sweeps/transfer/points.py: BestLR)
POINT_FIELDS = ("best_lr", "grid_best_lr", "bracket", "method", "final_val_loss", "at_range_edge")
WITHIN = 0.5  # |log2(predicted / direct)| at most this: within a factor of 1.41


def _group_of(lane) -> tuple:
    args = {k: v for k, v in lane.schedule_args.items() if k != HORIZON}
    return (lane.optimizer, lane.schedule, tuple(sorted(lane.optimizer_args.items())),
            tuple(sorted(args.items())))  # fmt: skip


def _complete(r, steps: float) -> bool:
    return bool(r.step) and r.step[-1] >= steps


def _value_of(lane, axis: str) -> int | None:
    """The lane's value on the axis: its horizon, or its batch size."""
    if axis == "steps":
        h = lane.schedule_args.get(HORIZON)
        return None if h is None else int(h)
    return getattr(lane, "model_width" if axis == "width" else "batch_size", None)


def _final(r) -> float:
    """The validation loss at the end of the lane's run (inf where it diverged)."""
    if r.status == "diverged" or not r.val_loss:
        return math.inf
    return r.val_loss[-1]


def _edge(verdict) -> tuple[float | None, list[float] | None]:
    """The stability edge of one value's group: the middle of its bracket, and the bracket."""
    if verdict is None or verdict.min_diverged_lr is None:
        return None, None
    hi = verdict.min_diverged_lr
    lo = verdict.max_undiverged_lr or hi
    return math.sqrt(lo * hi), [lo, hi]


def _finals(members: list, steps: int) -> tuple[list, tuple[list, list, list]]:
    """The lanes that ran `steps`, and their (learning rates, seeds, final losses): what
    points.py and curves.py read."""
    lanes = [r for r in members if _complete(r, steps)]
    return lanes, ([r.lane.learning_rate for r in lanes], [r.lane.seed for r in lanes],
                   [_final(r) for r in lanes])  # fmt: skip


def _point(value: int, members: list, verdict, seed: int, steps: int) -> tuple[dict, BestLR | None]:
    lanes, finals = _finals(members, steps)
    found = best_lr(*finals, seed=seed)
    edge, edge_bracket = _edge(verdict)
    point: dict[str, Any] = {"value": value, "lanes": len(lanes), "best_lr": None}
    if found is not None:
        at_best = [r for r in lanes if r.lane.learning_rate == found.grid_best_lr]
        point.update({k: getattr(found, k) for k in POINT_FIELDS})
        point["overfitting"] = any(still_rising(r.val_loss) for r in at_best)
    point.update(edge_lr=edge, edge_bracket=edge_bracket)
    return point, found


def _fit_section(fit: Fit) -> dict[str, Any]:
    return {
        "exponent": fit.exponent,
        "exponent_interval": fit.exponent_interval,
        "intercept": fit.intercept,
        "reduced_chi2": None if math.isnan(fit.chi2) else fit.chi2,
    }


def _edge_prediction(points: list[dict], target: float) -> dict[str, Any] | None:
    """The stability edge's own trend, where it was found at two values or more."""
    known = [p for p in points if p["edge_lr"] is not None]
    if len(known) < 2:
        return None
    rng = np.random.default_rng(1)
    draws = np.stack(
        [p["edge_lr"] * np.exp(rng.uniform(-1, 1, 400) * sigma_of(p["edge_bracket"], p["edge_lr"]))
         for p in known], axis=1,
    )  # fmt: skip
    fit = fit_power_law(
        [p["value"] for p in known], [p["edge_lr"] for p in known],
        [sigma_of(p["edge_bracket"], p["edge_lr"]) for p in known], draws,
    )  # fmt: skip
    return {"edge_lr": fit.predict(target), "edge_interval": fit.interval(target),
            "edge_exponent": fit.exponent}  # fmt: skip


def epochs_text(
    axis: str, values: list[int], target: int, steps: int, batch: int, rows: int | None
) -> str | None:
    """Why the target runs in another regime: its run passes over the training rows more
    than once, and the longest swept run's did not (examples start to repeat only there)."""
    if not rows or axis == "width":
        return None
    if axis == "steps":
        swept, at_target = max(values) * batch / rows, target * batch / rows
    else:
        swept, at_target = steps * max(values) / rows, steps * target / rows
    if at_target > 1.0 >= swept:
        return (
            f"the target's run passes over the {rows:,} training rows {at_target:.1f} times, "
            f"the longest swept run {swept:.2f} times: only the target repeats examples"
        )
    return None


def transfer_group(
    members: list,
    verdicts: dict,
    values: list[int],
    target: int,
    verify: bool,
    axis: str,
    steps: int,
    regime: str | None = None,
) -> dict[str, Any]:
    """One group's transfer entry (`members`: its lanes at every value of the axis;
    `verdicts`: the analysed group at each value, by value; `steps`: the sweep's, what a lane
    of the batch-size axis trains)."""
    lane = members[0].lane
    entry: dict[str, Any] = {
        "optimizer": lane.optimizer,
        "schedule": lane.schedule,
        "optimizer_args": dict(lane.optimizer_args),
        "schedule_args": {k: v for k, v in lane.schedule_args.items() if k != HORIZON},
    }
    by_value = defaultdict(list)
    for r in members:
        by_value[_value_of(r.lane, axis)].append(r)
    run = (lambda v: v) if axis == "steps" else (lambda v: steps)  # noqa: E731
    points, found = [], []
    for i, v in enumerate(values):
        point, best = _point(v, by_value.get(v, []), verdicts.get(v), seed=i, steps=run(v))
        points.append(point)
        found.append(best)
    entry["points"] = points
    usable = [(p, b) for p, b in zip(points, found, strict=True) if b is not None]
    if len(usable) < 2:
        entry.update(fit=None, prediction={
            "value": target, "best_lr": None, "reliable": False,
            "note": f"fewer than two {axis} values have a best LR: no trend to fit",
        })  # fmt: skip
    else:
        xs, lrs = [p["value"] for p, _ in usable], [b.best_lr for _, b in usable]
        sigmas = [sigma_of(b.bracket, b.best_lr) for _, b in usable]
        draws = np.stack([b.draws for _, b in usable], axis=1)
        fit = fit_power_law(xs, lrs, sigmas, draws)
        carried = held_out_error(xs, lrs, sigmas, target)
        power_law_lr = fit.predict(target)
        # measured on the horizon only (docs/transfer.md): the batch trend did not slow
        slowing = slowing_trend(xs, lrs, target) if axis == "steps" else None
        slowing_carried = slowing_held_out_error(xs, lrs, target) if slowing is not None else None
        # on the horizon every LR's loss is read, where it can be (sweeps/transfer/curves.py;
        # tried on width and batch size too, and worse there: docs/transfer.md)
        stay_lr = lrs[int(np.argmax(xs))]  # the best LR at the longest swept value
        curves = _loss_curves(by_value, xs, target, stay_lr) if axis == "steps" else None
        if curves is not None and curves.interval is None:  # no interval: not to be given
            curves = None
        no_interval = False
        if curves is not None:
            method, chosen_interval = "loss_curves", curves.interval
            chosen_carried = curves.held_out_error
        else:  # the line, or the slowing trend where it checked itself better
            method = choose_method(carried, slowing_carried)
            chosen_interval = slowing_interval(xs, draws, target) if method == "slowing" else None
            no_interval = method == "slowing" and chosen_interval is None
            if no_interval:  # a prediction comes with its interval: else the line predicts
                method = "power_law"
            chosen_carried = slowing_carried if method == "slowing" else carried
        longest = usable[-1][0]
        reliable, note = judge(
            fit, xs, target, axis=axis,
            overfitting_at=longest["value"] if longest.get("overfitting") else None,
            at_range_edge=[p["value"] for p, b in usable if b.at_range_edge],
            carried_error=chosen_carried, regime=regime,
            method=method, interval=chosen_interval, stay_lr=stay_lr,
            at_window_edge=curves is not None and curves.at_window_edge,
            longer_worse=_longer_worse(usable) if axis == "steps" else None,
        )  # fmt: skip
        if curves is not None:
            note += _curves_words(curves, power_law_lr, carried)
        elif slowing_carried is not None:  # both checked on a left-out value: say which won
            said = "the slowing trend" if method == "slowing" else "the power law"
            held = "—" if carried is None else f"{carried:.2f}"
            note += (
                f"; predicted by {said} (held-out miss carried to the target, log2: power law "
                f"{held}, slowing trend {slowing_carried:.2f}"
                + ("; the slowing trend is undefined in most bootstrap draws)" if no_interval
                   else ")")
            )  # fmt: skip
        if method == "slowing":
            predicted = slowing
            low, high = chosen_interval
        elif method == "loss_curves":
            predicted = curves.best_lr
            low, high = chosen_interval
        else:
            predicted = power_law_lr
            low, high = fit.interval(target)
        if chosen_carried:  # the interval also holds how far the trend missed itself, carried
            low, high = low / 2**chosen_carried, high * 2**chosen_carried
        entry["fit"] = _fit_section(fit)
        entry["prediction"] = {
            "value": target, "best_lr": predicted,
            "interval": [low, high],
            "held_out_error": carried, "method": method, "power_law_lr": power_law_lr,
            **(_edge_prediction(points, target) or {"edge_lr": None, "edge_interval": None}),
            "reliable": reliable, "note": note,
        }  # fmt: skip
        if axis == "steps":
            entry["prediction"].update(_between(power_law_lr, xs, lrs, target))
            entry["prediction"]["slowing"] = slowing
            entry["prediction"]["slowing_held_out_error"] = slowing_carried
            entry["prediction"]["loss_curves"] = None if curves is None else {
                "alpha": curves.alpha, "learning_rates": curves.lrs,
                "predicted_loss": curves.predicted_loss,
                "held_out_error": curves.held_out_error,
            }  # fmt: skip
        if not reliable and method != "loss_curves" and axis == "steps":
            b, slowing = entry["prediction"]["between"], entry["prediction"]["slowing"]
            entry["prediction"]["note"] += (
                f"; if the trend slows past the swept values, the best LR lies between "
                f"{b[0]:.3g} and {b[1]:.3g} (their middle {entry['prediction']['middle']:.3g})"
            )
            if slowing is not None and method != "slowing":
                entry["prediction"]["note"] += (
                    f"; slowing on as it slowed over the last three values, {slowing:.3g}"
                )
        if axis == "batch_size":  # the rules of thumb, beside the fit
            entry["prediction"]["note"] += (
                " (the linear rule, SGD below the critical batch, says 1; the square-root "
                "rule, Adam, says 0.5)"
            )
    if verify:
        entry["verification"] = _verification(
            entry, by_value.get(target, []), target, verdicts, run(target)
        )
    return entry


def _longer_worse(usable: list) -> tuple[float, float] | None:
    """(the longest swept horizon, a shorter one whose best final loss was lower), or None:
    where training longer already made the best run worse, the runs overfit."""
    by_value = sorted((p["value"], b.final_val_loss) for p, b in usable)
    (longest, loss), shorter = by_value[-1], by_value[:-1]
    value, lowest = min(shorter, key=lambda vl: vl[1], default=(None, math.inf))
    return (longest, value) if loss > lowest else None


def _loss_curves(by_value: dict, xs: list, target: int, measured_longest: float):
    """The loss-curve prediction at `target` from the swept horizons' lanes (None where it
    cannot be made: fewer than three horizons, no valley finite at all of them)."""
    xs = sorted(xs)
    per_horizon = [_finals(by_value.get(v, []), v)[1] for v in xs]
    return loss_curves(per_horizon, xs, target, measured_longest)


def _curves_words(curves: LossCurves, power_law: float, carried: float | None) -> str:
    """What predicted, in words, beside what the line through the best LRs says."""
    said = (
        f"; predicted from the loss curves (each LR's final loss extrapolated to the target "
        f"as a saturating power law in the horizon, exponent {curves.alpha:.2f}); the power "
        f"law through the best LRs says {power_law:.3g}"
    )
    if curves.held_out_error is not None:
        held = "—" if carried is None else f"{carried:.2f}"
        said += (f" (held-out miss carried to the target, log2: loss curves "
                 f"{curves.held_out_error:.2f}, power law {held})")  # fmt: skip
    return said


def _between(trend: float, xs: list, lrs: list, target: float) -> dict[str, Any]:
    """The range from the trend carried on to the best LR staying where the swept value
    nearest the target had it, and its geometric middle. On the teacher task every direct
    best LR at 8x the longest horizon lay in this range (docs/transfer.md): the best LR kept
    falling, more slowly than the power law said."""
    stays = lrs[int(np.argmin([abs(math.log(target / x)) for x in xs]))]
    return {"between": sorted([trend, stays]), "middle": math.sqrt(trend * stays)}


def _verification(
    entry: dict, lanes: list, target: int, verdicts: dict, steps: int
) -> dict[str, Any]:
    """The direct sweep at the target against the prediction, and against assuming the best
    LR does not move (the longest swept value's best LR used as is)."""
    point, _ = _point(target, lanes, verdicts.get(target), seed=99, steps=steps)
    predicted = entry["prediction"].get("best_lr")
    direct = point.get("best_lr")
    out: dict[str, Any] = {**point, "prediction_error": None, "within": None,
                           "constant_error": None, "middle_error": None,
                           "in_between": None, "slowing_error": None,
                           "power_law_error": None}  # fmt: skip
    if direct and predicted:
        err = math.log2(predicted / direct)
        out.update(prediction_error=err, within=abs(err) <= WITHIN)
    power_law = entry["prediction"].get("power_law_lr")
    if direct and power_law:
        out["power_law_error"] = math.log2(power_law / direct)
    swept = [p["best_lr"] for p in entry["points"] if p.get("best_lr")]
    if direct and swept:
        out["constant_error"] = math.log2(swept[-1] / direct)
    middle, between = entry["prediction"].get("middle"), entry["prediction"].get("between")
    if direct and middle:
        out["middle_error"] = math.log2(middle / direct)
        out["in_between"] = between[0] <= direct <= between[1]
    slowing = entry["prediction"].get("slowing")
    if direct and slowing:
        out["slowing_error"] = math.log2(slowing / direct)
    return out


def transfer_section(
    transfer,
    results: list,
    verdicts: list,
    steps: int,
    batch: int = 0,
    rows: int | None = None,
    noise_scale: dict | None = None,
) -> dict[str, Any]:
    """report.json["transfer"] for a sweep's `transfer` spec section (`steps`, `batch`: the
    sweep's train.steps and batch size; `rows`: the training rows, to tell whether the target
    repeats examples the swept runs never repeated; `noise_scale`: the batch axis' gradient
    noise scale, sweeps/core/noise_scale.py)."""
    name, axis = transfer.axis_name, transfer.axis
    regime = epochs_text(name, list(axis.values), axis.target, steps, batch, rows)
    by_group: dict[tuple, list] = defaultdict(list)
    for r in results:
        if _value_of(r.lane, name) is not None:
            by_group[_group_of(r.lane)].append(r)
    verdict_at: dict[tuple, dict] = defaultdict(dict)
    for v in verdicts:
        value = v.schedule_args.get(HORIZON) if name == "steps" else _value_of(v, name)
        if value is not None:
            key = (v.optimizer, v.schedule, tuple(sorted(v.optimizer_args.items())),
                   tuple(sorted((k, a) for k, a in v.schedule_args.items() if k != HORIZON)))  # fmt: skip
            verdict_at[key][int(value)] = v
    groups = [
        transfer_group(
            members, verdict_at[key], axis.values, axis.target, transfer.verify, name, steps, regime
        )  # fmt: skip
        for key, members in by_group.items()
        if not OPTIMIZERS[members[0].lane.optimizer].lr_free  # no LR to transfer
    ]
    section = {"values": list(axis.values), "target": axis.target, "verify": transfer.verify,
               "groups": groups}  # fmt: skip
    if noise_scale is not None:
        section["noise_scale"] = noise_scale
        said = noise_scale_words(noise_scale, axis.target)
        for g in groups:
            g["prediction"]["note"] += said
    return {name: section}


def noise_scale_words(noise_scale: dict, target: int) -> str:
    """Where the batch stops paying, in words: the gradient noise scale B_simple measured
    along a lane at the best LR (sweeps/core/noise_scale.py), or at initialisation."""
    scale = noise_scale.get("b_simple")
    if not scale or not math.isfinite(scale):
        return ""
    if noise_scale.get("at") == "best_lr":
        first = (noise_scale.get("trajectory") or [{}])[0]
        where = (f"at the best LR ({noise_scale['learning_rate']:.3g}, "
                 f"{noise_scale['optimizer']} · batch {noise_scale['batch_size']}) after "
                 f"{noise_scale['step']} steps")  # fmt: skip
        if first.get("b_simple") and first.get("step") != noise_scale["step"]:
            where += f" ({first['b_simple']:.0f} at step {first['step']})"
    else:
        where = "at initialisation"
    said = f"; the gradient noise scale {where} is B_simple ≈ {scale:.0f}: batches beyond "
    said += f"~{scale:.0f} buy little"
    if target > scale:
        said += (", and the target batch is past it, so the best LR grows less than a trend "
                 "through smaller batches says")  # fmt: skip
    return said
