"""Reading the dashboards as Grafana would: every panel target and every variable query, with the
template variables substituted the way Grafana renders them for a single selected value."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

DASHBOARDS_DIR = Path(__file__).resolve().parents[2] / "dashboards"
_LABEL_VALUES = re.compile(r"^label_values\((?:(?P<selector>.+),\s*)?(?P<label>[a-zA-Z_][a-zA-Z0-9_]*)\)$")


@dataclass(frozen=True)
class PanelQuery:
    dashboard: str  # uid
    panel: str  # title
    ref: str
    expr: str
    instant: bool

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.dashboard, self.panel, self.ref)


@dataclass(frozen=True)
class VariableQuery:
    dashboard: str
    name: str
    label: str
    match: str | None


def dashboards() -> dict[str, dict]:
    return {d["uid"]: d for d in (json.loads(p.read_text()) for p in sorted(DASHBOARDS_DIR.glob("*.json")))}


def panel_queries() -> list[PanelQuery]:
    out = []
    for uid, board in dashboards().items():
        for panel in board["panels"]:
            for target in panel.get("targets", []):
                out.append(PanelQuery(uid, panel["title"], target["refId"], target["expr"], bool(target.get("instant"))))
    return out


def variable_queries() -> list[VariableQuery]:
    out = []
    for uid, board in dashboards().items():
        for var in board["templating"]["list"]:
            if var["type"] != "query":
                continue
            text = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
            m = _LABEL_VALUES.match(text.strip())
            if m is None:
                raise AssertionError(f"{uid} variable {var['name']}: only label_values() is supported, got {text!r}")
            out.append(VariableQuery(uid, var["name"], m["label"], m["selector"]))
    return out


def substitute(expr: str, variables: dict[str, str]) -> str:
    """Replace $name and ${name}; longest names first so $__range is not read as $__r + ange."""
    for name in sorted(variables, key=len, reverse=True):
        expr = expr.replace("${" + name + "}", variables[name]).replace("$" + name, variables[name])
    if "$" in expr:
        raise AssertionError(f"unsubstituted variable left in {expr!r}")
    return expr
