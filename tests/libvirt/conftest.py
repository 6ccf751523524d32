"""The real two-host libvirt/QEMU lab, built once per test module (skipped only when it cannot run here)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from livedrill_lab.libvirt.manager import missing_requirements, start_libvirt_lab, stop_libvirt_lab


def lab_skip_reason() -> str | None:
    try:
        import libvirt  # noqa: F401
    except ImportError:
        return "libvirt-python is not installed (make sysdeps installs it)"
    missing = missing_requirements()
    if missing:
        return f"libvirt lab packages/privileges missing: {', '.join(missing)} (make sysdeps installs them)"
    return None


@pytest.fixture(scope="session")
def lab_cache(tmp_path_factory) -> Path:
    """One guest-image cache for every lab of the session (the kernel is downloaded once)."""
    return tmp_path_factory.mktemp("libvirt-lab-cache")


def _start(state_dir: Path, cache: Path):
    state_dir.mkdir(parents=True, exist_ok=True)
    if not (state_dir / "cache").exists():
        (state_dir / "cache").symlink_to(cache, target_is_directory=True)
    return start_libvirt_lab(state_dir)


@pytest.fixture(scope="module")
def libvirt_lab(tmp_path_factory, lab_cache):
    """The lab for one test module: stopped as soon as the module is done, not at the end of the whole suite."""
    reason = lab_skip_reason()
    if reason:
        pytest.skip(reason)
    state_dir = tmp_path_factory.mktemp("libvirt-lab")
    info = _start(state_dir, lab_cache)
    try:
        yield info
    finally:
        stop_libvirt_lab(state_dir)


@pytest.fixture
def start_own_lab(tmp_path, lab_cache):
    """Starts a separate lab for a test that must observe a whole lifecycle; always stopped afterwards."""
    reason = lab_skip_reason()
    if reason:
        pytest.skip(reason)
    started = []

    def start():
        info = _start(tmp_path / "lab", lab_cache)
        started.append(info.state_dir)
        return info

    yield start
    for state_dir in started:
        stop_libvirt_lab(state_dir)
    shutil.rmtree(tmp_path / "lab", ignore_errors=True)
