"""The quarter's coverage, as an auditor asks for it: was every in-scope core VM drilled and passed, what failed,
what is still open, what was left out and who approved that. Pure: the inventory and the drills already run in,
one record out (`livedrill programme status`).

A VM is in scope when its cluster's selector picks it; it is then either to be drilled (a target) or an
exception (excluded with a reason and an approver, or unable to live-migrate). The quarter's last drill of a
target decides where it stands, by the same rule the planner uses (livedrill.programme.plan.standing).
"""

from __future__ import annotations

import enum
from datetime import datetime, time
from zoneinfo import ZoneInfo

from pydantic import AwareDatetime, Field

from livedrill.outcomes import Record
from livedrill.programme.inventory import CoverageException, Inventory
from livedrill.programme.plan import DrillRecord, Standing, standing
from livedrill.programme.spec import Programme, quarter_bounds
from livedrill.spec import VMRef


class VMCoverage(str, enum.Enum):
    PASSED = "passed"  # its last drill this quarter passed
    FAILED = "failed"  # its last drill this quarter failed: a deficiency awaiting its retest
    OPEN_DEFICIENCY = "open_deficiency"  # failed as often as the retest policy allows: needs remediation
    NOT_DRILLED = "not_drilled"  # no drill this quarter yet


_FROM_STANDING = {Standing.COVERED: VMCoverage.PASSED, Standing.RETEST: VMCoverage.FAILED,
                  Standing.OPEN_DEFICIENCY: VMCoverage.OPEN_DEFICIENCY, Standing.NEVER_PASSED: VMCoverage.NOT_DRILLED,
                  Standing.DUE: VMCoverage.NOT_DRILLED}


class CoverageRow(Record):
    cluster: str
    vm: VMRef
    node: str | None
    status: VMCoverage
    drills: int  # this quarter's drills of it
    failures: int
    last_drill: AwareDatetime | None = None  # this quarter's
    retest_after: AwareDatetime | None = None  # FAILED: its cool-off ends then


class Coverage(Record):
    programme: str
    quarter: str
    as_of: AwareDatetime
    rows: list[CoverageRow] = Field(default_factory=list)
    exceptions: list[CoverageException] = Field(default_factory=list)
    empty_clusters: list[str] = Field(default_factory=list)

    def count(self, status: VMCoverage) -> int:
        return sum(r.status is status for r in self.rows)

    @property
    def in_scope(self) -> int:
        return len(self.rows) + len(self.exceptions)

    @property
    def complete(self) -> bool:
        """Every VM to drill passed this quarter (the exceptions are reported beside, with their approval)."""
        return all(r.status is VMCoverage.PASSED for r in self.rows)


def coverage(programme: Programme, inventory: Inventory, history: list[DrillRecord], as_of: datetime) -> Coverage:
    spec = programme.spec
    zone = spec.zone()
    first, after = quarter_bounds(spec.quarter)
    start, end = datetime.combine(first, time(), zone), datetime.combine(after, time(), zone)
    seen = [r for r in history if r.at <= as_of]  # a drill recorded after the moment asked about does not count
    by_vm: dict[tuple[str, VMRef], list[DrillRecord]] = {}
    for record in seen:
        by_vm.setdefault((record.cluster, record.vm), []).append(record)
    rows = []
    for target in sorted(inventory.targets, key=lambda t: (t.cluster, t.vm.namespace, t.vm.name)):
        records = by_vm.get((target.cluster, target.vm), [])
        this_quarter = sorted((r.at for r in records if start <= r.at < end))
        s = standing(records, start, end, spec.retest)
        rows.append(CoverageRow(cluster=target.cluster, vm=target.vm, node=target.node, status=_FROM_STANDING[s.standing],
                                drills=len(this_quarter), failures=s.failures,
                                last_drill=this_quarter[-1] if this_quarter else None, retest_after=s.retest_after))
    return Coverage(programme=spec.name, quarter=spec.quarter, as_of=as_of, rows=rows,
                    exceptions=list(inventory.exceptions), empty_clusters=list(inventory.empty_clusters))


def format_coverage(cov: Coverage, timezone: str) -> str:
    """The first line says whether the quarter is covered; then every VM not passed, the exceptions, the passes."""
    zone = ZoneInfo(timezone)
    passed = cov.count(VMCoverage.PASSED)
    share = f"{passed / len(cov.rows):.0%}" if cov.rows else "-"
    verdict = "COVERED" if cov.complete else "NOT COVERED"
    lines = [f"programme {cov.programme} {cov.quarter} as of {cov.as_of.astimezone(zone):%Y-%m-%d %H:%M} {timezone}: "
             f"{verdict}: {cov.in_scope} core VM(s) in scope, {len(cov.rows)} to drill: {passed} passed ({share}), "
             f"{cov.count(VMCoverage.FAILED)} failed awaiting retest, {cov.count(VMCoverage.OPEN_DEFICIENCY)} open "
             f"deficiency(ies), {cov.count(VMCoverage.NOT_DRILLED)} not drilled yet; {len(cov.exceptions)} exception(s)"]

    def when(moment: datetime | None) -> str:
        return f"{moment.astimezone(zone):%Y-%m-%d %H:%M}" if moment else "-"

    order = [VMCoverage.OPEN_DEFICIENCY, VMCoverage.FAILED, VMCoverage.NOT_DRILLED]
    for row in sorted((r for r in cov.rows if r.status is not VMCoverage.PASSED), key=lambda r: order.index(r.status)):
        extra = f", retest after {when(row.retest_after)}" if row.retest_after else ""
        lines.append(f"{row.status.value.upper():<16} {row.cluster} {row.vm}: {row.drills} drill(s), {row.failures} "
                     f"failed, last {when(row.last_drill)}{extra}")
    for exception in cov.exceptions:
        approved = f"approved by {exception.approved_by}" if exception.approved_by else "no approval recorded"
        lines.append(f"{'EXCEPTION':<16} {exception.cluster} {exception.vm}: {exception.kind}: {exception.reason} "
                     f"({approved})")
    lines += [f"{'EMPTY SCOPE':<16} cluster {name}: no VM matches its selector" for name in cov.empty_clusters]
    lines += [f"{'passed':<16} {r.cluster} {r.vm}: last {when(r.last_drill)}"
              + (f" after {r.failures} failure(s)" if r.failures else "") for r in cov.rows if r.status is VMCoverage.PASSED]
    return "\n".join(lines)
