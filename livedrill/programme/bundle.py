"""The programme's coverage in the auditor bundle: `coverage.json` and a bilingual section of the report.

Every in-scope VM is a row: its cluster, status, drills and failures this quarter, its last drill with a link
to that run's evidence in the bundle (`archive/<run id>/`), the deficiency and the retest that closed it; the
exceptions follow with their reason and approver. A quarter below policy (a VM to drill that has not passed)
says so on the report's first page.
"""

from __future__ import annotations

from html import escape

from livedrill.evidence.export_report import ReportAttachment
from livedrill.programme.coverage import Coverage, CoverageRow, VMCoverage

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
    return ReportAttachment(file=COVERAGE_FILE, data=data, html=html, first_page_warning=warning)
