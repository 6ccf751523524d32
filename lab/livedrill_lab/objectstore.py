"""A real S3 store with Object Lock for the evidence archive's WORM tests: a one-node Ceph cluster and its RADOS Gateway.

One ceph-mon, one OSD keeping its data in RAM (memstore) and radosgw on 127.0.0.1, every port free-chosen and
all state (config, keyrings, logs, sockets) under one directory, so several stores run side by side and
nothing touches /etc/ceph or /var/lib/ceph. Starting takes about 2 s; `stop` ends the daemons by PID.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import psutil

# Waits of a start that normally takes 2 s; a loaded CI machine gets room, a broken install an error in a minute.
_START_TIMEOUT_S = 60.0
_STOP_TIMEOUT_S = 10.0
_POLL_S = 0.05
# memstore keeps every object in RAM: 512 MiB holds thousands of sealed runs of a test and bounds the footprint.
_MEMSTORE_BYTES = 512 * 1024 * 1024


class ObjectStoreLabError(RuntimeError):
    """The lab store did not start (the message names the daemon and its log)."""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _config(root: Path, fsid: str, mon_port: int, rgw_port: int) -> str:
    return f"""[global]
fsid = {fsid}
mon host = [v2:127.0.0.1:{mon_port}]
mon initial members = a
public addr = 127.0.0.1
cluster addr = 127.0.0.1
ms bind ipv6 = false
keyring = {root}/keyring
run dir = {root}/run
admin socket = {root}/run/$name.asok
pid file = {root}/run/$name.pid
log file = {root}/log/$name.log
crash dir = {root}/crash
mon cluster log file = {root}/log/cluster.log
mon data = {root}/mon/$id
osd data = {root}/osd/$id
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
mon allow pool size one = true
mon warn on pool no redundancy = false
mon max pg per osd = 1000
# Without a short proposal interval the gateway's first start (it creates four pools) takes about 8 s.
paxos propose interval = 0.05
# A killed radosgw leaves its watches on the control objects; the next gateway's notifies wait for them to expire
# (30 s by default) before a bucket can be created.
osd client watch timeout = 3
# The mon refuses to start below 5 % free disk by default; the lab's data is in RAM.
mon data avail warn = 1
mon data avail crit = 0

[osd.0]
osd objectstore = memstore
memstore device bytes = {_MEMSTORE_BYTES}
keyring = {root}/osd/0/keyring

[client.rgw.a]
# tcp_nodelay: without it a small reply (a listing, a bucket's lock configuration) waits on the client's delayed
# ACK, 40 ms per request here.
keyring = {root}/rgw/keyring
rgw data = {root}/rgw/data
rgw frontends = beast endpoint=127.0.0.1:{rgw_port} tcp_nodelay=1
"""


@dataclass
class RgwLab:
    """A running lab store: its S3 endpoint, the credentials of its one user, and its daemons' PIDs."""

    root: Path
    endpoint_url: str
    access_key: str
    secret_key: str
    pids: dict[str, int] = field(default_factory=dict)

    @property
    def conf(self) -> Path:
        return self.root / "ceph.conf"

    def credentials_file(self, access_key: str | None = None, secret_key: str | None = None, name: str = "credentials") -> Path:
        """An AWS shared-credentials file (what `evidence.store.credentials_file` names): this store's user, or the one given."""
        path = self.root / name
        path.write_text(f"[default]\naws_access_key_id = {access_key or self.access_key}\n"
                        f"aws_secret_access_key = {secret_key or self.secret_key}\n")
        path.chmod(0o600)
        return path

    def add_user(self, uid: str) -> tuple[str, str]:
        """Another S3 user with no rights of its own (a bucket policy grants it some); its access and secret key."""
        access, secret = f"LD{uuid.uuid4().hex[:18].upper()}", uuid.uuid4().hex + uuid.uuid4().hex
        _run(self, "radosgw-admin", "user", "create", f"--uid={uid}", f"--display-name={uid}", f"--access-key={access}",
             f"--secret-key={secret}")
        return access, secret

    def stop_gateway(self) -> None:
        """Stop radosgw only (the store becomes unreachable; the cluster and its objects stay)."""
        _stop(self.pids.pop("radosgw", None))

    def start_gateway(self) -> None:
        self.pids["radosgw"] = _daemon(self, "radosgw", "-n", "client.rgw.a")
        _wait_http(self.endpoint_url, self.root / "log" / "client.rgw.a.log")

    def stop(self) -> None:
        # radosgw, then the OSD, then the mon: stopping the mon first makes the OSD wait for it for seconds.
        for name in ("radosgw", "osd", "mon"):
            _stop(self.pids.pop(name, None))


