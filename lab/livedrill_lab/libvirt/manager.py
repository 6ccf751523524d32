"""The two-host libvirt/QEMU lab: start it, stop it, on one machine.

Layout under `state_dir`:
  cache/                 guest kernel, initramfs, ledger binary (kept across labs; see guest.py)
  hosts/<name>/          one libvirt "host": etc/ run/ lib/ log/ cache/ are bind-mounted, in the daemon's own
                         mount namespace, over /etc/libvirt /run/libvirt /var/lib/libvirt /var/log/libvirt
                         /var/cache/libvirt; sock/ holds its unix socket (outside the bind mounts, so the
                         other daemon and the drill reach it from anywhere)
  guest-console.log      the guest's serial console (both hosts' QEMU append to it); disk-guest-console.log the
                         copy-storage guest's
  hosts/<name>/lib/images/banking-core-disk-vm.qcow2
                         the copy-storage guest's disk, one file per host at the same path inside each host
                         (/var/lib/libvirt/images): data and journal on the first host, an empty image of the same
                         size on the second for the NBD mirror to fill
  resources.json         every process (pid + kernel start time) and namespace made so far, written as each
                         one is made, so `stop_libvirt_lab` also cleans up a half-started lab
  lab.json               LibvirtLabInfo of a started lab
  drill.yaml             drills/lab-libvirt.yaml rendered for this lab
  drill-copy-storage.yaml  drills/lab-libvirt-copy-storage.yaml rendered for this lab

Network: one network namespace `livedrill-<hash of state_dir>` holding bridge `ldbr0` with both hosts'
addresses (10.99.0.1, .2 — they exist nowhere else); both daemons run inside it, so the guest's tap joins the
bridge on whichever host runs it and keeps its IP and MAC. The drill reaches the guest's ledger through
a loopback forwarder (forwarder.py) listening on 127.0.0.1:<ephemeral>.

Daemons: `ip netns exec NS unshare -m --propagation private tini -s -- sh -c 'mount --bind ...; exec libvirtd'`.
tini is a subreaper so QEMU processes that libvirtd orphans are reaped at once (PID 1 here is slow).
cgroups are off (two daemons would collide on cgroup names); pinning still applies via sched_setaffinity.
Accelerator: KVM only with a kvm_intel/kvm_amd module loaded; else TCG (`/dev/kvm` alone can be kvm_pvm).

Known limit (QEMU 7.2, TCG): with an explicit downtime limit set on the migration, guests sometimes came
out corrupted on the destination while the machine's CPUs were saturated by other work (kernel oopses,
"virtio_net ... is not a head", panics right after switchover; the probes saw the reboot as lost
transactions): 10 ms in most migrations, 100 ms in 1 of 5. With QEMU's default limit, 0 of 14 under the
same load, so drills/lab-libvirt.yaml sets none. The guest's console (guest-console.log) shows such crashes.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

from livedrill.forecast import MIB
from livedrill.platforms.libvirt.connection import LibvirtTimeouts
from livedrill_lab.libvirt.admin import define_and_start, remove_all_domains, wait_for_daemon
from livedrill_lab.libvirt.config import DiskGuestConfig, LabGuest, LabHost, LibvirtLabConfig, LibvirtLabInfo
from livedrill_lab.libvirt.domain import disk_image_path, domain_xml
from livedrill_lab.libvirt.guest import ensure_guest_image

REQUIRED_COMMANDS = ("libvirtd", "qemu-system-x86_64", "qemu-img", "tini", "ip", "unshare", "busybox", "gcc", "cpio",
                     "apt-get", "apt-cache", "dpkg-deb", "useradd")
LIBVIRT_DIRS = {"etc": "/etc/libvirt", "run": "/run/libvirt", "lib": "/var/lib/libvirt",
                "log": "/var/log/libvirt", "cache": "/var/cache/libvirt"}
DRILLS = Path(__file__).resolve().parents[3] / "drills"
DRILL_TEMPLATE = DRILLS / "lab-libvirt.yaml"
COPY_STORAGE_DRILL_TEMPLATE = DRILLS / "lab-libvirt-copy-storage.yaml"


class LabError(RuntimeError):
    pass


def missing_requirements() -> list[str]:
    """What this machine lacks to run the lab (empty when it can)."""
    missing = [cmd for cmd in REQUIRED_COMMANDS if shutil.which(cmd) is None]
    if os.geteuid() != 0:
        missing.append("root (network namespaces, bind mounts, libvirtd)")
    return missing


def hardware_accelerator() -> tuple[str, str]:
    """("kvm", why) when the host really has hardware virtualization, else ("tcg", why)."""
    for vendor in ("kvm_intel", "kvm_amd"):
        if Path(f"/sys/module/{vendor}").exists():
            return "kvm", f"{vendor} module loaded"
    pvm = " (only kvm_pvm is loaded)" if Path("/sys/module/kvm_pvm").exists() else ""
    return "tcg", f"lab runs TCG: no hardware virtualization on this machine{pvm}"


def netns_name(state_dir: Path) -> str:
    return "livedrill-" + hashlib.sha256(str(state_dir.resolve()).encode()).hexdigest()[:8]


# ---------------------------------------------------------------- processes we start, and only those


def _start_time(pid: int) -> int | None:
    """The kernel's start time of pid (field 22 of /proc/PID/stat), or None if it is gone or a zombie."""
    try:
        os.waitpid(pid, os.WNOHANG)  # reap it if it is our own exited child
    except ChildProcessError:
        pass
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] in ("Z", "X"):  # exited; only the process table entry is left
        return None
    return int(fields[19])


