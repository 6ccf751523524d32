"""The plan as a change manager reads it: per window, each cluster's drills with their VMs; then what
the plan leaves out (covered already, exceptions, open deficiencies, what cannot fit). Times are local to
the programme's timezone."""

from __future__ import annotations

from zoneinfo import ZoneInfo

from livedrill.programme.plan import Plan


def format_plan(plan: Plan, timezone: str) -> str:
    zone = ZoneInfo(timezone)
    to_drill = sum(len(d.vms) for w in plan.windows for d in w.drills)
    lines = [f"programme {plan.programme} {plan.quarter}, planned at {plan.planned_at.astimezone(zone):%Y-%m-%d %H:%M} "
             f"{timezone}: {to_drill} VM(s) in {sum(len(w.drills) for w in plan.windows)} drill(s); "
             f"{len(plan.covered)} covered already, {len(plan.exceptions)} exception(s), "
             f"{len(plan.open_deficiencies)} open deficiency(ies), {len(plan.unplaced)} cannot fit"]
    by_index: dict[int, list[str]] = {}
    for window in plan.windows:
        start, end = window.start.astimezone(zone), window.end.astimezone(zone)
        block = by_index[window.index] = [
            f"window #{window.index} {start:%Y-%m-%d %a %H:%M}-{end:%H:%M}: {len(window.drills) or 'no'} drill(s)"]
        for drill in window.drills:
            vms = ", ".join(f"{v.vm} ({v.standing.value}{f', attempt {v.attempt}' if v.attempt > 1 else ''}"
                            f"{f', forecast {v.forecast_s:.1f} s a leg' if v.forecast_s is not None else ''})"
                            for v in drill.vms)
            block.append(f"  {drill.cluster:<16} {drill.start.astimezone(zone):%H:%M}  {drill.budget_s:>6.0f} s  {vms}")
    for skipped in plan.skipped_windows:
        by_index[skipped.index] = [
            f"window #{skipped.index} {skipped.start.astimezone(zone):%Y-%m-%d %a %H:%M}: skipped, {skipped.reason}"]
    for index in sorted(by_index):
        lines += by_index[index]
    lines += [f"cluster {name}: no VM in the inventory matches its selector (nothing to drill there?)"
              for name in plan.empty_clusters]
    for exception in plan.exceptions:
        approved = f" (approved by {exception.approved_by})" if exception.approved_by else " (no approval recorded)"
        lines.append(f"exception {exception.cluster} {exception.vm}: {exception.kind}: {exception.reason}{approved}")
    for deficiency in plan.open_deficiencies:
        lines.append(f"open deficiency {deficiency.cluster} {deficiency.vm}: failed {deficiency.failures} time(s), "
                     f"last {deficiency.last_failure.astimezone(zone):%Y-%m-%d %H:%M}; not re-planned")
    for unplaced in plan.unplaced:
        lines.append(f"CANNOT FIT {unplaced.cluster} {unplaced.vm} ({unplaced.standing.value}, {unplaced.budget_s:.0f} s): "
                     f"{unplaced.reason}")
    return "\n".join(lines)
