"""A real network path with real outages, for the probe's switchover tests and benchmark (needs root).

    probe (this namespace) -- veth -- [switch namespace: bridge] -- veth -- [VM namespace: lab ledger]

The bridge stands for the hosts' network at a live migration: at the switchover frames still go to the old
port and are lost, while neither the client's nor the VM's interface loses its carrier. (Setting an endpoint's
own link down is a different outage: its kernel forgets its ARP neighbours on carrier loss and answers only
after its next ARP retry, a second later; no switchover does that to the client.)

Outages, each made by a process started beforehand that applies one command as soon as it reads it, so
that the moment it took effect is bracketed to well under a millisecond:
- `port-cut`: the VM's bridge port stops forwarding (both directions lost);
- `drop-to-vm` / `drop-from-vm`: nftables in the VM's namespace drops one direction only;
- `reset`: nftables answers every segment to the service with a TCP reset (an old host that forgot the VM);
- `freeze`: SIGSTOP of the ledger process (stop-and-copy), SIGCONT after;
- `mac-move`: the VM moves to another switch port and keeps its MAC, as a live-migrated VM does. The
  bridge's forwarding table still sends its frames to the old port (a port whose far end has no VM any
  more) and the VM sends nothing while it moves; it ends when the VM, running at its new place, announces
  itself with a RARP frame as QEMU does after a migration: the bridge learns the new port from it.
"""

from __future__ import annotations

import json
import os
import secrets
import select
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

KINDS = ("port-cut", "drop-to-vm", "drop-from-vm", "reset", "freeze", "mac-move")
# Runs in the VM's namespace: on `announce` sends one RARP frame (ethertype 0x8035, to broadcast, from the
# VM's MAC, the frame QEMU sends after a migration) on the VM's interface; answers `ok` to any other line.
ANNOUNCER = """
import socket, sys
dev = sys.argv[1]
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((dev, 0))
mac = open(f"/sys/class/net/{dev}/address").read().strip()
m = bytes.fromhex(mac.replace(":", ""))
rarp = b"\\xff" * 6 + m + b"\\x80\\x35" + b"\\x00\\x01\\x08\\x00\\x06\\x04\\x00\\x03" + m + bytes(4) + m + bytes(4)
for line in sys.stdin:
    if line.strip() == "announce":
        s.send(rarp.ljust(60, bytes(1)))
    else:
        print("ok", flush=True)
"""
LEDGER_MODULE = "livedrill_lab.ledger"
SERVICE_PORT = 8080
COMMAND_TIMEOUT_S = 5.0
READY_TIMEOUT_S = 20.0


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)


