"""`livedrill server start | status | stop`: a real Prefect server and the warm drill runner beside it, which
later `livedrill run` commands find; a drill run there is cancelled and sealed as in a process of its own.

One server for the module (its start is the expensive part); the last test stops it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest

from livedrill.drill_runner import changed_files
from tests.e2e.safety import assert_safe, assert_sealed_with
from tests.lab_helpers import annotate_vmi, lab_spec

REPO = Path(__file__).resolve().parents[2]
VMIMS = "/apis/kubevirt.io/v1/namespaces/banking/virtualmachineinstancemigrations"
# What `livedrill run` does first when it runs cold: find an API to point Prefect at.
FIND_API = """
import json
from livedrill.prefect_api import start_local_api
api = start_local_api()
print(json.dumps(api and {"url": api.url, "own_child": api.process is not None}))
if api: api.stop()
"""


def _env(folder: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env.update(PYTHONPATH=str(REPO), LIVEDRILL_SERVER_DIR=str(folder))
    return env


def _livedrill(env: dict[str, str], *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """The `livedrill` command as a user runs it (python -m livedrill: the console script's entry point)."""
    return subprocess.run([sys.executable, "-m", "livedrill", *args], env=env, capture_output=True, text=True,
                          timeout=180, cwd=cwd)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("server")
    env = _env(folder)
    started = _livedrill(env, "server", "start")
    assert started.returncode == 0, started.stderr
    yield folder, env, json.loads((folder / "server.json").read_text()), started.stdout
    _livedrill(env, "server", "stop")


def _spec_file(lab, tmp_path: Path) -> Path:
    _, text = lab_spec(lab, tmp_path)
    path = tmp_path / "drill.yaml"
    path.write_text(text)
    return path


def test_start_serves_the_api_and_the_ui_from_its_own_folder_and_a_second_start_finds_it(server):
    folder, env, state, printed = server
    assert f"started: Prefect server pid {state['pid']}, UI {state['url'].removesuffix('/api')}" in printed
    assert f"drill runner pid {state['runner_pid']}" in printed
    assert httpx.get(state["url"] + "/health", timeout=10).json() is True
    assert (folder / "prefect.db").exists() and (folder / "drills.sock").exists()
    again = _livedrill(env, "server", "start")
    assert again.returncode == 0 and f"already running: Prefect server pid {state['pid']}" in again.stdout
    status = _livedrill(env, "server", "status")
    assert status.returncode == 0 and f"drill runner pid {state['runner_pid']}" in status.stdout
    # A command that runs cold (not `run`, or the runner refused) uses the server and leaves it running.
    found = subprocess.run([sys.executable, "-c", FIND_API], env=env, capture_output=True, text=True, timeout=60)
    assert json.loads(found.stdout) == {"url": state["url"], "own_child": False}, found.stderr
    assert psutil.pid_exists(state["pid"])


def test_a_drill_runs_in_the_warm_runner_against_the_server_and_answers_in_the_terminal(server, lab, tmp_path):
    folder, env, state, _ = server
    proc = subprocess.Popen([sys.executable, "-m", "livedrill", "run", str(_spec_file(lab, tmp_path))], cwd=tmp_path,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = proc.communicate(timeout=180)
    assert proc.returncode == 0, out + err
    assert "VERDICT: PASSED" in out and "== migrate" in err  # the drill's own terminal lines reach this one
    run_dir = next((tmp_path / "evidence").glob("*-lab-targeted-*"))
    assert json.loads((run_dir / "owner.json").read_text())["pid"] != proc.pid  # the runner's fork ran it
    assert assert_safe(lab) == "node-2"
    runs = httpx.post(state["url"] + "/flow_runs/filter", json={}, timeout=10).json()
    assert [r["state_type"] for r in runs] == ["COMPLETED"]  # recorded on the server, which keeps it


def test_sigterm_to_the_asking_command_cancels_the_drill_in_the_runner_which_server_stop_would_not_cut(server, lab, tmp_path):
    folder, env, state, _ = server
    annotate_vmi(lab, "lab.livedrill.io/memory", "1Gi")  # seconds of pre-copy to interrupt
    proc = subprocess.Popen([sys.executable, "-m", "livedrill", "run", str(_spec_file(lab, tmp_path))], cwd=tmp_path,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 120
    while not any(m.get("status", {}).get("phase") == "Running" for m in lab.api("GET", VMIMS)["items"]):
        assert proc.poll() is None and time.monotonic() < deadline, proc.stdout and proc.stdout.read()
        time.sleep(0.05)
    refused = _livedrill(env, "server", "stop")  # it would cut the drill's Prefect API mid-migration
    assert refused.returncode == 1 and "1 drill(s) still running in the runner" in refused.stderr, refused.stderr
    assert httpx.get(state["url"] + "/health", timeout=10).json() is True
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, out
    assert "terminated: in-flight work was cancelled, rolled back and its evidence sealed" in out
    assert assert_safe(lab) == "node-1"
    run_dir = next((tmp_path / "evidence").glob("*-lab-targeted-*"))
    assert json.loads((run_dir / "owner.json").read_text())["pid"] != proc.pid
    assert_sealed_with(run_dir, "cancelled", "interrupted")


def test_bad_input_is_answered_in_the_terminal_with_its_exit_code(server, tmp_path):
    _, env, _, _ = server
    done = _livedrill(env, "run", "no-such-drill.yaml", cwd=tmp_path)
    assert done.returncode == 2 and "no-such-drill.yaml" in done.stderr, done.stderr


def test_a_runner_whose_loaded_code_changed_refuses_and_the_drill_runs_cold(server, tmp_path):
    _, env, _, _ = server
    source = REPO / "livedrill" / "launch.py"  # loaded by the runner at its start
    before = os.stat(source)
    os.utime(source, ns=(before.st_atime_ns, before.st_mtime_ns + 1_000_000_000))
    try:
        done = _livedrill(env, "run", "no-such-drill.yaml", cwd=tmp_path)
    finally:
        os.utime(source, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert "ran nothing (its loaded code changed since it started" in done.stderr and str(source) in done.stderr
    assert done.returncode == 2 and "no-such-drill.yaml" in done.stderr  # answered by the command itself, cold


def test_a_command_of_another_interpreter_is_not_run_by_this_runners_code(server, tmp_path):
    _, env, _, _ = server
    other = tmp_path / "python3"
    other.symlink_to("/usr/bin/python3")  # not the venv's interpreter the runner runs on
    done = subprocess.run([sys.executable, "-c", "import sys; sys.executable = sys.argv[1]; sys.argv[1:] = ['run', "
                           "'no-such-drill.yaml']; from livedrill.launch import entry; entry()", str(other)],
                          env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert "ran nothing (it runs" in done.stderr, done.stderr
    assert f"the command {REPO / 'livedrill'} on {os.path.realpath(other)}" in done.stderr
    assert done.returncode == 2  # answered cold: no such file


@pytest.mark.parametrize(("recorded", "now", "changed"), [
    ({"/a.py": 1, "/b.py": 2}, {"/a.py": 1, "/b.py": 2}, []),
    ({"/a.py": 1, "/b.py": 2}, {"/a.py": 1, "/b.py": 3}, ["/b.py"]),
    ({"/a.py": 1, "/b.py": 2}, {"/a.py": None, "/b.py": 2}, ["/a.py"]),  # deleted
    ({"/b.py": 2, "/a.py": 1}, {"/a.py": 0, "/b.py": 0}, ["/a.py", "/b.py"]),  # sorted
    ({"/a.py": 1}, {"/a.py": 1, "/new.py": 5}, []),  # a file the runner never loaded is read fresh by the fork
])
def test_changed_files(recorded, now, changed):
    assert changed_files(recorded, now) == changed


def test_a_recorded_pid_that_is_not_ours_is_neither_used_nor_ended(tmp_path):
    folder = tmp_path / "server"
    folder.mkdir()
    bystander = subprocess.Popen(["sleep", "60"])
    try:
        (folder / "server.json").write_text(json.dumps({"pid": bystander.pid, "url": "http://127.0.0.1:9/api",
                                                        "runner_pid": bystander.pid}))
        env = _env(folder)
        assert _livedrill(env, "server", "status").returncode == 1
        stopped = _livedrill(env, "server", "stop")
        assert stopped.returncode == 0 and "not running" in stopped.stdout
        assert bystander.poll() is None  # still running: a reused PID is not ours to end
        assert not (folder / "server.json").exists()  # the stale record is gone
    finally:
        bystander.kill()
        bystander.wait()


def test_stop_ends_the_server_and_the_runner_and_commands_run_cold_again(server):
    folder, env, state, _ = server
    stopped = _livedrill(env, "server", "stop")
    assert stopped.returncode == 0 and f"stopped: pid {state['pid']}" in stopped.stdout
    for pid in (state["pid"], state["runner_pid"]):
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    status = _livedrill(env, "server", "status")
    assert status.returncode == 1 and "not running" in status.stdout
    assert not (folder / "drills.sock").exists()
    found = subprocess.run([sys.executable, "-c", FIND_API], env=env, capture_output=True, text=True, timeout=120)
    assert json.loads(found.stdout)["own_child"] is True  # with none running, the command starts its own again
