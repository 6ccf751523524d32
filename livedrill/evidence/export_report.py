"""The auditor's report: one self-contained bilingual (中文 / English) HTML page that prints well to PDF.

No scripts, no external resources: charts are inline SVG, styles inline, so the page renders the
same offline, years later, and the printed PDF matches the screen.
"""

from __future__ import annotations

from datetime import datetime
from html import escape
from typing import Any

from pydantic import Field

from livedrill.evidence.export_charts import LatencySeries, latency_svg, timeline_svg
from livedrill.evidence.export_summary import DrillSummary, checks_by_status
from livedrill.outcomes import Record

OUTCOME_LABEL = {"PASSED": "通过 / PASSED", "FAILED": "未通过 / FAILED", "ERROR": "错误 / ERROR"}
STATUS_LABEL = {"pass": "通过 pass", "warn": "警告 warn", "fail": "失败 fail", "not_applicable": "不适用 n/a"}
NOT_RECORDED = "未记录 / not recorded"

CSS = """
@page { size: A4; margin: 14mm 12mm; }
body { font-family: "Noto Sans CJK SC", "Source Han Sans SC", "WenQuanYi Zen Hei", "Microsoft YaHei", "PingFang SC", "Helvetica Neue", Arial, sans-serif;
       font-size: 10.5pt; color: #212529; margin: 0 auto; max-width: 960px; padding: 16px; }
h1 { font-size: 18pt; margin: 0 0 4px; } h2 { font-size: 14pt; border-bottom: 2px solid #343a40; padding-bottom: 2px; margin-top: 22px; }
h3 { font-size: 11.5pt; margin: 14px 0 4px; }
table { border-collapse: collapse; width: 100%; margin: 4px 0 8px; page-break-inside: auto; }
tr { page-break-inside: avoid; } th, td { border: 1px solid #ced4da; padding: 3px 6px; text-align: left; vertical-align: top; }
th { background: #f1f3f5; font-weight: 600; } .mono { font-family: "DejaVu Sans Mono", Menlo, Consolas, monospace; font-size: 8.5pt; word-break: break-all; }
.PASSED, .pass { color: #2b8a3e; font-weight: 600; } .FAILED, .ERROR, .fail { color: #c92a2a; font-weight: 600; } .warn { color: #e67700; font-weight: 600; }
.drill { page-break-before: always; } .muted { color: #868e96; } svg { display: block; margin: 6px 0; }
.kv th { width: 26%; } .note { background: #fff9db; border-left: 4px solid #fab005; padding: 6px 10px; }
"""


class ReportAttachment(Record):
    """A section the exporting command adds to the bundle (a programme's coverage): a JSON file at the bundle's top,
    its bilingual section in the report, and a warning for the report's first page when it has one."""

    file: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*\.json$")
    data: dict
    html: str
    first_page_warning: str | None = None
    oscal_result: dict | None = Field(None, description="One more result of the OSCAL assessment-results (its findings per VM)")


def _e(value: Any) -> str:
    return escape(str(value)) if value not in (None, "") else f'<span class="muted">{NOT_RECORDED}</span>'


def _t(value: datetime | None) -> str:
    return _e(value.isoformat() if value else None)


def _ms(value: float | None) -> str:
    return _e(None if value is None else f"{value:.1f} ms")


def _kv(rows: list[tuple[str, str]]) -> str:
    return '<table class="kv">' + "".join(f"<tr><th>{label}</th><td>{value}</td></tr>" for label, value in rows) + "</table>"


def _checks_table(rows: list, empty: str) -> str:
    if not rows:
        return f'<p class="muted">{empty}</p>'
    body = "".join(
        f'<tr><td>{escape(c.name)}</td><td class="{escape(c.status)}">{escape(STATUS_LABEL.get(c.status, c.status))}</td>'
        f"<td>{escape(c.subject or '')}</td><td>{escape(c.message)}</td></tr>"
        for c in rows
    )
    return f"<table><tr><th>检查 Check</th><th>结果 Result</th><th>对象 Subject</th><th>说明 Message</th></tr>{body}</table>"


def _latency_table(summary: DrillSummary) -> str:
    if not summary.probes:
        return '<p class="muted">无探测记录 / no probe report</p>'
    rows = []
    for p in summary.probes:
        for w in p.windows:
            rows.append(
                f"<tr><td>{escape(p.name)}</td><td>{escape(w.window)}</td><td>{w.count}</td><td>{_ms(w.p50_ms)}</td>"
                f"<td>{_ms(w.p95_ms)}</td><td>{_ms(w.p99_ms)}</td><td>{_ms(w.max_ms)}</td></tr>"
            )
        rows.append(
            f'<tr><td colspan="7">{escape(p.name)} ({escape(p.kind)} → {escape(p.target)}): 发送 sent {p.sent}, 成功 ok {p.ok}, 失败 failed {p.failed}, '
            f"最长中断 outage (longest gap) {_ms(p.longest_gap_ms)}, 最长等待 longest stall {_ms(p.longest_stall_ms)}, 丢失 lost {_e(p.lost)}, 重复 duplicated {_e(p.duplicated)}</td></tr>"
        )
    return (
        "<table><tr><th>探测 Probe</th><th>窗口 Window</th><th>数量 Count</th><th>p50</th><th>p95</th><th>p99</th><th>最大 Max</th></tr>"
        + "".join(rows)
        + "</table>"
    )


