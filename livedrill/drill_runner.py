"""A warm drill runner beside the long-lived local Prefect server: `livedrill run` without its cold imports.

A drill command spends about 2.2 s importing Prefect (1.4 s) and the kubernetes client (0.8 s) before the drill
starts, on a 2-core machine (benchmarks/drill_overhead.py): more than the whole 2 s the command may add around
the drill. `livedrill server start` therefore also starts this runner: one process that imported them once and
then forks a copy of itself for each `livedrill run` that asks, on a Unix socket in the server's folder.

The fork is the drill's process. It takes the asking command's terminal (its stdin, stdout and stderr, passed
over the socket), working directory, environment and arguments, and runs the command line's main() in them; the
asking command forwards Ctrl-C, SIGTERM and SIGHUP to it, waits, and exits with its exit code. A drill is thus
cancelled, rolled back and sealed exactly as in a process of its own. One thing differs: if the asking command
is killed outright (SIGKILL), the drill is not: it goes on to its verdict and seal, as a drill run by a Prefect
worker does when the terminal that started it goes away.

Code loaded once can go stale: before each fork, the runner compares the modification times of every file
it imported with those recorded after warming up; if any changed (a `git pull`, a `pip install`), it refuses
and the command runs cold in its own process, saying why. It refuses as well a command of another copy of
livedrill or another interpreter (two checkouts, two venvs sharing one server folder).

Each fork is made by a short-lived intermediate process (the runner's child) that waits for the drill's
process and sends back its exit code; the runner itself only accepts and forks, single-threaded (a process
with threads cannot be forked safely), and has its exited children reaped by the kernel (SIGCHLD ignored).
"""

from __future__ import annotations

import array
import json
import os
import signal
import socket
import sys
from collections.abc import Callable
from pathlib import Path

SOCKET_FILE = "drills.sock"
STDIO = (0, 1, 2)
# The request (arguments, directory, environment) fits easily; a larger one is refused, not read in pieces.
MAX_REQUEST_BYTES = 1 << 20
FORWARDED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def code_identity() -> dict[str, str]:
    """Which interpreter and which copy of livedrill this process runs: a command of another checkout or venv
    must not have its drill run by this runner's code."""
    return {"python": os.path.realpath(sys.executable), "livedrill": str(Path(__file__).resolve().parent)}


class RunnerRefused(Exception):
    """The runner would not run this command (its code is stale, or it could not start the drill's process)."""


# ---------------------------------------------------------------- staleness (pure over a file listing)


def loaded_files() -> dict[str, int]:
    """Every imported module's file -> its modification time (ns): what a fork would run."""
    files: dict[str, int] = {}
    for module in list(sys.modules.values()):
        path = getattr(module, "__file__", None)
        if path:
            try:
                files[path] = os.stat(path).st_mtime_ns
            except OSError:
                continue  # a module without a file on disk (zip, frozen) cannot change under us
    return files


def changed_files(recorded: dict[str, int], now: dict[str, int | None]) -> list[str]:
    """The recorded files whose modification time differs now (None: the file is gone), sorted."""
    return sorted(path for path, mtime in recorded.items() if now.get(path) != mtime)


def stat_now(paths: list[str]) -> dict[str, int | None]:
    out: dict[str, int | None] = {}
    for path in paths:
        try:
            out[path] = os.stat(path).st_mtime_ns
        except OSError:
            out[path] = None
    return out


# ---------------------------------------------------------------- the wire: one JSON line each way, fds beside


def _send(conn: socket.socket, message: dict, fds: tuple[int, ...] = ()) -> None:
    data = json.dumps(message).encode() + b"\n"
    if fds:
        conn.sendmsg([data], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))])
    else:
        conn.sendall(data)


class _Reader:
    def __init__(self, conn: socket.socket):
        self.conn, self.buffer = conn, b""

    def message(self, with_fds: int = 0) -> tuple[dict | None, list[int]]:
        """The next line as JSON (None: the other end closed) and any descriptors that came with it."""
        fds: list[int] = []
        while b"\n" not in self.buffer:
            if with_fds and not fds:
                data, got, _flags, _addr = socket.recv_fds(self.conn, 65536, with_fds)
                fds = list(got)
            else:
                data = self.conn.recv(65536)
            if not data:
                return None, fds
            self.buffer += data
            if len(self.buffer) > MAX_REQUEST_BYTES:
                raise RunnerRefused(f"request longer than {MAX_REQUEST_BYTES} bytes")
        line, _, self.buffer = self.buffer.partition(b"\n")
        return json.loads(line), fds


# ---------------------------------------------------------------- the asking command


def exit_code_of(status: int) -> int:
    """A waitpid status as a shell reports it: the exit code, or 128 + the signal that ended the process."""
    return os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status)


