"""The programme's coverage in the auditor bundle: `coverage.json` and a bilingual section of the report.

Every in-scope VM is a row: its cluster, status, drills and failures this quarter, its last drill with a link
to that run's evidence in the bundle (`archive/<run id>/`), the deficiency and the retest that closed it; the
exceptions follow with their reason and approver. A quarter below policy (a VM to drill that has not passed)
says so on the report's first page.
"""

from __future__ import annotations

from html import escape

from livedrill.evidence.export_formats import OSCAL_PROPS_NS, REVIEWED_CONTROL, oscal_uuid
from livedrill.evidence.export_report import ReportAttachment
from livedrill.programme.coverage import Coverage, CoverageRow, VMCoverage
from livedrill.programme.dora_record import TEST_RECORD_FILE, QuarterTestRecord, quarter_record_html

COVERAGE_FILE = "coverage.json"
STATUS_TEXT = {
    VMCoverage.PASSED: "已通过 / passed",
    VMCoverage.FAILED: "未通过，待复测 / failed, awaiting retest",
    VMCoverage.OPEN_DEFICIENCY: "未整改缺陷 / open deficiency",
    VMCoverage.NOT_DRILLED: "本季度未演练 / not drilled this quarter",
}
EXCEPTION_TEXT = {"excluded": "已批准排除 / excluded with approval", "not_migratable": "不可热迁移 / not live-migratable"}


def _evidence(run_id: str | None) -> str:
    if not run_id:
        return '<span class="muted">—</span>'
    return f'<a class="mono" href="archive/{escape(run_id)}/">{escape(run_id)}</a>'


def _row(row: CoverageRow) -> str:
    css = "PASSED" if row.status is VMCoverage.PASSED else "FAILED"
    deficiency = (f"{escape(row.deficiency.root_cause)}<br>责任人 owner {escape(row.deficiency.owner)}, 期限 due {row.deficiency.due}"
                  if row.deficiency else ("" if not row.failures else '<span class="muted">无记录 / no record</span>'))
    return (f"<tr><td>{escape(row.cluster)}</td><td class=\"mono\">{escape(str(row.vm))}</td>"
            f'<td class="{css}">{STATUS_TEXT[row.status]}</td><td>{row.drills}</td><td>{row.failures}</td>'
            f"<td>{_evidence(row.last_run)}</td><td>{deficiency}</td><td>{_evidence(row.closed_by)}</td></tr>")


def coverage_attachment(cov: Coverage) -> ReportAttachment:
    figures = cov.figures()
    headline = (f"{figures.passed}/{figures.to_drill} 台待演练虚拟机已通过 / of {figures.to_drill} VMs to drill passed; "
                f"{figures.exceptions} 项例外 / exception(s); 范围内共 {figures.in_scope} 台 / {figures.in_scope} in scope")
    exceptions = "".join(
        f"<tr><td>{escape(e.cluster)}</td><td class=\"mono\">{escape(str(e.vm))}</td><td>{EXCEPTION_TEXT[e.kind]}</td>"
        f"<td>{escape(e.reason)}</td><td>{escape(e.approved_by or '未批准 / not approved')}</td></tr>"
        for e in cov.exceptions)
    html = f"""<h2 id="coverage">覆盖情况 Coverage: {escape(cov.programme)} {escape(cov.quarter)}</h2>
<p>{'<b class="PASSED">已覆盖 / COVERED</b>' if figures.complete else '<b class="FAILED">未覆盖 / NOT COVERED</b>'}: {headline}
（截至 as of {escape(cov.as_of.isoformat())}）</p>
<table><tr><th>集群 Cluster</th><th>虚拟机 VM</th><th>状态 Status</th><th>演练 Drills</th><th>失败 Failures</th>
<th>最近演练证据 Last drill's evidence</th><th>缺陷 Deficiency</th><th>复测 Closed by retest</th></tr>
{"".join(_row(r) for r in cov.rows)}</table>
<h3>例外 Exceptions</h3>
<table><tr><th>集群 Cluster</th><th>虚拟机 VM</th><th>类型 Kind</th><th>原因 Reason</th><th>批准人 Approved by</th></tr>{exceptions}</table>
"""
    warning = None if figures.complete else (
        f"本季度覆盖率低于策略要求：{figures.to_drill - figures.passed} 台核心虚拟机未通过热迁移演练 / Coverage of {cov.quarter} "
        f"is below policy: {figures.to_drill - figures.passed} core VM(s) to drill have not passed (see Coverage)")
    data = {**cov.model_dump(mode="json"), "figures": figures.model_dump(mode="json")}
    return ReportAttachment(file=COVERAGE_FILE, data=data, html=html, first_page_warning=warning, oscal_result=_oscal_result(cov))


def _finding(cov: Coverage, cluster: str, vm: str, satisfied: bool, status: str, description: str, props: list[dict]) -> dict:
    return {
        "uuid": oscal_uuid(cov.programme, cov.quarter, "coverage-finding", cluster, vm),
        "title": f"Core VM {vm} on {cluster}: {status}",
        "description": description,
        "props": [{"name": "vm", "ns": OSCAL_PROPS_NS, "value": vm}, {"name": "cluster", "ns": OSCAL_PROPS_NS, "value": cluster},
                  {"name": "coverage-status", "ns": OSCAL_PROPS_NS, "value": status}, *props],
        "target": {"type": "objective-id", "target-id": f"{REVIEWED_CONTROL}_obj",
                   "status": {"state": "satisfied" if satisfied else "not-satisfied"}},
    }


def _oscal_result(cov: Coverage) -> dict:
    """The quarter's coverage as one OSCAL result: a finding per in-scope VM (an exception is not satisfied, with why)."""
    findings = [
        _finding(cov, row.cluster, str(row.vm), row.status is VMCoverage.PASSED, row.status.value,
                 f"{row.drills} drill(s) this quarter, {row.failures} failed" + (f"; last run {row.last_run}" if row.last_run else ""),
                 [{"name": "last-run-id", "ns": OSCAL_PROPS_NS, "value": row.last_run}] if row.last_run else [])
        for row in cov.rows
    ] + [
        _finding(cov, e.cluster, str(e.vm), False, e.kind, f"exception: {e.reason} (approved by {e.approved_by or 'nobody'})",
                 [{"name": "approved-by", "ns": OSCAL_PROPS_NS, "value": e.approved_by}] if e.approved_by else [])
        for e in cov.exceptions
    ]
    return {
        "uuid": oscal_uuid(cov.programme, cov.quarter, "coverage-result"),
        "title": f"Coverage of programme {cov.programme} in {cov.quarter}",
        "description": f"Every in-scope core VM live-migrated and passed at least once in {cov.quarter}: "
                       f"{'complete' if cov.complete else 'not complete'} as of {cov.as_of.isoformat()}.",
        "start": cov.as_of.isoformat(),
        "reviewed-controls": {"control-selections": [{"include-controls": [{"control-id": REVIEWED_CONTROL}]}]},
        **({"findings": findings} if findings else {}),
    }


def test_record_attachment(record: QuarterTestRecord) -> ReportAttachment:
    """The quarter's test record (DORA's fields) as `test-record.json` and its section of the report."""
    return ReportAttachment(file=TEST_RECORD_FILE, data=record.model_dump(mode="json"), html=quarter_record_html(record))