def _alive(proc: dict) -> bool:
    """Still the same process we recorded (a recycled PID has another start time)."""
    return _start_time(proc["pid"]) == proc["start_time"]


def _terminate(proc: dict, grace_s: float) -> None:
    if not _alive(proc):
        return
    os.kill(proc["pid"], signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        if not _alive(proc):
            return
        time.sleep(0.05)
    if _alive(proc):
        os.kill(proc["pid"], signal.SIGKILL)


class _Resources:
    """resources.json: written after each resource is created, read by stop."""

    def __init__(self, state_dir: Path):
        self.path = state_dir / "resources.json"
        self.data: dict = json.loads(self.path.read_text()) if self.path.exists() else {"processes": [], "netns": None}

    def save(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=2))
        tmp.replace(self.path)

    def add_process(self, role: str, pid: int) -> dict:
        start = _start_time(pid)
        proc = {"role": role, "pid": pid, "start_time": start}
        self.data["processes"].append(proc)
        self.save()
        return proc


def _run(argv: list[str], timeout_s: float) -> None:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired as exc:
        raise LabError(f"{' '.join(argv)} did not finish within {timeout_s:.0f} s") from exc
    if done.returncode != 0:
        raise LabError(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.strip()}")


# ---------------------------------------------------------------- building blocks


def _ensure_qemu_user(config: LibvirtLabConfig) -> None:
    # libvirt's QEMU driver looks the account up even when it runs QEMU as root.
    def exists() -> bool:
        return subprocess.run(["id", "libvirt-qemu"], capture_output=True, timeout=config.timeouts.command_s).returncode == 0

    if not exists():
        try:
            _run(["useradd", "--system", "--user-group", "--no-create-home", "--shell", "/usr/sbin/nologin",
                  "libvirt-qemu"], config.timeouts.command_s)
        except LabError:
            if not exists():  # another lab starting at the same moment may have created it
                raise


def _make_netns(name: str, config: LibvirtLabConfig, resources: _Resources) -> None:
    t = config.timeouts.command_s
    _run(["ip", "netns", "add", name], t)
    resources.data["netns"] = name
    resources.save()
    inside = ["ip", "netns", "exec", name]
    _run(inside + ["ip", "link", "set", "lo", "up"], t)
    _run(inside + ["ip", "link", "add", config.bridge, "type", "bridge"], t)
    for address in config.host_addresses:
        _run(inside + ["ip", "addr", "add", f"{address}/{config.prefix_len}", "dev", config.bridge], t)
    _run(inside + ["ip", "link", "set", config.bridge, "up"], t)


