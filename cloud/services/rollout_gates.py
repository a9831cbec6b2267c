"""Quality gates of a staged rollout: one gateway's report against the rollout's bounds (pure functions).

* anomaly: alert rate per reading with +1 smoothing, ``(alerts_c + 1) / (readings_c + 1)`` over
  the same for the baseline, and the same ratio for readings scored in alert (``alert_readings``:
  a model stuck in alert raises once per stream but stays in alert), once the candidate saw
  ``min_readings`` readings; either ratio above ``max_alert_rate_ratio`` fails when the excess is
  at least ``min_excess_alerts`` counts beyond the bound (small counts are noise).
* device_anomaly: first model errors: more than ``max_error_rate`` of the messages failed (with
  at least ``min_excess_alerts`` errors) fails at once; then, once both sides cover
  ``min_device_days`` device-days, device alerts per device-day ``(alerts + 1) / device_days`` of
  the candidate over the baseline's, and the readings-in-alert ratio as for anomaly, fail above
  ``max_alert_rate_ratio`` with the same ``min_excess_alerts``; with ``max_device_alerts_per_day``
  set, a candidate above that budget fails as well.
* demand: WAPE (sum |P50 - actual| / sum actual) of the candidate over the baseline's, once
  both cover ``min_actual_units`` actual units; above ``max_wape_ratio`` fails.

In the shadow phase the candidate's ``shadow_stats`` are compared with ``shadow_baseline_stats``
(the running model over exactly the same readings/days); rollouts without shadow compare the
candidate's ``active_stats`` with ``previous_stats`` (the model it replaced).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from cloud.model_schemas import Gates
from protocols.model_update import ModelStats, TaskReport

Verdict = Literal["pending", "pass", "fail"]


@dataclass(frozen=True, slots=True)
class GateResult:
    verdict: Verdict
    detail: str


def rejection(report: TaskReport | None, candidate: int) -> str | None:
    """Why the gateway refused the candidate (code and reason), or None when it did not."""
    if report is None or report.rejected_version != candidate:
        return None
    text = report.rejected_code or "rejected"
    return f"{text}: {report.rejected_reason}" if report.rejected_reason else text


def compare(task: str, cand: ModelStats, base: ModelStats, gates: Gates) -> GateResult:
    """The candidate's stats against the baseline's over the same data."""
    if task == "demand":
        if cand.forecast_actual_units < gates.min_actual_units or base.forecast_actual_units < gates.min_actual_units:
            return GateResult("pending", f"{cand.forecast_actual_units:g}/{gates.min_actual_units:g} actual units")
        wape_c = cand.forecast_abs_error / cand.forecast_actual_units
        wape_b = base.forecast_abs_error / base.forecast_actual_units
        ratio = 1.0 if wape_c == wape_b else (math.inf if wape_b == 0 else wape_c / wape_b)
        detail = f"WAPE {wape_c:.3f} vs {wape_b:.3f} (ratio {ratio:.2f}, max {gates.max_wape_ratio:g})"
        return GateResult("fail" if ratio > gates.max_wape_ratio else "pass", detail)
    if task == "device_anomaly":
        return _compare_device(cand, base, gates)
    if cand.readings < gates.min_readings:
        return GateResult("pending", f"{cand.readings}/{gates.min_readings} readings")
    rate_c = (cand.alerts_raised + 1) / (cand.readings + 1)
    rate_b = (base.alerts_raised + 1) / (base.readings + 1)
    ratio = rate_c / rate_b
    busy_ratio, busy_failed = _busy(cand, base, gates)
    detail = (f"alert rate {cand.alerts_raised}/{cand.readings} vs {base.alerts_raised}/{base.readings} "
              f"(ratio {ratio:.2f}), readings in alert {cand.alert_readings} vs {base.alert_readings} "
              f"(ratio {busy_ratio:.2f}); max {gates.max_alert_rate_ratio:g}")
    failed = _over(cand.alerts_raised, base.alerts_raised, ratio, gates) or busy_failed
    return GateResult("fail" if failed else "pass", detail)


def _over(c: float, b: float, r: float, gates: Gates) -> bool:
    # Same data on both sides: the excess is in counts, beyond what the bound allows.
    limit = gates.max_alert_rate_ratio
    return r > limit and c - limit * b >= gates.min_excess_alerts


def _busy(cand: ModelStats, base: ModelStats, gates: Gates) -> tuple[float, bool]:
    """Time in alert as well as raises (a model stuck in alert raises once per stream): ratio, failed."""
    busy_c = (cand.alert_readings + 1) / (cand.readings + 1)
    busy_b = (base.alert_readings + 1) / (base.readings + 1)
    ratio = busy_c / busy_b
    return ratio, _over(cand.alert_readings, base.alert_readings, ratio, gates)


def _compare_device(cand: ModelStats, base: ModelStats, gates: Gates) -> GateResult:
    """The device model: model errors, then device alerts per device-day against the baseline."""
    scored = cand.readings + cand.errors
    if cand.errors >= max(gates.min_excess_alerts, 1) and cand.errors > gates.max_error_rate * scored:
        return GateResult("fail", f"model errors {cand.errors}/{scored} messages "
                                  f"(max {gates.max_error_rate:.2%})")
    if cand.device_days < gates.min_device_days or base.device_days < gates.min_device_days:
        return GateResult("pending", f"{cand.device_days:.3g}/{base.device_days:.3g} of "
                                     f"{gates.min_device_days:g} device-days")
    per_day_c = cand.alerts_raised / cand.device_days
    ratio = ((cand.alerts_raised + 1) / cand.device_days) / ((base.alerts_raised + 1) / base.device_days)
    # The baseline's alerts over the candidate's device-days: the excess is in counts.
    scaled_b = base.alerts_raised * cand.device_days / base.device_days
    busy_ratio, busy_failed = _busy(cand, base, gates)
    detail = (f"device alerts per device-day {per_day_c:.2f} vs {base.alerts_raised / base.device_days:.2f} "
              f"({cand.alerts_raised} in {cand.device_days:.2f} vs {base.alerts_raised} in "
              f"{base.device_days:.2f}; ratio {ratio:.2f}), messages in alert ratio {busy_ratio:.2f}, "
              f"errors {cand.errors}; max {gates.max_alert_rate_ratio:g}")
    failed = _over(cand.alerts_raised, scaled_b, ratio, gates) or busy_failed
    budget = gates.max_device_alerts_per_day
    if budget is not None and per_day_c > budget and cand.alerts_raised - budget * cand.device_days >= \
            gates.min_excess_alerts:
        failed = True
        detail += f"; over the budget of {budget:g} per device-day"
    return GateResult("fail" if failed else "pass", detail)


def evaluate(task: str, candidate: int, report: TaskReport | None, phase: Literal["shadow", "active"],
             gates: Gates) -> GateResult:
    """One member's gate: shadow phase → shadow vs same-data baseline; else active vs previous."""
    if report is None:
        return GateResult("pending", "no report yet")
    if phase == "shadow":
        cand, base, what = report.shadow_stats, report.shadow_baseline_stats, "shadow"
    else:
        cand, base, what = report.active_stats, report.previous_stats, "active"
    if cand is None or cand.model_version != candidate:
        return GateResult("pending", f"no {what} stats of version {candidate} yet")
    if base is None:
        return GateResult("pending", f"no baseline stats to compare the {what} run with yet")
    return compare(task, cand, base, gates)
