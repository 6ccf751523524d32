"""Start, inspect and stop the embedded KubeVirt lab (used by `livedrill lab up|status|down` and by tests).

A lab is a set of OS processes, each in its own session so that it outlives the command that started it:
one ledger per VMI of the preset (the VMI's workload: what the simulated virt-controller pauses during
stop-and-copy) and the API server + controller (`python -m livedrill_lab.kube`). Everything the lab
needs or writes lives in its state directory:

    lab.json      what is running: API URL, virt-handler metrics URL, processes (pid + start time), ledger URLs per VMI
    kubeconfig    context `livedrill-lab` (HTTPS with the lab's own CA, bearer token)
    api.pid       the API server's PID
    freezes.json  ground truth: every real pause of a workload (also GET /lab/v1/freezes)
    logs/         each process's stdout/stderr

Processes are only ever signalled by the PIDs recorded here, and only when their start time still
matches (a recycled PID is left alone).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import httpx
import psutil
from pydantic import BaseModel, ConfigDict, Field

from livedrill_lab.presets import load_preset

LAB_FILE = "lab.json"
CONTEXT = "livedrill-lab"
TOKEN_ENV = "LIVEDRILL_LAB_TOKEN"
# Bounded waits: generous for a loaded 2-core machine, short enough to report a broken lab promptly.
DEFAULT_READY_TIMEOUT_S = 30.0
DEFAULT_STOP_TIMEOUT_S = 10.0
STOP_POLL_S = 0.05
HTTP_TIMEOUT_S = 5.0


class LabError(RuntimeError):
    """The lab could not start, or is not in the state asked for."""


class ProcessRecord(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: str  # "api" or "ledger ns/name"
    pid: int
    create_time: float
    log: Path

    def alive(self) -> bool:
        """Running, and the same process that was started (not a recycled PID)."""
        try:
            process = psutil.Process(self.pid)
            return abs(process.create_time() - self.create_time) < 0.01 and process.status() != psutil.STATUS_ZOMBIE
        except psutil.Error:
            return False


class LabInfo(BaseModel):
    model_config = ConfigDict(extra="forbid")

    state_dir: Path
    preset: str
    api_url: str | None = None
    # The simulated virt-handler's Prometheus endpoint, http://127.0.0.1:PORT/metrics (plain HTTP, no token)
    metrics_url: str | None = None
    kubeconfig: Path
    context: str = CONTEXT
    ca_file: Path
    processes: list[ProcessRecord] = Field(default_factory=list)
    ledger_urls: dict[str, str] = Field(default_factory=dict, description='"ns/name" -> http://127.0.0.1:PORT')

    def process(self, role: str) -> ProcessRecord:
        for record in self.processes:
            if record.role == role:
                return record
        raise LabError(f"the lab has no {role} process")

    def workload_pid(self, vmi: str) -> int:
        return self.process(f"ledger {vmi}").pid

    def token(self) -> str:
        config = json.loads(self.kubeconfig.read_text())
        return config["users"][0]["user"]["token"]

    def api(self, method: str, path: str, body: Any = None, timeout_s: float = HTTP_TIMEOUT_S) -> Any:
        """One authenticated call to the lab's API server (Kubernetes paths or /lab/v1/...)."""
        if self.api_url is None:
            raise LabError("the lab's API server is not up")
        context = ssl.create_default_context(cafile=str(self.ca_file))
        response = httpx.request(method, self.api_url + path, json=body, verify=context, timeout=timeout_s,
                                 headers={"Authorization": f"Bearer {self.token()}"})
        response.raise_for_status()
        return response.json()

    def freezes(self) -> list[dict[str, Any]]:
        """Ground truth: every real SIGSTOP..SIGCONT window of a workload, with monotonic and wall times."""
        return self.api("GET", "/lab/v1/freezes")["freezes"]

    def add_fault(self, path_regex: str, *, status: int | None = None, count: int = 1, delay_ms: float = 0.0,
                  method: str | None = None, retry_after_s: int = 1) -> None:
        """Answer the next `count` API requests matching `path_regex` with `status` and/or after a delay."""
        self.api("POST", "/lab/v1/faults", {"path_regex": path_regex, "status": status, "count": count,
                                            "delay_ms": delay_ms, "method": method, "retry_after_s": retry_after_s})


def _write_lab_file(info: LabInfo) -> None:
    path = info.state_dir / LAB_FILE
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(info.model_dump_json(indent=2))
    tmp.replace(path)


def _read_lab_file(state_dir: Path) -> LabInfo | None:
    path = Path(state_dir) / LAB_FILE
    if not path.exists():
        return None
    return LabInfo.model_validate_json(path.read_text())