def _compensations(summary: DrillSummary) -> str:
    if not summary.compensations:
        return '<p class="muted">无回滚动作 / no rollback actions were registered</p>'
    body = "".join(
        f"<tr><td>{escape(c.action)}</td><td>{escape(c.state)}</td><td>{_e(c.outcome)}</td><td>{escape(c.manual_action or '')}</td></tr>"
        for c in summary.compensations
    )
    return f"<table><tr><th>动作 Action</th><th>状态 State</th><th>结果 Outcome</th><th>人工处理 Manual action</th></tr>{body}</table>"


def _timeline_table(summary: DrillSummary, limit: int = 60) -> str:
    events = summary.timeline
    shown = events[:limit]
    body = "".join(
        f"<tr><td class=\"mono\">{escape(e.at.isoformat())}</td><td>{escape(e.source)}</td><td>{escape(e.kind)}</td>"
        f"<td class=\"mono\">{escape(', '.join(f'{k}={v}' for k, v in e.detail.items())[:200])}</td></tr>"
        for e in shown
    )
    more = f'<p class="muted">另有 {len(events) - limit} 条事件见 timeline.jsonl / {len(events) - limit} more events in timeline.jsonl</p>' if len(events) > limit else ""
    return f"<table><tr><th>时间 Time (UTC)</th><th>来源 Source</th><th>类型 Kind</th><th>详情 Detail</th></tr>{body}</table>{more}"


def _drill_section(summary: DrillSummary, latency: dict[str, LatencySeries]) -> str:
    passed, warned, failed = checks_by_status(summary)
    slo_downtime = summary.slo.get("max_downtime_ms")
    slo_p99 = summary.slo.get("p99_latency_ms")
    parts = [
        f'<section class="drill" id="{escape(summary.run_id)}">',
        f"<h2>演练 Drill: {escape(summary.drill)} <span class=\"{escape(summary.outcome)}\">{escape(OUTCOME_LABEL.get(summary.outcome, summary.outcome))}</span></h2>",
        _kv(
            [
                ("运行编号 Run id", f'<span class="mono">{escape(summary.run_id)}</span>'),
                ("内容 What", f"{_e(summary.mode)} · {_e(', '.join(summary.vms))} · {_e(summary.platform)} / {_e(summary.cluster)}"),
                ("时间 When (UTC)", f"{_t(summary.started_at)} → {_t(summary.ended_at)}"),
                ("审批人 Approved by", _e(summary.approved_by)),
                ("变更单 Change ticket", _e(summary.change_ticket)),
                ("执行人 Operator", _e(summary.operator)),
                ("结论 Verdict", f'<span class="{escape(summary.outcome)}">{escape(OUTCOME_LABEL.get(summary.outcome, summary.outcome))}</span>'
                 + ("<br>" + "<br>".join(escape(r) for r in summary.reasons) if summary.reasons else "")),
                ("停机时间 Observed downtime", f"{_ms(summary.observed_downtime_ms)} (目标 target ≤ {_e(slo_downtime)} ms)"),
                ("检查 Checks", f'<span class="pass">{len(passed)} 通过 passed</span> · <span class="warn">{len(warned)} 警告 warned</span> · <span class="fail">{len(failed)} 失败 failed</span>'),
            ]
        ),
    ]
    if summary.missing:
        parts.append(f'<p class="note">缺少的证据文件 Evidence files this run does not have: {escape(", ".join(summary.missing))}</p>')
    parts += [
        "<h3>预检与合规 Pre-flight and compliance</h3>",
        _checks_table(summary.preflight, "无预检记录 / no pre-flight record"),
        "<h3>时间线 Timeline</h3>",
        timeline_svg(summary.timeline, title=f"Timeline 时间线 · {summary.run_id}"),
        "<h3>交易探测与延迟 Transaction probes and latency</h3>",
    ]
    for probe in summary.probes:
        if probe.series_file and probe.series_file in latency:
            parts.append(latency_svg(latency[probe.series_file], title=f"Probe latency 探测延迟 · {probe.name}", slo_p99_ms=slo_p99, gap_ms=probe.longest_gap_ms))
    parts += [
        _latency_table(summary),
        "<h3>迁移后检查 Post-checks</h3>",
        _checks_table(summary.postcheck, "无迁移后检查记录 / no post-check record"),
        "<h3>回滚 Rollback</h3>",
        _compensations(summary),
        "<h3>版本 Versions</h3>",
        _kv([(escape(str(k)), f'<span class="mono">{escape(str(v))}</span>') for k, v in summary.versions.items()]) if summary.versions else f'<p class="muted">{NOT_RECORDED}</p>',
        "<h3>证据完整性 Evidence integrity</h3>",
        _kv(
            [
                ("链序号 Chain sequence", str(summary.sequence)),
                ("封存时间 Sealed at", _t(summary.sealed_at)),
                ("可信时间戳 RFC 3161 timestamp", _t(summary.timestamped_at) + (" (MANIFEST.tsr)" if summary.timestamped_at else "")),
                ("清单 SHA-256 Manifest", f'<span class="mono">{escape(summary.manifest_sha256)}</span>'),
                ("签名密钥 Signing key id", f'<span class="mono">{escape(summary.key_id)}</span>'),
                ("文件数 Files", str(summary.files)),
            ]
        ),
        "<h3>事件明细 Timeline events</h3>",
        _timeline_table(summary),
        "</section>",
    ]
    return "".join(parts)