def _write_host_config(root: Path, host_uuid: str, ports: tuple[int, int], config: LibvirtLabConfig) -> None:
    for sub in (*LIBVIRT_DIRS, "sock", "log/qemu"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    (root / "etc" / "libvirtd.conf").write_text(
        f'unix_sock_dir = "{root / "sock"}"\n'
        'auth_unix_rw = "none"\nauth_unix_ro = "none"\n'
        f'host_uuid = "{host_uuid}"\n'
        f"keepalive_interval = {config.keepalive_interval_s}\nkeepalive_count = {config.keepalive_count}\n"
        f'log_outputs = "3:file:{root / "log" / "libvirtd.log"}"\n'
    )
    (root / "etc" / "qemu.conf").write_text(
        'user = "root"\ngroup = "root"\nsecurity_driver = "none"\nstdio_handler = "file"\n'
        "namespaces = [ ]\ncgroup_controllers = [ ]\n"
        f"migration_port_min = {ports[0]}\nmigration_port_max = {ports[1]}\n"
    )


def _start_daemon(name: str, root: Path, netns: str, resources: _Resources) -> int:
    mounts = " && ".join(f"mount --bind {root / sub} {target}" for sub, target in LIBVIRT_DIRS.items())
    script = f"{mounts} && exec libvirtd -f {LIBVIRT_DIRS['etc']}/libvirtd.conf -p {root / 'libvirtd.pid'}"
    for target in LIBVIRT_DIRS.values():
        Path(target).mkdir(parents=True, exist_ok=True)  # bind-mount targets; nothing is mounted outside the daemon
    log = open(root / "daemon.out", "ab")
    try:
        proc = subprocess.Popen(
            ["ip", "netns", "exec", netns, "unshare", "--mount", "--propagation", "private",
             "tini", "-s", "--", "sh", "-c", script],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
    finally:
        log.close()
    resources.add_process(f"libvirtd:{name}", proc.pid)
    return proc.pid


def _start_forwarder(netns: str, address: str, config: LibvirtLabConfig, resources: _Resources,
                     log_path: Path) -> tuple[int, int]:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        listener.bind(("127.0.0.1", 0))
        listener.listen(512)
        port = listener.getsockname()[1]
        fd = listener.fileno()
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(
                ["ip", "netns", "exec", netns, sys.executable, "-m", "livedrill_lab.libvirt.forwarder",
                 "--listen-fd", str(fd), "--target", f"{address}:{config.ledger_port}",
                 "--connect-timeout-s", str(config.timeouts.command_s)],
                pass_fds=(fd,), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )
    finally:
        listener.close()  # the forwarder holds its own copy
    resources.add_process(f"forwarder:{address}", proc.pid)
    return proc.pid, port


def _make_disks(roots: list[Path], guest: DiskGuestConfig, config: LibvirtLabConfig, scratch: Path) -> None:
    """The disk guest's qcow2 file on every host: on the first, zeros (the journal) then `filled_mib` of random
    data; on the others an empty image of the same virtual size, as a destination host's volume would be."""
    image = disk_image_path(guest).relative_to(LIBVIRT_DIRS["lib"])
    raw = scratch / "disk-seed.raw"
    with open(raw, "wb") as out:
        out.truncate(guest.disk_mib * MIB)
        out.seek(guest.journal_mib * MIB)
        for _ in range(guest.filled_mib):
            out.write(os.urandom(MIB))
    try:
        first, *others = roots
        (first / "lib" / image).parent.mkdir(parents=True, exist_ok=True)
        _run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(raw), str(first / "lib" / image)],
             config.timeouts.build_s)
    finally:
        raw.unlink(missing_ok=True)
    for root in others:
        (root / "lib" / image).parent.mkdir(parents=True, exist_ok=True)
        _run(["qemu-img", "create", "-q", "-f", "qcow2", str(root / "lib" / image), f"{guest.disk_mib}M"],
             config.timeouts.command_s)


def wait_for_ledger(url: str, budget_s: float, request_timeout_s: float) -> dict:
    """Polls GET {url}/healthz until the guest's ledger answers; returns its JSON."""
    deadline = time.monotonic() + budget_s
    last = "no answer"
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=request_timeout_s) as resp:
                return json.loads(resp.read())
        except (urllib.error.URLError, OSError, ValueError) as exc:
            last = str(exc)
        time.sleep(0.25)
    raise LabError(f"the guest ledger at {url} did not answer within {budget_s:.0f} s ({last})")


def set_guest_dirtying(url: str, bytes_per_s: int, working_set_bytes: int, request_timeout_s: float) -> dict:
    """Make the guest dirty `bytes_per_s` of its memory over a `working_set_bytes` working set (0: stop), through
    its ledger's POST /dirty; returns the setting the guest reports. LabError with the guest's answer otherwise."""
    body = json.dumps({"bytes_per_s": bytes_per_s, "working_set_bytes": working_set_bytes}).encode()
    request = urllib.request.Request(f"{url}/dirty", data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=request_timeout_s) as resp:
            return json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        raise LabError(f"the guest refused the dirtying setting: {exc.read().decode(errors='replace')}") from None


