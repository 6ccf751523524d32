"""Where the wall time of `livedrill run drills/lab-targeted.yaml` goes, on the embedded lab.

    .venv/bin/python benchmarks/drill_overhead.py [--repeat 3]

Starts the lab (as `livedrill demo` does, but on free ports in a temporary directory), aims the demo's
drill at it (only its kubeconfig, ledger URL and evidence directory change; budgets and SLOs are the
demo's), then runs `python -m livedrill run SPEC` (the `livedrill` command) as a user would and stamps every stage line the
command writes (`== preflight`, `== probe smoke`, ...) as it arrives. Prints, per run:

    wall       from starting the command to its exit
    timeline   the drill's own record: run.json started_at (evidence opened) to ended_at (verdict written)
    start-up   command start to the first stage line (imports, Prefect, opening the evidence)
    preflight, probe smoke, migration (with the spec's warm-up and cool-down), sealing (seal to verdict)
    exit       the verdict line to the process's exit
    overhead   wall - timeline, split into before (command start to evidence opened) and after (verdict written
               to the process's exit)

Prefect API, --prefect:
    per-run    the command starts its own temporary API (no PREFECT_API_URL, no livedrill server: as in the demo)
    server     `livedrill server start` once, here, then every drill finds it (what a user does once per machine)
    prestarted an API started here, named by PREFECT_API_URL (as a deployed Prefect server is)

Figures only: nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "lab"))

from livedrill_lab.manager import running_lab  # noqa: E402

DEMO_LEDGER = "http://127.0.0.1:18101"
# Stage line -> the phase it starts, in the order a passing targeted drill prints them.
STAGES = {"== preflight": "preflight", "== probe smoke": "probe smoke", "== migrate": "migration",
          "== evidence": "sealing", "VERDICT:": "exit"}


def aimed_spec(lab, tmp: Path) -> Path:
    data = yaml.safe_load((REPO / "drills" / "lab-targeted.yaml").read_text())
    data["platform"]["kubeconfig"] = str(lab.kubeconfig)
    ledger = lab.ledger_urls["banking/banking-core-vm"]
    for probe in data["probes"]:
        for step in ("write", "read"):
            probe[step]["url"] = probe[step]["url"].replace(DEMO_LEDGER, ledger)
    data["evidence"].update(dir=str(tmp / "evidence"), signing_key=str(tmp / "keys" / "signing.pem"))
    path = tmp / "lab-targeted.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def run_once(spec: Path, env: dict[str, str]) -> tuple[float, float, dict[str, float], int]:
    """(wall clock at start, wall seconds, stage -> seconds after start when its line arrived, exit code)."""
    marks: dict[str, float] = {}
    started_at = time.time()
    t0 = time.perf_counter()
    child = subprocess.Popen([sys.executable, "-m", "livedrill", "run", str(spec)], cwd=spec.parent, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def watch(stream):
        for line in stream:
            now = time.perf_counter() - t0
            for prefix, phase in STAGES.items():
                if line.strip().startswith(prefix):
                    marks.setdefault(phase, now)

    readers = [threading.Thread(target=watch, args=(s,), daemon=True) for s in (child.stdout, child.stderr)]
    for r in readers:
        r.start()
    code = child.wait(timeout=600)
    wall = time.perf_counter() - t0
    for r in readers:
        r.join(timeout=5)
    return started_at, wall, marks, code


def timeline(evidence: Path) -> tuple[float, float]:
    """The drill's own record: (evidence opened, verdict written), as epoch seconds."""
    run = json.loads(next(evidence.glob("*/run.json")).read_text())
    return datetime.fromisoformat(run["started_at"]).timestamp(), datetime.fromisoformat(run["ended_at"]).timestamp()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3, help="drills to run, each on a fresh lab")
    parser.add_argument("--prefect", choices=["per-run", "server", "prestarted"], default="per-run",
                        help="where the drill's Prefect API comes from (see above)")
    args = parser.parse_args()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "lab"), os.environ.get("PYTHONPATH", "")])}
    env["PYTHONUNBUFFERED"] = "1"  # stdout is a pipe here: the verdict line must arrive when it is printed
    env.pop("PREFECT_API_URL", None)
    scratch = Path(tempfile.mkdtemp(prefix="drill-overhead-"))
    atexit.register(shutil.rmtree, scratch, True)  # runs last: after the server's stop registered below
    env["LIVEDRILL_SERVER_DIR"] = str(scratch / "server")  # none there unless --prefect server starts it
    env.setdefault("DO_NOT_TRACK", "1")  # as livedrill.cli sets them for the command
    env.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.update(DO_NOT_TRACK=env["DO_NOT_TRACK"], PREFECT_SERVER_ANALYTICS_ENABLED=env["PREFECT_SERVER_ANALYTICS_ENABLED"])
    if args.prefect == "prestarted":
        from livedrill.prefect_api import start_local_api

        api = start_local_api()
        assert api is not None
        api.wait_ready(timeout_s=120)
        env["PREFECT_API_URL"] = api.url
    if args.prefect == "server":
        done = subprocess.run([sys.executable, "-m", "livedrill.cli", "server", "start"], env=env, capture_output=True,
                              text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        atexit.register(subprocess.run, [sys.executable, "-m", "livedrill.cli", "server", "stop"], env=env,
                        capture_output=True, timeout=60)
    load = os.getloadavg()[0]
    print(f"# {platform.python_implementation()} {platform.python_version()}, {os.cpu_count()} CPUs, "
          f"load {load:.1f} at start; drills/lab-targeted.yaml on the embedded lab; Prefect API {args.prefect}; seconds")
    phases = ["start-up", "preflight", "probe smoke", "migration", "sealing", "exit"]
    print(f"{'run':>3} {'code':>4} {'wall':>6} {'timeline':>8} {'overhead':>8} {'before':>6} {'after':>6} "
          + " ".join(f"{p:>11}" for p in phases))
    for i in range(args.repeat):
        with tempfile.TemporaryDirectory() as tmp, running_lab(Path(tmp)) as lab:
            spec = aimed_spec(lab, Path(tmp))
            started_at, wall, marks, code = run_once(spec, env)
            opened, verdict = timeline(Path(tmp) / "evidence")
        edges = [0.0] + [marks.get(STAGES[k]) for k in STAGES] + [wall]
        spans = [f"{b - a:>11.2f}" if a is not None and b is not None else f"{'-':>11}" for a, b in zip(edges, edges[1:])]
        own = verdict - opened
        print(f"{i + 1:>3} {code:>4} {wall:>6.2f} {own:>8.2f} {wall - own:>8.2f} {opened - started_at:>6.2f} "
              f"{started_at + wall - verdict:>6.2f} " + " ".join(spans))


if __name__ == "__main__":
    main()