def _spawn(role: str, argv: list[str], log: Path, env: dict[str, str] | None = None) -> tuple[subprocess.Popen, ProcessRecord]:
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                   start_new_session=True, env={**os.environ, **(env or {})})
    return process, ProcessRecord(role=role, pid=process.pid, create_time=psutil.Process(process.pid).create_time(),
                                  log=log)


def _wait_for_file(path: Path, process: subprocess.Popen, what: str, deadline: float) -> dict[str, Any]:
    while time.monotonic() < deadline:
        if path.exists():
            try:
                return json.loads(path.read_text())
            except json.JSONDecodeError:
                pass  # being written
        if process.poll() is not None:
            raise LabError(f"{what} exited with status {process.returncode} before it was ready")
        time.sleep(0.05)
    raise LabError(f"{what} was not ready within its start-up budget ({path} missing)")


def _log_tail(log: Path, lines: int = 15) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def start_lab(state_dir: Path, preset: str = "targeted", api_port: int = 18443, ledger_port_base: int = 18100,
              foreground: bool = False, controller: dict[str, Any] | None = None,
              ready_timeout_s: float = DEFAULT_READY_TIMEOUT_S, exit_with_pid: int | None = None) -> LabInfo:
    """Start the lab's processes (ledgers first, then the API server) and wait until all answer.

    Port 0 means ephemeral (ledger_port_base=0: every ledger gets an ephemeral port). `controller` overrides
    ControllerConfig fields (e.g. {"unschedulable_timeout_s": 2}). With foreground=True, blocks until
    interrupted (or the API server exits), then stops the lab. With exit_with_pid, the lab ends itself
    (API server and workloads) once that process is gone, even if nobody calls stop_lab.
    """
    state_dir = Path(state_dir).resolve()
    running = lab_status(state_dir)
    if running is not None:
        raise LabError(f"a lab is already running from {state_dir} (API {running.api_url}); stop it first")
    if foreground:
        return _run_in_foreground(state_dir, dict(
            preset=preset, api_port=api_port, ledger_port_base=ledger_port_base, controller=controller,
            ready_timeout_s=ready_timeout_s, exit_with_pid=exit_with_pid or os.getpid()))
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    chosen = load_preset(preset)
    info = LabInfo(state_dir=state_dir, preset=preset, kubeconfig=state_dir / "kubeconfig",
                   ca_file=state_dir / "ca.crt")
    for stale in ("api-ready", "kubeconfig"):
        (state_dir / stale).unlink(missing_ok=True)
    deadline = time.monotonic() + ready_timeout_s
    try:
        # Every process is spawned at once (the API server needs only the ledgers' PIDs), then awaited.
        ledgers = []
        for index, vmi in enumerate(chosen.workload_vmis, start=1):
            port = 0 if ledger_port_base == 0 else ledger_port_base + index
            data_dir = state_dir / "ledgers" / vmi.replace("/", "__")
            data_dir.mkdir(parents=True, exist_ok=True)
            (data_dir / "ready").unlink(missing_ok=True)
            process, record = _spawn(f"ledger {vmi}", [
                sys.executable, "-m", "livedrill_lab.ledger", "--host", "127.0.0.1", "--port", str(port),
                "--data-dir", str(data_dir)], state_dir / "logs" / f"ledger-{vmi.replace('/', '__')}.log")
            info.processes.append(record)
            _write_lab_file(info)  # recorded at once, so stop_lab can clean up a half-started lab
            ledgers.append((vmi, data_dir, process, record))
        workloads = [f"--workload={vmi}={info.workload_pid(vmi)}" for vmi in chosen.workload_vmis]
        if chosen.annotate_ledger_addresses:  # the API server annotates the VMs with their ledgers' addresses: wait for them
            _await_ledgers(info, ledgers, deadline)
            workloads += [f"--ledger-address={vmi}={url.removeprefix('http://')}" for vmi, url in info.ledger_urls.items()]
        process, record = _spawn("api", [
            sys.executable, "-m", "livedrill_lab.kube", "--state-dir", str(state_dir), "--port", str(api_port),
            "--preset", preset, "--controller-config", json.dumps(controller or {}), *workloads,
            *([f"--exit-with-pid={exit_with_pid}"] if exit_with_pid else [])],
            state_dir / "logs" / "api.log", env={TOKEN_ENV: secrets.token_urlsafe(32)})
        info.processes.append(record)
        (state_dir / "api.pid").write_text(f"{record.pid}\n")
        _write_lab_file(info)
        _await_ledgers(info, ledgers, deadline)
        ready = _wait_for_file(state_dir / "api-ready", process, f"API server (log {record.log})", deadline)
        info.api_url = f"https://127.0.0.1:{ready['port']}"
        info.metrics_url = f"http://127.0.0.1:{ready['metrics_port']}/metrics"
        _wait_for_api(info, deadline)
        _write_lab_file(info)
    except BaseException as exc:
        stop_lab(state_dir)
        if isinstance(exc, LabError):
            logs = "\n".join(f"--- {r.log}\n{_log_tail(r.log)}" for r in info.processes)
            raise LabError(f"{exc}\n{logs}") from None
        raise
    return info


