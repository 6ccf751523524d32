"""The fleet lab: several KubeVirt lab clusters at once, for drill programmes (`livedrill lab up --preset fleet`).

Each member is a whole lab (its own API server, controller and ledgers, on ephemeral ports) in its own
folder under the fleet's state directory, started from the `fleet-member` preset. The fleet's `kubeconfig`
holds one context per member, named after it (`fleet-a`, `fleet-b`), so that a programme spec names each
cluster by context. `fleet.json` lists the members; `lab status` and `lab down` read it.

It also writes `lab-fleet.yaml`, a drill programme over both clusters for the current quarter, with two
change windows: one open from now for three hours, one right after it. Its drill template is
drills/lab-fleet-drill.yaml, whose probe reaches each VM's ledger through the VM's annotation.
"""

from __future__ import annotations

import contextlib
import json
import os
from datetime import datetime, time, timedelta, timezone
from pathlib import Path
from typing import Any, Iterator
from zoneinfo import ZoneInfo

import yaml

from livedrill.programme.spec import quarter_bounds
from livedrill_lab.manager import DEFAULT_READY_TIMEOUT_S, LabError, LabInfo, lab_status, start_lab, stop_lab

FLEET_FILE = "fleet.json"
PROGRAMME_FILE = "lab-fleet.yaml"
DRILL_TEMPLATE = Path(__file__).resolve().parents[2] / "drills" / "lab-fleet-drill.yaml"
WINDOW_ZONE = "Asia/Shanghai"
WINDOW_LENGTH = timedelta(hours=3)
MEMBERS = ("fleet-a", "fleet-b")
# Two API servers and 24 ledgers start at once on the machine: twice a single lab's bound.
FLEET_READY_TIMEOUT_S = 2 * DEFAULT_READY_TIMEOUT_S


def is_fleet(state_dir: Path) -> bool:
    return (Path(state_dir) / FLEET_FILE).is_file()


def _members(state_dir: Path) -> list[str]:
    return json.loads((Path(state_dir) / FLEET_FILE).read_text())["members"]


def merged_kubeconfig(members: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """One kubeconfig from each member's own (one context each), every name replaced by the member's."""
    merged: dict[str, Any] = {"apiVersion": "v1", "kind": "Config", "preferences": {},
                              "current-context": next(iter(members)), "clusters": [], "users": [], "contexts": []}
    for name, config in members.items():
        merged["clusters"].append({"name": name, "cluster": config["clusters"][0]["cluster"]})
        merged["users"].append({"name": f"{name}-admin", "user": config["users"][0]["user"]})
        merged["contexts"].append({"name": name, "context": {"cluster": name, "user": f"{name}-admin"}})
    return merged


def fleet_programme(kubeconfig: Path, now: datetime) -> dict[str, Any]:
    """The lab's programme: both clusters, this quarter, a window open now and the one after (cut at the quarter's
    end), each VM retested right after a failure (no cool-off: the lab has no remediation to wait for)."""
    zone = ZoneInfo(WINDOW_ZONE)
    local = now.astimezone(zone).replace(second=0, microsecond=0)
    quarter = f"{local.year}Q{(local.month - 1) // 3 + 1}"  # the windows' local quarter
    after = datetime.combine(quarter_bounds(quarter)[1], time(), zone)
    edges = [local - timedelta(minutes=1), local + WINDOW_LENGTH, local + 2 * WINDOW_LENGTH]
    edges = [min(e, after - timedelta(minutes=1)) for e in edges]
    slots = [{"start": a.strftime("%Y-%m-%dT%H:%M"), "end": b.strftime("%Y-%m-%dT%H:%M")}
             for a, b in zip(edges, edges[1:]) if b > a]
    return {
        "kind": "programme", "name": "lab-fleet", "quarter": quarter,
        "description": "Every core VM of the fleet lab's two clusters live-migrated and passed this quarter.",
        "clusters": [{"name": member, "selector": {"tier": "core"},
                      "platform": {"kind": "kubevirt", "kubeconfig": str(kubeconfig), "context": member,
                                   "request_timeout_s": 5}} for member in MEMBERS],
        "windows": {"timezone": WINDOW_ZONE, "slots": slots},
        "drill": {"spec": str(DRILL_TEMPLATE), "setup_s": 60, "start_s": 60},
        "retest": {"cool_off_days": 0, "max_attempts": 3},
        "approval": {"required": False},
        "sign_off": {"roles": ["change-manager", "head-of-infrastructure"]},
    }


def start_fleet(state_dir: Path, exit_with_pid: int | None = None,
                ready_timeout_s: float = FLEET_READY_TIMEOUT_S) -> dict[str, LabInfo]:
    state_dir = Path(state_dir).resolve()
    if is_fleet(state_dir) and any(lab_status(state_dir / m) for m in _members(state_dir)):
        raise LabError(f"a fleet lab is already running from {state_dir}; stop it first")
    if lab_status(state_dir) is not None:
        raise LabError(f"a lab is already running from {state_dir}; stop it first")
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    (state_dir / FLEET_FILE).write_text(json.dumps({"members": list(MEMBERS)}))
    started: dict[str, LabInfo] = {}
    try:
        for member in MEMBERS:
            started[member] = start_lab(state_dir / member, preset="fleet-member", api_port=0, ledger_port_base=0,
                                        ready_timeout_s=ready_timeout_s, exit_with_pid=exit_with_pid)
    except BaseException:
        stop_fleet(state_dir)
        raise
    configs = {m: yaml.safe_load(info.kubeconfig.read_text()) for m, info in started.items()}
    path = state_dir / "kubeconfig"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # it holds the members' bearer tokens
    with os.fdopen(fd, "w") as handle:
        yaml.safe_dump(merged_kubeconfig(configs), handle, sort_keys=False)
    programme = fleet_programme(path, datetime.now(timezone.utc))
    (state_dir / PROGRAMME_FILE).write_text(
        "# Written by `livedrill lab up --preset fleet`: the fleet lab's drill programme for this quarter.\n"
        + yaml.safe_dump(programme, sort_keys=False))
    return started


def fleet_status(state_dir: Path) -> dict[str, LabInfo | None]:
    return {m: lab_status(Path(state_dir) / m) for m in _members(state_dir)}


def stop_fleet(state_dir: Path) -> None:
    """Stop every member (by the PIDs each recorded). Idempotent."""
    for member in _members(state_dir):
        stop_lab(Path(state_dir) / member)


@contextlib.contextmanager
def running_fleet(tmp_path: Path) -> Iterator[dict[str, LabInfo]]:
    """A fleet under `tmp_path/fleet` for tests, stopped on exit and tied to this process."""
    state_dir = Path(tmp_path) / "fleet"
    members = start_fleet(state_dir, exit_with_pid=os.getpid())
    try:
        yield members
    finally:
        stop_fleet(state_dir)