def run_in_runner(folder: Path, argv: list[str]) -> int | None:
    """Run `livedrill ARGV` in the runner of the server in `folder`: its exit code, or None when there is no
    runner there (or it refused, said on stderr): the caller then runs the command itself."""
    path = folder / SOCKET_FILE
    if not path.exists():
        return None
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.connect(str(path))
    except OSError:
        conn.close()
        return None  # a socket left by a runner that is gone
    with conn:
        _send(conn, {"argv": argv, "cwd": os.getcwd(), "env": dict(os.environ), "code": code_identity()}, STDIO)
        reader = _Reader(conn)
        answer, _ = reader.message()
        if answer is None or "refused" in answer:
            print(f"livedrill: the server's drill runner ran nothing ({(answer or {}).get('refused', 'it closed')}); "
                  "running in this process", file=sys.stderr)
            return None
        pid = int(answer["pid"])
        previous = {s: signal.signal(s, lambda signum, _frame: os.kill(pid, signum)) for s in FORWARDED_SIGNALS}
        try:
            ended, _ = reader.message()  # a forwarded signal interrupts the wait only to run its handler (PEP 475)
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)
    if ended is None:
        print(f"livedrill: lost the drill runner before process {pid} ended; its evidence tells how it ended",
              file=sys.stderr)
        return 1
    return int(ended["exit"])


# ---------------------------------------------------------------- the runner


def _drill_process(request: dict, fds: list[int], run: Callable[[list[str]], int]) -> None:
    """In the fork: become the asking command (terminal, directory, environment), run it, exit with its code."""
    for target, fd in zip(STDIO, fds):
        os.dup2(fd, target)
    for fd in fds:
        os.close(fd)
    for stream in (sys.stdout, sys.stderr):
        stream.reconfigure(line_buffering=os.isatty(stream.fileno()))
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for s in (signal.SIGTERM, signal.SIGHUP, signal.SIGCHLD):
        signal.signal(s, signal.SIG_DFL)
    code = 1
    try:
        code = run(request["argv"])
    finally:
        import atexit

        atexit._run_exitfuncs()  # Prefect's flushes of logs and events, as at any process's exit
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)  # the runner's own teardown is not this process's to do


def _serve_one(conn: socket.socket, recorded: dict[str, int], run: Callable[[list[str]], int]) -> None:
    """In the runner's child: check, fork the drill's process, report its pid, wait, report its exit code."""
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # this process waits for its child itself
    reader = _Reader(conn)
    request, fds = reader.message(with_fds=len(STDIO))
    if request is None or len(fds) != len(STDIO):
        return
    mine = code_identity()
    if request.get("code") != mine:
        _send(conn, {"refused": f"it runs {mine['livedrill']} on {mine['python']}, the command "
                               f"{(request.get('code') or {}).get('livedrill')} on {(request.get('code') or {}).get('python')}"})
        return
    stale = changed_files(recorded, stat_now(list(recorded)))
    if stale:
        _send(conn, {"refused": f"its loaded code changed since it started ({stale[0]}"
                               f"{f' and {len(stale) - 1} more' if len(stale) > 1 else ''}); "
                               "`livedrill server stop` then `start` reloads it"})
        return
    pid = os.fork()
    if pid == 0:
        conn.close()
        _drill_process(request, fds, run)
    for fd in fds:
        os.close(fd)
    _send(conn, {"pid": pid})
    _, status = os.waitpid(pid, 0)
    try:
        _send(conn, {"exit": exit_code_of(status)})
    except OSError:
        pass  # the asking command is gone; the drill ended anyway


def serve(folder: Path, warm: Callable[[], None], run: Callable[[list[str]], int]) -> None:
    """Import what a drill needs (`warm`), then fork a drill process per request, for ever (SIGTERM ends it)."""
    warm()
    recorded = loaded_files()
    path = folder / SOCKET_FILE
    path.unlink(missing_ok=True)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_umask = os.umask(0o177)  # the socket is the user's alone: whoever can connect runs drills as this user
    try:
        listener.bind(str(path))
    finally:
        os.umask(old_umask)
    listener.listen(16)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(f"drill runner ready on {path}, {len(recorded)} files loaded", flush=True)
    try:
        while True:
            conn, _ = listener.accept()
            if os.fork() == 0:
                listener.close()
                try:
                    _serve_one(conn, recorded, run)
                finally:
                    os._exit(0)
            conn.close()
    finally:
        path.unlink(missing_ok=True)


if __name__ == "__main__":
    from livedrill.cli import run_forked, warm_imports

    _folder, _api_url = Path(sys.argv[1]), sys.argv[2]
    serve(_folder, warm_imports, lambda argv: run_forked(argv, _api_url))
