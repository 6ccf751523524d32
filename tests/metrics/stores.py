"""Real metric stores for the tests: Prometheus and VictoriaMetrics from Debian, on 127.0.0.1 with an
ephemeral port and a temporary storage directory, stopped by PID when the test ends."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil

PROMETHEUS = shutil.which("prometheus")
VICTORIA_METRICS = shutil.which("victoria-metrics")
PUSHGATEWAY = shutil.which("prometheus-pushgateway")
START_TIMEOUT_S = 60.0

# Drill samples are historical (a year of quarterly drills): the store must accept old, out-of-order samples.
PROMETHEUS_CONFIG = """\
global:
  evaluation_interval: 1h
storage:
  tsdb:
    out_of_order_time_window: 800d
"""


@dataclass(frozen=True)
class Store:
    kind: str
    base_url: str
    pid: int
    log: Path


def _listening_port(proc: subprocess.Popen, deadline: float) -> int:
    """The port the process bound (it was given port 0), read from the kernel's socket table."""
    ps = psutil.Process(proc.pid)
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"store exited early with code {proc.returncode}")
        ports = [c.laddr.port for c in ps.net_connections(kind="tcp4")
                 if c.status == psutil.CONN_LISTEN and c.laddr.ip == "127.0.0.1"]
        if ports:
            return ports[0]
        time.sleep(0.05)
    raise TimeoutError("store did not start listening")


def _wait_ready(url: str, proc: subprocess.Popen, deadline: float) -> None:
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"store exited early with code {proc.returncode}")
        try:
            if httpx.get(url, timeout=2.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{url} not ready")


@contextlib.contextmanager
def _running(cmd: list[str], kind: str, ready_path: str, log: Path) -> Iterator[Store]:
    deadline = time.monotonic() + START_TIMEOUT_S
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        port = _listening_port(proc, deadline)
        base = f"http://127.0.0.1:{port}"
        _wait_ready(base + ready_path, proc, deadline)
        yield Store(kind=kind, base_url=base, pid=proc.pid, log=log)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def _scrape_config(target: str, job: str) -> str:
    # honor_labels keeps the job and grouping labels the Pushgateway holds, as Pushgateway docs require.
    return f"""\
scrape_configs:
  - job_name: {job}
    honor_labels: true
    scrape_interval: 1s
    scrape_timeout: 1s
    static_configs:
      - targets: ["{target}"]
"""


@contextlib.contextmanager
def prometheus(workdir: Path, scrape_target: str | None = None, job: str = "pushgateway") -> Iterator[Store]:
    """Prometheus with the remote-write receiver; scraping `scrape_target` (host:port, path /metrics) every second
    as job `job` when given."""
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "prometheus.yml"
    config.write_text(PROMETHEUS_CONFIG + (_scrape_config(scrape_target, job) if scrape_target else ""))
    cmd = [PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={workdir / 'data'}",
           "--storage.tsdb.retention.time=5y", "--web.listen-address=127.0.0.1:0",
           "--web.enable-remote-write-receiver", "--log.level=warn"]
    with _running(cmd, "prometheus", "/-/ready", workdir / "prometheus.log") as store:
        yield store


@contextlib.contextmanager
def victoria_metrics(workdir: Path) -> Iterator[Store]:
    workdir.mkdir(parents=True, exist_ok=True)
    cmd = [VICTORIA_METRICS, f"-storageDataPath={workdir / 'data'}", "-retentionPeriod=5y",
           "-httpListenAddr=127.0.0.1:0", "-loggerLevel=WARN", "-search.latencyOffset=0s",
           "-search.disableCache"]
    with _running(cmd, "victoriametrics", "/health", workdir / "victoria-metrics.log") as store:
        yield store


@contextlib.contextmanager
def pushgateway(workdir: Path) -> Iterator[Store]:
    workdir.mkdir(parents=True, exist_ok=True)
    cmd = [PUSHGATEWAY, "--web.listen-address=127.0.0.1:0", "--persistence.file=", "--log.level=warn"]
    with _running(cmd, "pushgateway", "/-/ready", workdir / "pushgateway.log") as store:
        yield store
