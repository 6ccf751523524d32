"""Server-side `Table` rendering for `kubectl get` (meta.k8s.io/v1), with the columns KubeVirt prints."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Callable

from livedrill_lab.kube.resources import ResourceType

Obj = dict[str, Any]


def human_age(created: str | None, now: datetime | None = None) -> str:
    if not created:
        return "<unknown>"
    start = datetime.strptime(created, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    seconds = max(0, int(((now or datetime.now(timezone.utc)) - start).total_seconds()))
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 3 * 3600:
        return f"{seconds // 60}m"
    if seconds < 48 * 3600:
        return f"{seconds // 3600}h"
    return f"{seconds // 86400}d"


def _condition_true(obj: Obj, kind: str) -> bool:
    return any(c.get("type") == kind and c.get("status") == "True" for c in obj.get("status", {}).get("conditions", []))


def _node_status(node: Obj) -> str:
    status = "Ready" if _condition_true(node, "Ready") else "NotReady"
    return status + (",SchedulingDisabled" if node.get("spec", {}).get("unschedulable") else "")


def _pod_ready(pod: Obj) -> str:
    statuses = pod.get("status", {}).get("containerStatuses", [])
    return f"{sum(1 for s in statuses if s.get('ready'))}/{len(pod.get('spec', {}).get('containers', []))}"


Column = tuple[str, Callable[[Obj], Any]]
_AGE: Column = ("Age", lambda o: human_age(o["metadata"].get("creationTimestamp")))

_COLUMNS: dict[str, list[Column]] = {
    "Node": [("Status", _node_status), ("Roles", lambda o: "<none>"), _AGE,
             ("Version", lambda o: o.get("status", {}).get("nodeInfo", {}).get("kubeletVersion", ""))],
    "Pod": [("Ready", _pod_ready), ("Status", lambda o: o.get("status", {}).get("phase", "")),
            ("Node", lambda o: o.get("spec", {}).get("nodeName", "")), _AGE],
    "VirtualMachineInstance": [
        _AGE, ("Phase", lambda o: o.get("status", {}).get("phase", "")),
        ("IP", lambda o: (o.get("status", {}).get("interfaces") or [{}])[0].get("ipAddress", "")),
        ("NodeName", lambda o: o.get("status", {}).get("nodeName", "")),
        ("Ready", lambda o: "True" if _condition_true(o, "Ready") else "False")],
    "VirtualMachineInstanceMigration": [
        ("Phase", lambda o: o.get("status", {}).get("phase", "")),
        ("VMI", lambda o: o.get("spec", {}).get("vmiName", "")), _AGE],
    "VirtualMachine": [_AGE, ("Status", lambda o: o.get("status", {}).get("printableStatus", "")),
                       ("Ready", lambda o: "True" if o.get("status", {}).get("ready") else "False")],
    "Event": [("Type", lambda o: o.get("type", "")), ("Reason", lambda o: o.get("reason", "")),
              ("Object", lambda o: f"{o.get('involvedObject', {}).get('kind', '').lower()}/"
                                   f"{o.get('involvedObject', {}).get('name', '')}"),
              ("Message", lambda o: o.get("message", ""))],
}


def render_table(r: ResourceType, items: list[Obj], resource_version: int) -> Obj:
    columns = _COLUMNS.get(r.kind, [_AGE])
    definitions = [{"name": "Name", "type": "string", "format": "name", "description": "Name", "priority": 0}]
    definitions += [{"name": name, "type": "string", "format": "", "description": name, "priority": 0}
                    for name, _ in columns]
    rows = [
        {
            "cells": [o["metadata"]["name"], *[render(o) for _, render in columns]],
            "object": {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": o["metadata"]},
        }
        for o in items
    ]
    return {"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": {"resourceVersion": str(resource_version)},
            "columnDefinitions": definitions, "rows": rows}
