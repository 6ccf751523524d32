"""The quarter's coverage, as an auditor asks for it: was every in-scope core VM drilled and passed, what failed,
what is still open, what was left out and who approved that. Pure: the inventory and the drills already run in,
one record out (`livedrill programme status`).

A VM is in scope when its cluster's selector picks it; it is then either to be drilled (a target) or an
exception (excluded with a reason and an approver, or unable to live-migrate). The quarter's last drill of a
target decides where it stands, by the same rule the planner uses (livedrill.programme.plan.standing). Each
failure is a deficiency: beside it go the deficiency record (root cause, owner, due date) when one was sealed,
and the retest that closed it (the first passing drill after the last failure); beside the quarter, its
sign-offs.
"""

from __future__ import annotations

import enum
from datetime import datetime
from zoneinfo import ZoneInfo

from pydantic import AwareDatetime, Field

from livedrill.outcomes import Record
from livedrill.programme.inventory import CoverageException, Inventory
from livedrill.programme.plan import DrillRecord, Standing, standing
from livedrill.programme.records import CoverageFigures, DeficiencyRecord, SignOffRecord
from livedrill.programme.spec import Programme
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
    deficiency: DeficiencyRecord | None = None  # the record of its latest failure this quarter, if sealed
    closed_by: str | None = None  # PASSED after failures: the run id of the retest that passed
    last_run: str | None = None  # the run id of this quarter's last drill of it (its evidence)


class Coverage(Record):
    programme: str
    quarter: str
    as_of: AwareDatetime
    rows: list[CoverageRow] = Field(default_factory=list)
    exceptions: list[CoverageException] = Field(default_factory=list)
    empty_clusters: list[str] = Field(default_factory=list)
    sign_offs: list[SignOffRecord] = Field(default_factory=list)

    def count(self, status: VMCoverage) -> int:
        return sum(r.status is status for r in self.rows)

    @property
    def in_scope(self) -> int:
        return len(self.rows) + len(self.exceptions)

    @property
    def complete(self) -> bool:
        """Every VM to drill passed this quarter (the exceptions are reported beside, with their approval)."""
        return all(r.status is VMCoverage.PASSED for r in self.rows)

    def figures(self) -> CoverageFigures:
        return CoverageFigures(in_scope=self.in_scope, to_drill=len(self.rows), passed=self.count(VMCoverage.PASSED),
                               failed=self.count(VMCoverage.FAILED), open_deficiencies=self.count(VMCoverage.OPEN_DEFICIENCY),
                               not_drilled=self.count(VMCoverage.NOT_DRILLED), exceptions=len(self.exceptions),
                               complete=self.complete)


def coverage(programme: Programme, inventory: Inventory, history: list[DrillRecord], as_of: datetime,
             records: list[DeficiencyRecord | SignOffRecord] = ()) -> Coverage:
    """`records`: the programme records sealed in the archive (livedrill.programme.records)."""
    spec = programme.spec
    start, end = spec.quarter_span()
    seen = [r for r in history if r.at <= as_of]  # a drill recorded after the moment asked about does not count
    by_vm: dict[tuple[str, VMRef], list[DrillRecord]] = {}
    for record in seen:
        by_vm.setdefault((record.cluster, record.vm), []).append(record)
    mine = [r for r in records if r.programme == spec.name and r.quarter == spec.quarter and r.recorded_at <= as_of]
    deficiencies = {r.failed_run: r for r in mine if isinstance(r, DeficiencyRecord)}
    rows = []
    for target in sorted(inventory.targets, key=lambda t: (t.cluster, t.vm.namespace, t.vm.name)):
        drills = by_vm.get((target.cluster, target.vm), [])
        this_quarter = sorted((r for r in drills if start <= r.at < end), key=lambda r: r.at)
        s = standing(drills, start, end, spec.retest)
        failed = [r for r in this_quarter if r.outcome == "failed"]
        status = _FROM_STANDING[s.standing]
        retest = next((r for r in this_quarter if failed and r.at > failed[-1].at and r.outcome == "passed"), None)
        rows.append(CoverageRow(
            cluster=target.cluster, vm=target.vm, node=target.node, status=status, drills=len(this_quarter),
            failures=s.failures, last_drill=this_quarter[-1].at if this_quarter else None, retest_after=s.retest_after,
            deficiency=deficiencies.get(failed[-1].run) if failed and failed[-1].run else None,
            closed_by=retest.run if retest else None, last_run=this_quarter[-1].run if this_quarter else None))
    return Coverage(programme=spec.name, quarter=spec.quarter, as_of=as_of, rows=rows,
                    exceptions=list(inventory.exceptions), empty_clusters=list(inventory.empty_clusters),
                    sign_offs=[r for r in mine if isinstance(r, SignOffRecord)])


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
        if row.failures:
            lines.append(f"{'':<17}{_deficiency_text(row.deficiency)}")
    for exception in cov.exceptions:
        approved = f"approved by {exception.approved_by}" if exception.approved_by else "no approval recorded"
        lines.append(f"{'EXCEPTION':<16} {exception.cluster} {exception.vm}: {exception.kind}: {exception.reason} "
                     f"({approved})")
    lines += [f"{'EMPTY SCOPE':<16} cluster {name}: no VM matches its selector" for name in cov.empty_clusters]
    for row in (r for r in cov.rows if r.status is VMCoverage.PASSED):
        lines.append(f"{'passed':<16} {row.cluster} {row.vm}: last {when(row.last_drill)}"
                     + (f" after {row.failures} failure(s), closed by retest {row.closed_by}" if row.failures else ""))
        if row.failures:
            lines.append(f"{'':<17}{_deficiency_text(row.deficiency)}")
    lines += [f"{'SIGN-OFF':<16} {s.role} {s.name}: {s.decision} at {when(s.recorded_at)} (saw {s.coverage.passed}/"
              f"{s.coverage.to_drill} passed{'' if s.coverage.complete else ', NOT COVERED'}): {s.statement}"
              for s in cov.sign_offs]
    if not cov.sign_offs:
        lines.append(f"{'SIGN-OFF':<16} none recorded for {cov.quarter}")
    return "\n".join(lines)


def _deficiency_text(record: DeficiencyRecord | None) -> str:
    if record is None:
        return "deficiency: no record of its root cause yet (`livedrill programme deficiency`)"
    return (f"deficiency: {record.root_cause}; owner {record.owner}, due {record.due}, recorded by {record.recorded_by}"
            f" (run {record.failed_run})")