def _await_ledgers(info: LabInfo, ledgers: list, deadline: float) -> None:
    for vmi, data_dir, ledger, ledger_record in ledgers:
        if vmi not in info.ledger_urls:
            ready = _wait_for_file(data_dir / "ready", ledger, f"ledger of {vmi} (log {ledger_record.log})", deadline)
            info.ledger_urls[vmi] = f"http://127.0.0.1:{ready['port']}"


def _wait_for_api(info: LabInfo, deadline: float) -> None:
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            info.api("GET", "/version")
            return
        except (httpx.HTTPError, OSError) as exc:
            last_error = exc
            time.sleep(0.1)
    raise LabError(f"API server at {info.api_url} did not answer /version: {last_error}")


def _run_in_foreground(state_dir: Path, options: dict[str, Any]) -> LabInfo:
    """Start, then block until Ctrl-C, SIGTERM or the API server's exit; the lab is stopped in every case.

    The lab is tied to this process (exit_with_pid), so even a SIGKILL leaves nothing running.
    """
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _exit_on_sigterm)
    info = None
    try:
        info = start_lab(state_dir, **options)
        api = info.process("api")
        while api.alive():
            time.sleep(0.5)
    except KeyboardInterrupt:
        info = info or _read_lab_file(state_dir)  # interrupted right as start_lab returned: it did start
        if info is None or info.api_url is None:
            raise LabError("interrupted while the lab was starting; it has been stopped") from None
    finally:
        stop_lab(state_dir)
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    return info


def _exit_on_sigterm(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt  # unwinds through the foreground wait, whose `finally` stops the lab


def lab_status(state_dir: Path) -> LabInfo | None:
    """The running lab in `state_dir`, or None when its API server is not running."""
    info = _read_lab_file(Path(state_dir))
    if info is None or info.api_url is None:
        return None
    try:
        api = info.process("api")
    except LabError:
        return None
    return info if api.alive() else None


def stop_lab(state_dir: Path, timeout_s: float = DEFAULT_STOP_TIMEOUT_S) -> None:
    """Stop every process the lab started (by recorded PID); keeps the state directory. Idempotent."""
    info = _read_lab_file(Path(state_dir))
    if info is None:
        return
    # The API server first: it continues any workload it paused before it exits.
    ordered = sorted(info.processes, key=lambda r: r.role != "api")
    for record in ordered:
        if not record.alive():
            continue
        with contextlib.suppress(ProcessLookupError):
            os.kill(record.pid, signal.SIGCONT)  # a stopped process cannot act on SIGTERM
            os.kill(record.pid, signal.SIGTERM)
        _reap(record, timeout_s)


def _reap(record: ProcessRecord, timeout_s: float) -> None:
    if not _exited_within(record.pid, timeout_s):
        with contextlib.suppress(ProcessLookupError):
            os.kill(record.pid, signal.SIGKILL)
        _exited_within(record.pid, timeout_s)


def _exited_within(pid: int, timeout_s: float) -> bool:
    """Whether the process ended within the time. A process that is not our child and has exited stays a
    zombie until its own parent reaps it (a lab started by a test, stopped by `livedrill lab down`): it has
    ended, though its PID still exists, so waiting for the PID to vanish would wait out the whole timeout."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            process = psutil.Process(pid)
            with contextlib.suppress(psutil.TimeoutExpired):
                process.wait(timeout=0)  # reaps it when it is our child
                return True
            if process.status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.Error:  # no such process (it is gone), or not ours to see
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(STOP_POLL_S)


@contextlib.contextmanager
def running_lab(tmp_path: Path, preset: str = "targeted", controller: dict[str, Any] | None = None) -> Iterator[LabInfo]:
    """A lab on ephemeral ports under `tmp_path/lab`, stopped on exit: for tests anywhere.

    Tied to this process: if it dies without cleaning up (a killed test run), the lab ends itself.
    """
    state_dir = Path(tmp_path) / "lab"
    info = start_lab(state_dir, preset=preset, api_port=0, ledger_port_base=0, controller=controller,
                     exit_with_pid=os.getpid())
    try:
        yield info
    finally:
        stop_lab(state_dir)