def render_drill_spec(state_dir: Path, ledger_addr: str, template: Path = DRILL_TEMPLATE) -> str:
    text = template.read_text()
    return text.replace("{state_dir}", str(state_dir)).replace("{ledger_addr}", ledger_addr)


def _libvirt_timeouts(config: LibvirtLabConfig) -> LibvirtTimeouts:
    return LibvirtTimeouts(connect_s=config.timeouts.libvirt_call_s, call_s=config.timeouts.libvirt_call_s)


# ---------------------------------------------------------------- public


def start_libvirt_lab(state_dir: Path, config: LibvirtLabConfig | None = None) -> LibvirtLabInfo:
    """Builds (cached) and starts the lab; the guest runs on the first host. Cleans up after itself on failure."""
    config = config or LibvirtLabConfig()
    state_dir = Path(state_dir).resolve()
    missing = missing_requirements()
    if missing:
        raise LabError(f"cannot run the libvirt lab, missing: {', '.join(missing)}")
    if (state_dir / "resources.json").exists():
        raise LabError(f"a libvirt lab already runs (or was not stopped) in {state_dir}: stop it first")
    state_dir.mkdir(parents=True, exist_ok=True)
    began = time.monotonic()
    resources = _Resources(state_dir)
    resources.save()
    try:
        return _start(state_dir, config, resources, began)
    except BaseException:
        stop_libvirt_lab(state_dir, config)
        raise


def _start(state_dir: Path, config: LibvirtLabConfig, resources: _Resources, began: float) -> LibvirtLabInfo:
    _ensure_qemu_user(config)
    image = ensure_guest_image(state_dir / "cache", config)
    accelerator, reason = hardware_accelerator()
    netns = netns_name(state_dir)
    _make_netns(netns, config, resources)
    timeouts = _libvirt_timeouts(config)
    hosts = []
    for name, address, ports in zip(config.host_names, config.host_addresses, config.migration_port_ranges):
        root = state_dir / "hosts" / name
        host_uuid = str(uuid.uuid4())
        _write_host_config(root, host_uuid, ports, config)
        pid = _start_daemon(name, root, netns, resources)
        sock = root / "sock" / "libvirt-sock"
        hosts.append(LabHost(name=name, uri=f"qemu+unix:///system?socket={sock}", migration_uri=f"tcp://{address}",
                             socket=sock, root=root, daemon_pid=pid, host_uuid=host_uuid))
    guest = config.disk_guest
    if guest is not None:
        _make_disks([h.root for h in hosts], guest, config, state_dir)
    for host in hosts:
        wait_for_daemon(host.uri, config.timeouts.daemon_start_s, timeouts)
    virt_type = "kvm" if accelerator == "kvm" else "qemu"
    host_cpus = os.cpu_count() or 1
    define_and_start(hosts[0].uri, domain_xml(config, kernel=image.kernel, initrd=image.initrd,
                                              console_log=state_dir / "guest-console.log", virt_type=virt_type,
                                              host_cpus=host_cpus), timeouts)
    if guest is not None:  # both guests boot at once
        define_and_start(hosts[0].uri, domain_xml(config, kernel=image.kernel, initrd=image.initrd,
                                                  console_log=state_dir / "disk-guest-console.log",
                                                  virt_type=virt_type, host_cpus=host_cpus, disk_guest=guest), timeouts)
    forwarder_pid, port = _start_forwarder(netns, config.guest_address, config, resources, state_dir / "forwarder.out")
    ledger_url = f"http://127.0.0.1:{port}"
    wait_for_ledger(ledger_url, config.timeouts.guest_boot_s, config.timeouts.command_s)
    spec_path = state_dir / "drill.yaml"
    spec_path.write_text(render_drill_spec(state_dir, f"127.0.0.1:{port}"))
    disk_lab_guest = None
    if guest is not None:
        disk_pid, disk_port = _start_forwarder(netns, guest.guest_address, config, resources,
                                               state_dir / "disk-forwarder.out")
        disk_url = f"http://127.0.0.1:{disk_port}"
        wait_for_ledger(disk_url, config.timeouts.guest_boot_s, config.timeouts.command_s)
        disk_spec = state_dir / "drill-copy-storage.yaml"
        disk_spec.write_text(render_drill_spec(state_dir, f"127.0.0.1:{disk_port}", COPY_STORAGE_DRILL_TEMPLATE))
        disk_lab_guest = LabGuest(domain=guest.domain_name, guest_address=guest.guest_address, ledger_url=disk_url,
                                  forwarder_pid=disk_pid, disk_image=disk_image_path(guest), drill_spec=disk_spec)
    info = LibvirtLabInfo(
        state_dir=state_dir, netns=netns, bridge=config.bridge, hosts=hosts, domain=config.domain_name,
        guest_address=config.guest_address, ledger_url=ledger_url, forwarder_pid=forwarder_pid,
        accelerator=accelerator, accelerator_reason=reason, drill_spec=spec_path, disk_guest=disk_lab_guest,
        kernel_version=image.kernel_version, setup_s=round(time.monotonic() - began, 2),
    )
    (state_dir / "lab.json").write_text(info.model_dump_json(indent=2))
    return info