def _run(lab: RgwLab, *argv: str, input_text: str | None = None) -> str:
    try:
        done = subprocess.run([argv[0], "-c", str(lab.conf), *argv[1:]], input=input_text, capture_output=True, text=True,
                              timeout=_START_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired as exc:
        raise ObjectStoreLabError(f"{argv[0]} did not answer in {_START_TIMEOUT_S:g} s") from exc
    if done.returncode != 0:
        raise ObjectStoreLabError(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.strip()[-600:]}")
    return done.stdout


def _daemon(lab: RgwLab, *argv: str) -> int:
    """Start a Ceph daemon in the foreground of its own child (-f), so its PID is ours to stop."""
    log = (lab.root / "log" / f"{argv[0]}.out").open("ab")
    proc = subprocess.Popen([argv[0], "-f", "-c", str(lab.conf), *argv[1:]], stdout=log, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, start_new_session=True)
    log.close()
    return proc.pid


def _stop(pid: int | None) -> None:
    # SIGKILL: the OSD keeps its data in RAM and the lab is thrown away; SIGTERM makes radosgw drain for seconds.
    if pid is None:
        return
    try:
        proc = psutil.Process(pid)
        proc.kill()
        proc.wait(_STOP_TIMEOUT_S)
    except psutil.NoSuchProcess:
        pass


def _wait_until(check, what: str, log: Path) -> None:
    deadline = time.monotonic() + _START_TIMEOUT_S
    while not check():
        if time.monotonic() > deadline:
            tail = log.read_text(errors="replace")[-800:] if log.exists() else "(no log)"
            raise ObjectStoreLabError(f"{what} not ready in {_START_TIMEOUT_S:g} s; {log}:\n{tail}")
        time.sleep(_POLL_S)


def _wait_http(url: str, log: Path) -> None:
    def answers() -> bool:
        try:
            with urllib.request.urlopen(url, timeout=2) as reply:
                return reply.status == 200
        except (urllib.error.URLError, OSError):
            return False

    _wait_until(answers, f"radosgw at {url}", log)


def start_object_store(root: Path) -> RgwLab:
    """Create and start a one-node Ceph cluster with a RADOS Gateway under `root` (which must be new or empty)."""
    root = Path(root).resolve()
    for sub in ("run", "log", "crash", "mon", "osd/0", "rgw/data"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    fsid, mon_port, rgw_port = str(uuid.uuid4()), _free_port(), _free_port()
    (root / "ceph.conf").write_text(_config(root, fsid, mon_port, rgw_port))
    lab = RgwLab(root=root, endpoint_url=f"http://127.0.0.1:{rgw_port}", access_key=f"LD{uuid.uuid4().hex[:18].upper()}",
                 secret_key=uuid.uuid4().hex + uuid.uuid4().hex)
    try:
        keyring = str(root / "keyring")
        subprocess.run(["ceph-authtool", "--create-keyring", keyring, "--gen-key", "-n", "mon.", "--cap", "mon", "allow *"],
                       check=True, capture_output=True, timeout=_START_TIMEOUT_S)
        subprocess.run(["ceph-authtool", keyring, "--gen-key", "-n", "client.admin", "--cap", "mon", "allow *", "--cap", "osd",
                        "allow *", "--cap", "mds", "allow *", "--cap", "mgr", "allow *"], check=True, capture_output=True,
                       timeout=_START_TIMEOUT_S)
        subprocess.run(["monmaptool", "--create", "--fsid", fsid, "--addv", "a", f"[v2:127.0.0.1:{mon_port}]", str(root / "monmap")],
                       check=True, capture_output=True, timeout=_START_TIMEOUT_S)
        _run(lab, "ceph-mon", "--mkfs", "-i", "a", "--monmap", str(root / "monmap"), "--keyring", keyring)
        lab.pids["mon"] = _daemon(lab, "ceph-mon", "-i", "a")
        osd_uuid = str(uuid.uuid4())
        osd_key = subprocess.run(["ceph-authtool", "--gen-print-key"], check=True, capture_output=True, text=True,
                                 timeout=_START_TIMEOUT_S).stdout.strip()
        (root / "osd-new.json").write_text(json.dumps({"cephx_secret": osd_key}))
        _run(lab, "ceph", "osd", "new", osd_uuid, "0", "-i", str(root / "osd-new.json"))
        _run(lab, "ceph-osd", "-i", "0", "--mkfs", "--key", osd_key, "--osd-uuid", osd_uuid)
        # mkfs does not write the OSD's keyring, and without it the OSD cannot fetch its config from the mon.
        (root / "osd" / "0" / "keyring").write_text(f"[osd.0]\n\tkey = {osd_key}\n")
        lab.pids["osd"] = _daemon(lab, "ceph-osd", "-i", "0")
        _wait_until(lambda: json.loads(_run(lab, "ceph", "osd", "stat", "--format", "json")).get("num_up_osds") == 1,
                    "the OSD", root / "log" / "osd.0.log")
        _run(lab, "ceph", "auth", "get-or-create", "client.rgw.a", "mon", "allow rw", "osd", "allow rwx", "-o", str(root / "rgw" / "keyring"))
        lab.start_gateway()
        _run(lab, "radosgw-admin", "user", "create", "--uid=livedrill", "--display-name=livedrill evidence",
             f"--access-key={lab.access_key}", f"--secret-key={lab.secret_key}")
    except BaseException:
        lab.stop()
        raise
    (root / "store.json").write_text(json.dumps({"endpoint_url": lab.endpoint_url, "pids": lab.pids}, indent=2))
    return lab


@contextmanager
def running_object_store(root: Path) -> Iterator[RgwLab]:
    lab = start_object_store(root)
    try:
        yield lab
    finally:
        lab.stop()


def object_store_available() -> bool:
    """Whether this machine has the Ceph daemons (Debian: ceph-mon ceph-osd radosgw ceph-common)."""
    return all(any((Path(d) / exe).exists() for d in os.environ.get("PATH", "").split(os.pathsep))
               for exe in ("ceph-mon", "ceph-osd", "radosgw", "radosgw-admin", "ceph"))
