"""A throw-away PostgreSQL cluster for the Prefect server's production variant, started and stopped by the test.

PostgreSQL refuses to run as root, so as root the cluster runs as Debian's `postgres` system user in a
directory under /tmp that this test creates and removes.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tests.prefect.harness import free_port

PG_TIMEOUT_S = 120.0


def pg_bindir() -> Path | None:
    """Debian keeps the server binaries out of PATH, under /usr/lib/postgresql/<major>/bin."""
    on_path = shutil.which("pg_ctl")
    if on_path and shutil.which("initdb"):
        return Path(os.path.realpath(on_path)).parent
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    return Path(found[-1]).parent if found else None


def why_not_available() -> str | None:
    if pg_bindir() is None:
        return "PostgreSQL server binaries (initdb, pg_ctl) are not installed: apt-get install -y postgresql"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and there is no 'postgres' user to run PostgreSQL as"
        if shutil.which("runuser") is None:
            return "running as root without runuser (util-linux) to drop to the postgres user"
    return None


@dataclass
class Postgres:
    root: Path
    port: int
    bindir: Path
    as_user: list[str]

    @property
    def url(self) -> str:
        return f"postgresql+asyncpg://prefect@127.0.0.1:{self.port}/prefect"

    def run(self, tool: str, *args: str) -> str:
        done = subprocess.run([*self.as_user, str(self.bindir / tool), *args], capture_output=True, text=True,
                              timeout=PG_TIMEOUT_S)
        if done.returncode != 0:
            raise RuntimeError(f"{tool} {' '.join(args)} failed: {done.stderr or done.stdout}")
        return done.stdout

    def sql(self, query: str) -> str:
        psql = shutil.which("psql") or str(self.bindir / "psql")
        done = subprocess.run([psql, "-h", "127.0.0.1", "-p", str(self.port), "-U", "prefect", "-d", "prefect", "-At",
                               "-c", query], capture_output=True, text=True, timeout=PG_TIMEOUT_S)
        if done.returncode != 0:
            raise RuntimeError(f"psql: {done.stderr}")
        return done.stdout.strip()

    def stop(self) -> None:
        try:
            self.run("pg_ctl", "-D", str(self.root / "data"), "-m", "fast", "-w", "-t", "60", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


def start_postgres() -> Postgres:
    bindir = pg_bindir()
    assert bindir is not None
    root = Path(tempfile.mkdtemp(prefix="livedrill-pg-", dir="/tmp"))
    as_user: list[str] = []
    if os.geteuid() == 0:
        user = pwd.getpwnam("postgres")
        os.chown(root, user.pw_uid, user.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    pg = Postgres(root=root, port=free_port(), bindir=bindir, as_user=as_user)
    data = root / "data"
    # Loopback only, trust auth for the one local role: a test cluster that lives for one module.
    pg.run("initdb", "-D", str(data), "-U", "prefect", "-A", "trust", "-E", "UTF8", "--no-sync")
    options = f"-p {pg.port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off"
    try:
        pg.run("pg_ctl", "-D", str(data), "-o", options, "-l", str(root / "postgres.log"), "-w", "-t", "60", "start")
        pg.run("createdb", "-h", "127.0.0.1", "-p", str(pg.port), "-U", "prefect", "prefect")
    except Exception:
        log = root / "postgres.log"
        detail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
        pg.stop()
        raise RuntimeError(f"PostgreSQL did not start:\n{detail}")
    return pg