def read_lab_info(state_dir: Path) -> LibvirtLabInfo:
    return LibvirtLabInfo.model_validate_json((Path(state_dir) / "lab.json").read_text())


def _qemu_pids(root: Path) -> list[dict]:
    """QEMU processes libvirtd started for this host, from its pid files (checked to really be QEMU)."""
    found = []
    for pidfile in sorted((root / "run" / "qemu").glob("*.pid")):
        try:
            pid = int(pidfile.read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, ValueError):
            continue
        if b"qemu-system" in cmdline and str(root.parents[1]).encode() in cmdline:
            found.append({"role": "qemu", "pid": pid, "start_time": _start_time(pid)})
    return found


def lab_processes_alive(state_dir: Path) -> list[dict]:
    """Processes this lab started that still run (empty after a clean stop)."""
    state_dir = Path(state_dir).resolve()
    path = state_dir / "resources.json"
    procs = json.loads(path.read_text())["processes"] if path.exists() else []
    for root in sorted((state_dir / "hosts").glob("*")):
        procs = procs + _qemu_pids(root)
    return [p for p in procs if _alive(p)]


def stop_libvirt_lab(state_dir: Path, config: LibvirtLabConfig | None = None) -> list[str]:
    """Removes every process, namespace and mount the lab made (by recorded PID / name); keeps cache/.

    Returns what it did, for the operator. Safe to call on a half-started or already stopped lab.
    """
    config = config or LibvirtLabConfig()
    state_dir = Path(state_dir).resolve()
    resources_path = state_dir / "resources.json"
    if not resources_path.exists():
        return []
    resources = _Resources(state_dir)
    done: list[str] = []
    timeouts = _libvirt_timeouts(config)
    host_roots = sorted((state_dir / "hosts").glob("*"))
    # Domains first, through libvirt (clean QEMU shutdown); then any QEMU it could not stop, by PID.
    for root in host_roots:
        sock = root / "sock" / "libvirt-sock"
        if sock.exists():
            try:
                removed = remove_all_domains(f"qemu+unix:///system?socket={sock}", timeouts)
                done += [f"destroyed domain {name} on {root.name}" for name in removed]
            except Exception as exc:  # noqa: BLE001 - a dead daemon must not stop the cleanup; QEMU is killed below
                done.append(f"libvirt on {root.name} unreachable ({exc}); killing its QEMU by PID")
        for proc in _qemu_pids(root):
            _terminate(proc, config.timeouts.stop_s)
            done.append(f"killed qemu pid {proc['pid']}")
    for proc in reversed(resources.data["processes"]):
        if _alive(proc):
            _terminate(proc, config.timeouts.stop_s)
            done.append(f"stopped {proc['role']} pid {proc['pid']}")
    netns = resources.data.get("netns")
    if netns and Path(f"/run/netns/{netns}").exists():
        _run(["ip", "netns", "del", netns], config.timeouts.command_s)  # takes the bridge and taps with it
        done.append(f"deleted network namespace {netns}")
    shutil.rmtree(state_dir / "hosts", ignore_errors=True)
    for name in ("lab.json", "drill.yaml", "drill-copy-storage.yaml", "resources.json"):
        (state_dir / name).unlink(missing_ok=True)
    return done


def libvirt_lab_status(state_dir: Path) -> dict | None:
    """The running lab's info plus which of its processes are alive, or None when no lab runs there."""
    state_dir = Path(state_dir).resolve()
    if not (state_dir / "lab.json").exists():
        return None
    info = read_lab_info(state_dir)
    alive = lab_processes_alive(state_dir)
    return {"lab": info.model_dump(mode="json"), "processes_alive": alive}