class _LineController:
    """A command interpreter kept running (`bridge -batch -`, `nft -i`); each command is followed by a query
    whose answer proves the command was applied."""

    def __init__(self, argv: list[str], query: str, answer_ends: bytes):
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     bufsize=0)
        self.query, self.answer_ends = query, answer_ends

    def apply(self, command: str) -> tuple[float, float]:
        """(monotonic before writing, after the answer): the command took effect in between."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        before = time.monotonic()
        self.proc.stdin.write(f"{command}\n{self.query}\n".encode())
        answer = b""
        deadline = before + COMMAND_TIMEOUT_S
        while not (answer.endswith(b"\n") and answer.rstrip().endswith(self.answer_ends)):
            ready, _, _ = select.select([self.proc.stdout], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                raise TimeoutError(f"{command!r}: no answer, got {answer[-200:]!r}")
            chunk = os.read(self.proc.stdout.fileno(), 65536)
            if not chunk:
                raise RuntimeError(f"{command!r}: the controller exited, output {answer[-200:]!r}")
            answer += chunk
        if b"Error" in answer:
            raise RuntimeError(f"{command!r}: {answer[-300:]!r}")
        return before, time.monotonic()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)


@dataclass(frozen=True)
class Outage:
    kind: str
    started: tuple[float, float]  # bracket of the moment it began
    ended: tuple[float, float]  # bracket of the moment it ended

    @property
    def truth_ms(self) -> float:
        return ((self.ended[0] + self.ended[1]) - (self.started[0] + self.started[1])) / 2 * 1000.0

    @property
    def uncertainty_ms(self) -> float:
        return ((self.ended[1] - self.ended[0]) + (self.started[1] - self.started[0])) / 2 * 1000.0


class SwitchoverPath:
    """The path above, built in namespaces of its own (a fresh tag each time) and removed on close."""

    def __init__(self, work: Path, subnet: str = "10.231.79"):
        tag = secrets.token_hex(3)
        self.vm_ns, self.switch_ns = f"ldvm{tag}", f"ldsw{tag}"
        self.client_end, self.vm_end, self.vm_port = f"ldc{tag}", f"ldv{tag}", f"ldp{tag}"
        self.old_port, self.old_host = f"ldo{tag}", f"ldh{tag}"  # a port the VM has left; its far end drops
        self.client_addr, self.vm_addr = f"{subnet}.1", f"{subnet}.2"
        self.work = work
        self.ledger: subprocess.Popen | None = None
        self._controllers: list[_LineController] = []

    @property
    def base_url(self) -> str:
        return f"http://{self.vm_addr}:{SERVICE_PORT}"

    def __enter__(self) -> "SwitchoverPath":
        try:
            self._build()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _build(self) -> None:
        _ip("netns", "add", self.switch_ns)
        _ip("netns", "add", self.vm_ns)
        _ip("link", "add", self.client_end, "type", "veth", "peer", "name", "uplink", "netns", self.switch_ns)
        _ip("link", "add", self.vm_port, "netns", self.switch_ns, "type", "veth", "peer", "name", self.vm_end,
            "netns", self.vm_ns)
        _ip("-n", self.switch_ns, "link", "add", self.old_port, "type", "veth", "peer", "name", self.old_host)
        _ip("-n", self.switch_ns, "link", "set", self.old_host, "up")  # not bridged: frames to it go nowhere
        _ip("-n", self.switch_ns, "link", "add", "br0", "type", "bridge")
        for dev in ("uplink", self.vm_port, self.old_port):
            _ip("-n", self.switch_ns, "link", "set", dev, "master", "br0")
            _ip("-n", self.switch_ns, "link", "set", dev, "up")
        _ip("-n", self.switch_ns, "link", "set", "br0", "up")
        _ip("addr", "add", f"{self.client_addr}/24", "dev", self.client_end)
        _ip("link", "set", self.client_end, "up")
        _ip("-n", self.vm_ns, "addr", "add", f"{self.vm_addr}/24", "dev", self.vm_end)
        _ip("-n", self.vm_ns, "link", "set", self.vm_end, "up")
        _ip("-n", self.vm_ns, "link", "set", "lo", "up")
        data = self.work / f"ledger-{self.vm_ns}"
        data.mkdir(parents=True, exist_ok=True)
        self.ledger = subprocess.Popen(
            ["ip", "netns", "exec", self.vm_ns, sys.executable, "-m", LEDGER_MODULE, "--host", self.vm_addr,
             "--port", str(SERVICE_PORT), "--data-dir", str(data)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not (data / "ready").exists():
            if self.ledger.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the ledger in {self.vm_ns} did not start (exit {self.ledger.poll()})")
            time.sleep(0.02)
        assert json.loads((data / "ready").read_text())["pid"] == self.ledger.pid  # `ip netns exec` execs it
        self._bridge = self._controller(["ip", "netns", "exec", self.switch_ns, "bridge", "-batch", "-"],
                                        f"link show dev {self.vm_port}", b"")
        self._nft = self._controller(["ip", "netns", "exec", self.vm_ns, "nft", "-i"], "list table inet livedrill", b"}")
        self._announcer = self._controller(["ip", "netns", "exec", self.vm_ns, sys.executable, "-c", ANNOUNCER,
                                            self.vm_end], "query", b"ok")
        self.vm_mac = subprocess.run(
            ["ip", "-n", self.vm_ns, "-br", "link", "show", self.vm_end], check=True, capture_output=True,
            text=True, timeout=30).stdout.split()[2]
        self._nft.apply("add table inet livedrill")
        self._nft.apply("add chain inet livedrill input { type filter hook input priority 0 ; }")
        self._nft.apply("add chain inet livedrill output { type filter hook output priority 0 ; }")

    def _controller(self, argv: list[str], query: str, answer_ends: bytes) -> _LineController:
        controller = _LineController(argv, query, answer_ends)
        self._controllers.append(controller)
        return controller

    def begin(self, kind: str) -> tuple[float, float]:
        if kind == "port-cut":
            return self._bridge.apply(f"link set dev {self.vm_port} state 0")
        if kind == "drop-to-vm":
            return self._nft.apply(f"add rule inet livedrill input tcp dport {SERVICE_PORT} drop")
        if kind == "drop-from-vm":
            return self._nft.apply(f"add rule inet livedrill output tcp sport {SERVICE_PORT} drop")
        if kind == "reset":
            return self._nft.apply(f"add rule inet livedrill input tcp dport {SERVICE_PORT} reject with tcp reset")
        if kind == "freeze":
            return self._signal(signal.SIGSTOP)
        if kind == "mac-move":
            # the VM stops sending first, so that no frame of its own teaches the bridge its port back
            silenced = self._nft.apply("add rule inet livedrill output drop")
            moved = self._bridge.apply(f"fdb replace {self.vm_mac} dev {self.old_port} master static")
            return silenced[0], moved[1]
        raise ValueError(f"unknown outage kind {kind!r}; one of {KINDS}")

    def end(self, kind: str) -> tuple[float, float]:
        if kind == "port-cut":
            return self._bridge.apply(f"link set dev {self.vm_port} state 3")
        if kind in ("drop-to-vm", "reset"):
            return self._nft.apply("flush chain inet livedrill input")
        if kind == "drop-from-vm":
            return self._nft.apply("flush chain inet livedrill output")
        if kind == "freeze":
            return self._signal(signal.SIGCONT)
        if kind == "mac-move":
            running = self._nft.apply("flush chain inet livedrill output")
            announced = self._announcer.apply("announce")
            return running[0], announced[1]
        raise ValueError(f"unknown outage kind {kind!r}; one of {KINDS}")

    def outage(self, kind: str, length_s: float) -> Outage:
        """One outage of about `length_s`, timed on a busy-waited clock after the bracketed start."""
        started = self.begin(kind)
        due = (started[0] + started[1]) / 2 + length_s
        while due - time.monotonic() > 0.002:
            time.sleep(min(0.001, due - time.monotonic() - 0.001))
        while time.monotonic() < due:
            pass
        return Outage(kind, started, self.end(kind))

    def _signal(self, sig: int) -> tuple[float, float]:
        assert self.ledger is not None
        before = time.monotonic()
        os.kill(self.ledger.pid, sig)
        return before, time.monotonic()

    def close(self) -> None:
        if self.ledger is not None and self.ledger.poll() is None:
            os.kill(self.ledger.pid, signal.SIGCONT)
            self.ledger.kill()
            self.ledger.wait(timeout=10)
        for controller in self._controllers:
            controller.close()
        subprocess.run(["ip", "link", "del", self.client_end], capture_output=True, timeout=30)
        for ns in (self.vm_ns, self.switch_ns):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)
