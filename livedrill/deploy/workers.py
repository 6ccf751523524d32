"""`prefect worker` processes for one machine (`livedrill programme run --workers N`): real workers polling the
programme's process work pool, started for the run and stopped after it by the PIDs recorded here.

In production the workers run on their own hosts (`prefect worker start --pool POOL`, e.g. as systemd units);
these are the same command, for a lab or a single host.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import httpx

# A worker imports Prefect and registers with the server within seconds; a loaded 2-core machine may take 30.
WORKER_READY_TIMEOUT_S = 90.0
# A worker ends its polling loop within seconds of SIGTERM (its flow runs are subprocesses of their own).
WORKER_STOP_TIMEOUT_S = 20.0
POLL_S = 0.5
WORKER_QUERY_S = 1
HTTP_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Worker:
    name: str
    process: subprocess.Popen
    log: Path


def _prefect() -> str:
    return str(Path(sys.executable).with_name("prefect"))


def _registered(api_url: str, pool: str) -> set[str]:
    try:
        answer = httpx.post(f"{api_url}/work_pools/{pool}/workers/filter", json={}, timeout=HTTP_TIMEOUT_S)
    except httpx.HTTPError:
        return set()
    return {w["name"] for w in answer.json()} if answer.status_code == 200 else set()


def start_workers(api_url: str, pool: str, count: int, log_dir: Path, env: dict[str, str] | None = None) -> list[Worker]:
    """`count` workers on `pool`, each in its own session, with `env` (default: this process's environment); returns
    once the server lists every one of them."""
    log_dir.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%S")
    workers = []
    child_env = {**(os.environ if env is None else env), "PREFECT_API_URL": api_url, "PYTHONUNBUFFERED": "1"}
    # A worker asks the server for runs every 10 s by default, which a window pays for each of its drills in turn.
    child_env.setdefault("PREFECT_WORKER_QUERY_SECONDS", str(WORKER_QUERY_S))
    for i in range(1, count + 1):
        name = f"{pool}-{os.getpid()}-{i}"
        log = log_dir / f"{stamp}-worker-{i}.log"
        process = subprocess.Popen([_prefect(), "worker", "start", "--pool", pool, "--type", "process", "--name", name],
                                   env=child_env, stdout=log.open("wb"), stderr=subprocess.STDOUT,
                                   start_new_session=True)
        workers.append(Worker(name, process, log))
    deadline = time.monotonic() + WORKER_READY_TIMEOUT_S
    while not {w.name for w in workers} <= _registered(api_url, pool):
        dead = [w for w in workers if w.process.poll() is not None]
        if dead or time.monotonic() > deadline:
            stop_workers(workers)
            why = f"exited {dead[0].process.returncode}" if dead else f"not registered within {WORKER_READY_TIMEOUT_S:.0f} s"
            raise RuntimeError(f"prefect worker {(dead or workers)[0].name} {why}; see {(dead or workers)[0].log}")
        time.sleep(POLL_S)
    return workers


def stop_workers(workers: list[Worker]) -> None:
    """SIGTERM each worker (by the PID it was started with), SIGKILL the ones still there after the timeout."""
    for worker in workers:
        if worker.process.poll() is None:
            worker.process.send_signal(signal.SIGTERM)
    for worker in workers:
        try:
            worker.process.wait(WORKER_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                worker.process.kill()
            worker.process.wait(WORKER_STOP_TIMEOUT_S)


@contextlib.contextmanager
def running_workers(api_url: str, pool: str, count: int, log_dir: Path) -> Iterator[list[Worker]]:
    workers = start_workers(api_url, pool, count, log_dir) if count else []
    try:
        yield workers
    finally:
        stop_workers(workers)