def _trusted_keys(trusted_key_ids: list[str] | None) -> str:
    if not trusted_key_ids:
        return ('<b class="FAILED">导出时未指定受信密钥：证据来源未确认 / No trusted key was pinned at export: '
                "the origin of this evidence is not established</b>")
    return (f'<span class="mono">{escape(", ".join(trusted_key_ids))}</span> '
            "(导出时校验：每个运行均由这些密钥或其轮换后继签名 / checked at export: every run is signed by these keys or their rotated successors)")


def render_report(
    summaries: list[DrillSummary],
    latency: dict[tuple[str, str], LatencySeries],
    *,
    quarter: str,
    generated_at: datetime,
    chain_head_sha256: str,
    key_ids: list[str],
    trusted_key_ids: list[str] | None,
    unsealed: list[str],
    attachments: list[ReportAttachment] = (),
) -> str:
    """The full report. `latency` maps (run id, series file) to the bucketed probe series."""
    rows = "".join(
        f'<tr><td><a href="#{escape(s.run_id)}">{escape(s.drill)}</a><br><span class="mono">{escape(s.run_id)}</span></td>'
        f"<td>{_t(s.started_at)}</td><td>{_e(s.approved_by)}<br>{_e(s.change_ticket)}</td>"
        f'<td class="{escape(s.outcome)}">{escape(OUTCOME_LABEL.get(s.outcome, s.outcome))}</td><td>{_ms(s.observed_downtime_ms)}</td>'
        f"<td>{_ms(max((w.p99_ms for p in s.probes for w in p.windows if w.p99_ms is not None), default=None))}</td>"
        f"<td>{len([c for c in s.compensations if c.state == 'done'])}</td></tr>"
        for s in summaries
    )
    unsealed_note = (
        f'<p class="note">本季度有未封存的运行（不作为证据）/ Runs of this quarter that were never sealed (not evidence): {escape(", ".join(unsealed))}</p>'
        if unsealed
        else ""
    )
    sections = "".join(_drill_section(s, {rel: series for (run_id, rel), series in latency.items() if run_id == s.run_id}) for s in summaries)
    return f"""<!DOCTYPE html>
<html lang="zh-CN"><head><meta charset="utf-8"><title>热迁移演练报告 Live-migration drill report {escape(quarter)}</title>
<style>{CSS}</style></head><body>
<h1>热迁移演练审计报告 · Live-migration drill audit report</h1>
<p>季度 Quarter: <b>{escape(quarter)}</b> · 生成时间 Generated: {escape(generated_at.isoformat())} · 演练次数 Drills: {len(summaries)}</p>
<p id="plan">每次演练的计划即其执行时的规格 (archive/&lt;run&gt;/spec.yaml)，审批信息记录于 run.json。证据经 SHA-256 清单、Ed25519 签名并按封存顺序哈希链接；校验步骤见 VERIFY.md。<br>
The plan of each drill is its spec as run (archive/&lt;run&gt;/spec.yaml), approval as recorded in run.json. The evidence is sealed by
SHA-256 manifests, signed with Ed25519 and hash-chained in seal order; VERIFY.md tells how to check it without livedrill.</p>
{_kv([("链头 Chain head SHA-256", f'<span class="mono">{escape(chain_head_sha256)}</span>'), ("签名密钥 Signing keys", f'<span class="mono">{escape(", ".join(key_ids))}</span>'), ("受信密钥 Trusted keys", _trusted_keys(trusted_key_ids))])}
{unsealed_note}
{"".join(f'<p class="note"><b class="FAILED">{escape(a.first_page_warning)}</b></p>' for a in attachments if a.first_page_warning)}
<h2>汇总 Summary</h2>
<table><tr><th>演练 Drill</th><th>开始 Started (UTC)</th><th>审批 Approval</th><th>结论 Verdict</th><th>停机 Downtime</th><th>最大 p99 Worst p99</th><th>回滚 Rollbacks</th></tr>{rows}</table>
{"".join(a.html for a in attachments)}
{sections}
</body></html>
"""
