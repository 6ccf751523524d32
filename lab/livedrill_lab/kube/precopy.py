"""A pure model of a pre-copy live migration, as virt-launcher's migration monitor drives it.

Each iteration copies what is still dirty at the migration bandwidth while the guest dirties more
memory at its dirty rate. Once the remainder can be copied within `max_downtime_ms`, the guest is
paused and the remainder copied (stop-and-copy): that copy time is the guest's downtime.

It fails as KubeVirt does: the remainder stops shrinking (dirty rate >= bandwidth) for
`progress_timeout_s` ("progress timeout"), or the whole migration exceeds the completion budget
`completion_timeout_per_gib` x max(2, memory GiB) seconds ("completion timeout").
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

GIB = 1024**3
# Iterations virt-launcher never exceeds in practice; past this the model calls it non-converging.
MAX_ITERATIONS = 64


class PrecopyInputs(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    memory_bytes: int = Field(gt=0)
    dirty_rate_bytes_per_s: float = Field(ge=0)
    bandwidth_bytes_per_s: float = Field(gt=0, description="bandwidthPerMigration, or the lab default when 0")
    max_downtime_ms: float = Field(gt=0)
    progress_timeout_s: float = Field(gt=0)
    completion_timeout_per_gib_s: float = Field(gt=0)


class PrecopyPlan(BaseModel):
    """What the model predicts. When `converges` is false, `failure_at_s` says when KubeVirt gives up."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    converges: bool
    iterations: int
    precopy_s: float  # time spent in live (guest running) copy iterations
    downtime_ms: float  # stop-and-copy pause; 0 when it does not converge
    total_s: float  # precopy + downtime, or failure_at_s when it does not converge
    completion_budget_s: float
    failure_at_s: float | None = None
    failure_reason: str | None = None


def completion_budget_s(memory_bytes: int, completion_timeout_per_gib_s: float) -> float:
    return completion_timeout_per_gib_s * max(2.0, memory_bytes / GIB)


def plan_precopy(p: PrecopyInputs) -> PrecopyPlan:
    budget = completion_budget_s(p.memory_bytes, p.completion_timeout_per_gib_s)
    if p.dirty_rate_bytes_per_s >= p.bandwidth_bytes_per_s:
        # The first pass copies everything, then the remainder never reaches a new low:
        # the progress timer runs from the end of the first pass.
        first_pass = p.memory_bytes / p.bandwidth_bytes_per_s
        at, reason = _first_failure(first_pass + p.progress_timeout_s, budget, p)
        return PrecopyPlan(
            converges=False, iterations=1, precopy_s=at, downtime_ms=0.0, total_s=at,
            completion_budget_s=budget, failure_at_s=at, failure_reason=reason,
        )
    remaining = float(p.memory_bytes)
    elapsed = 0.0
    for iteration in range(1, MAX_ITERATIONS + 1):
        copy_s = remaining / p.bandwidth_bytes_per_s
        if elapsed + copy_s > budget:
            return _budget_failure(budget, iteration)
        elapsed += copy_s
        remaining = min(float(p.memory_bytes), p.dirty_rate_bytes_per_s * copy_s)
        downtime_ms = remaining / p.bandwidth_bytes_per_s * 1000.0
        if downtime_ms <= p.max_downtime_ms:
            total = elapsed + downtime_ms / 1000.0
            if total > budget:
                return _budget_failure(budget, iteration)
            return PrecopyPlan(
                converges=True, iterations=iteration, precopy_s=elapsed, downtime_ms=downtime_ms,
                total_s=total, completion_budget_s=budget,
            )
    return PrecopyPlan(
        converges=False, iterations=MAX_ITERATIONS, precopy_s=elapsed, downtime_ms=0.0, total_s=elapsed,
        completion_budget_s=budget, failure_at_s=elapsed,
        failure_reason=f"migration did not converge within {MAX_ITERATIONS} iterations",
    )


def _first_failure(progress_deadline_s: float, budget_s: float, p: PrecopyInputs) -> tuple[float, str]:
    if budget_s <= progress_deadline_s:
        return budget_s, f"migration timeout: exceeded the completion budget of {budget_s:.0f}s"
    return progress_deadline_s, (
        f"migration timeout: no progress for {p.progress_timeout_s:g}s "
        f"(dirty rate {p.dirty_rate_bytes_per_s:.0f} B/s >= bandwidth {p.bandwidth_bytes_per_s:.0f} B/s)"
    )


def _budget_failure(budget_s: float, iterations: int) -> PrecopyPlan:
    return PrecopyPlan(
        converges=False, iterations=iterations, precopy_s=budget_s, downtime_ms=0.0, total_s=budget_s,
        completion_budget_s=budget_s, failure_at_s=budget_s,
        failure_reason=f"migration timeout: exceeded the completion budget of {budget_s:.0f}s",
    )


def transfer_at(p: PrecopyInputs, plan: PrecopyPlan, elapsed_s: float) -> tuple[float, float]:
    """(bytes sent, bytes still dirty) `elapsed_s` into the live copy, iteration by iteration as `plan_precopy`
    runs them; held at the end of the live copy (stop-and-copy, or the moment KubeVirt gives up)."""
    end = plan.precopy_s if plan.converges else (plan.failure_at_s or 0.0)
    elapsed = min(max(0.0, elapsed_s), end)
    remaining, start, sent = float(p.memory_bytes), 0.0, 0.0
    while True:
        copy_s = remaining / p.bandwidth_bytes_per_s
        if copy_s == 0 or elapsed < start + copy_s:
            done = p.bandwidth_bytes_per_s * (elapsed - start)
            return sent + done, remaining - done
        sent += remaining
        start += copy_s
        remaining = min(float(p.memory_bytes), p.dirty_rate_bytes_per_s * copy_s)
