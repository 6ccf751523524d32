"""Builds the lab guest, once, into the lab's cache: a Debian kernel and a busybox initramfs running the ledger.

Nothing is installed on the machine: the kernel package is fetched with `apt-get download` and unpacked
with `dpkg-deb -x`; the initramfs carries busybox-static, the virtio network modules (and what they depend
on, read from each module's own `depends=` field because the package ships no modules.dep), and the
ledger compiled statically from `guest_ledger.c`. Every step is skipped when its output is already cached.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from livedrill_lab.libvirt.config import LibvirtLabConfig

LEDGER_SOURCE = Path(__file__).with_name("guest_ledger.c")
BUSYBOX = Path("/bin/busybox")
# The NIC the guests need, and the disk guest's virtio-blk disk; their dependencies are resolved from the modules.
WANTED_MODULES = ("virtio_pci", "virtio_net", "virtio_blk")


class GuestBuildError(RuntimeError):
    pass


@dataclass(frozen=True)
class GuestImage:
    kernel: Path
    initrd: Path
    kernel_version: str


def _run(argv: list[str], timeout_s: float, cwd: Path | None = None) -> str:
    try:
        done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired as exc:
        raise GuestBuildError(f"{argv[0]} did not finish within {timeout_s:.0f} s") from exc
    if done.returncode != 0:
        raise GuestBuildError(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
    return done.stdout


def _kernel_dependency(timeout_s: float) -> str | None:
    try:
        out = _run(["apt-cache", "depends", "linux-image-amd64"], timeout_s)
    except GuestBuildError:
        return None
    for line in out.splitlines():
        line = line.strip()
        if line.startswith("Depends:") and "linux-image-" in line:
            return line.split(":", 1)[1].strip()
    return None


def kernel_package(config: LibvirtLabConfig) -> str:
    """The concrete kernel package behind Debian's `linux-image-amd64` metapackage (e.g. linux-image-6.1.0-56-amd64).

    A machine whose package lists were emptied (common in images) learns them once with `apt-get update`.
    """
    package = _kernel_dependency(config.timeouts.command_s)
    if package is None:
        _run(["apt-get", "update", "-qq"], config.timeouts.apt_s)
        package = _kernel_dependency(config.timeouts.command_s)
    if package is None:
        raise GuestBuildError("apt knows no linux-image-amd64 package even after apt-get update")
    return package


def module_depends(ko: Path) -> list[str]:
    """A kernel module's `depends=` list, read from its .modinfo strings (no modinfo/depmod needed)."""
    data = ko.read_bytes()
    at = data.find(b"\x00depends=")
    if at < 0:
        return []
    end = data.index(b"\x00", at + 1)
    value = data[at + len(b"\x00depends=") : end].decode()
    return [name for name in value.split(",") if name]


def load_order(wanted: tuple[str, ...], modules_by_name: dict[str, Path]) -> list[str]:
    """Modules to insmod, every dependency before its dependents."""
    order: list[str] = []

    def visit(name: str, chain: tuple[str, ...]) -> None:
        if name in order:
            return
        if name in chain:
            raise GuestBuildError(f"module dependency cycle: {' -> '.join(chain + (name,))}")
        if name not in modules_by_name:
            raise GuestBuildError(f"kernel module {name} is not in the kernel package")
        for dep in module_depends(modules_by_name[name]):
            visit(dep, chain + (name,))
        order.append(name)

    for name in wanted:
        visit(name, ())
    return order


def _ensure_kernel(cache: Path, config: LibvirtLabConfig) -> tuple[Path, Path, str]:
    """vmlinuz and a directory of the needed modules (in load order, listed in `order`)."""
    kdir = cache / "kernel"
    stamp = kdir / "version"
    if stamp.exists():
        return kdir / "vmlinuz", kdir / "modules", stamp.read_text().strip()
    package = kernel_package(config)
    with tempfile.TemporaryDirectory(dir=cache) as scratch_name:
        scratch = Path(scratch_name)
        _run(["apt-get", "download", package], config.timeouts.apt_s, cwd=scratch)
        debs = sorted(scratch.glob("*.deb"))
        if not debs:
            raise GuestBuildError(f"apt-get download {package} produced no .deb")
        root = scratch / "root"
        _run(["dpkg-deb", "-x", str(debs[0]), str(root)], config.timeouts.build_s)
        (version_dir,) = (root / "lib" / "modules").iterdir()
        modules_by_name = {ko.name[: -len(".ko")].replace("-", "_"): ko for ko in version_dir.rglob("*.ko")}
        order = load_order(WANTED_MODULES, modules_by_name)
        staging = cache / "kernel.partial"
        shutil.rmtree(staging, ignore_errors=True)
        (staging / "modules").mkdir(parents=True)
        shutil.copy2(root / "boot" / f"vmlinuz-{version_dir.name}", staging / "vmlinuz")
        for name in order:
            shutil.copy2(modules_by_name[name], staging / "modules" / f"{name}.ko")
        (staging / "modules" / "order").write_text("\n".join(order) + "\n")
        (staging / "version").write_text(version_dir.name + "\n")
        shutil.rmtree(kdir, ignore_errors=True)
        staging.rename(kdir)
    return kdir / "vmlinuz", kdir / "modules", stamp.read_text().strip()


def _ensure_ledger(cache: Path, config: LibvirtLabConfig) -> Path:
    digest = hashlib.sha256(LEDGER_SOURCE.read_bytes()).hexdigest()[:16]
    binary = cache / f"ledger-{digest}"
    if not binary.exists():
        partial = binary.with_suffix(".partial")
        _run(["gcc", "-O2", "-static", "-Wall", "-o", str(partial), str(LEDGER_SOURCE)], config.timeouts.build_s)
        partial.rename(binary)
    return binary


def init_script(config: LibvirtLabConfig, module_order: list[str]) -> str:
    """PID 1 of both lab guests. Its address, and for the disk guest the journal device, come from the kernel
    command line (livedrill.ip=, livedrill.journal=, livedrill.journal_mib=; see domain.py), so one initramfs serves both."""
    insmods = "\n".join(f"insmod /lib/modules/{name}.ko" for name in module_order)
    first_host = config.host_addresses[0]
    return f"""#!/bin/sh
# PID 1 of the lab guest: bring up virtio-net with the address it was given, then keep the ledger running.
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
{insmods}
address=""
journal=""
journal_mib=""
for arg in $(cat /proc/cmdline); do
    case "$arg" in
        livedrill.ip=*) address="${{arg#livedrill.ip=}}" ;;
        livedrill.journal=*) journal="${{arg#livedrill.journal=}}" ;;
        livedrill.journal_mib=*) journal_mib="${{arg#livedrill.journal_mib=}}" ;;
    esac
done
if [ -n "$journal" ]; then
    # virtio-blk probes asynchronously: wait for the device node.
    tries=0
    while [ ! -b "$journal" ] && [ $tries -lt 100 ]; do sleep 0.1; tries=$((tries + 1)); done
fi
ip link set lo up
ip link set eth0 up
ip addr add "$address/{config.prefix_len}" dev eth0
ip route add default via {first_host}
echo "livedrill-guest: network up at $address, starting ledger${{journal:+ with journal $journal}}"
while true; do
    /bin/ledger {config.ledger_port} $journal $journal_mib
    echo "livedrill-guest: ledger exited with $?, restarting"
    sleep 1
done
"""


def _ensure_initrd(cache: Path, modules: Path, ledger: Path, config: LibvirtLabConfig) -> Path:
    module_order = (modules / "order").read_text().split()
    script = init_script(config, module_order)
    inputs = hashlib.sha256(script.encode() + ledger.name.encode() + BUSYBOX.read_bytes()[:4096])
    initrd = cache / f"initrd-{inputs.hexdigest()[:16]}.cpio.gz"
    if initrd.exists():
        return initrd
    with tempfile.TemporaryDirectory(dir=cache) as tree_name:
        tree = Path(tree_name)
        for sub in ("bin", "proc", "sys", "dev", "lib/modules"):
            (tree / sub).mkdir(parents=True)
        shutil.copy2(BUSYBOX, tree / "bin" / "busybox")
        for applet in ("sh", "mount", "insmod", "ip", "sleep", "echo", "cat"):
            os.symlink("busybox", tree / "bin" / applet)
        shutil.copy2(ledger, tree / "bin" / "ledger")
        for name in module_order:
            shutil.copy2(modules / f"{name}.ko", tree / "lib" / "modules" / f"{name}.ko")
        (tree / "init").write_text(script)
        (tree / "init").chmod(0o755)
        names = sorted(str(p.relative_to(tree)) for p in tree.rglob("*"))
        try:
            cpio = subprocess.run(
                ["cpio", "--quiet", "-o", "-H", "newc"],
                input=("\n".join(names) + "\n").encode(),
                cwd=tree,
                capture_output=True,
                timeout=config.timeouts.build_s,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise GuestBuildError("cpio did not finish in time") from exc
        if cpio.returncode != 0:
            raise GuestBuildError(f"cpio failed: {cpio.stderr.decode(errors='replace')}")
        partial = initrd.with_suffix(".partial")
        partial.write_bytes(gzip.compress(cpio.stdout, compresslevel=6))
        partial.rename(initrd)
    return initrd


def ensure_guest_image(cache: Path, config: LibvirtLabConfig) -> GuestImage:
    """Builds (or reuses) the guest kernel and initramfs under `cache`."""
    cache.mkdir(parents=True, exist_ok=True)
    kernel, modules, version = _ensure_kernel(cache, config)
    ledger = _ensure_ledger(cache, config)
    initrd = _ensure_initrd(cache, modules, ledger, config)
    return GuestImage(kernel=kernel, initrd=initrd, kernel_version=version)
