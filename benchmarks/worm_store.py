"""Benchmark: sealing into the WORM store (a real one-node Ceph RADOS Gateway started here) against sealing on disk.

Each run is what a lab drill writes (benchmarks/verify_archive.py's `write_run`, the probe series 64 KiB by
default). Prints the seal time per run (p50/p99) into the bucket and into a local archive, the same with
two processes sealing into one bucket at once, and the time to verify every run from the bucket against
verifying the local archive. Store and disk share this machine; its CPUs and load are printed.

    .venv/bin/python benchmarks/worm_store.py [--runs 1000] [--series-bytes 65536]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from cryptography.hazmat.primitives import serialization

from livedrill.evidence.archive import Archive
from livedrill.evidence.keys import Signer
from livedrill.evidence.store import ObjectStore
from livedrill.evidence.store_config import ObjectStoreConfig
from livedrill.evidence.store_verify import verify_store_report
from livedrill.evidence.verify import verify_archive_report
from livedrill.evidence.worm import seal_to_store
from livedrill_lab.objectstore import running_object_store

sys.path.insert(0, str(Path(__file__).resolve().parent))
from verify_archive import write_run  # noqa: E402

START = datetime(2026, 10, 1, tzinfo=timezone.utc)


def _quantiles(samples: list[float]) -> str:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return f"p50 {statistics.median(ordered) * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms"


def _seal_into(store_config: ObjectStoreConfig | None, staging: Path, count: int, series_bytes: int, offset: int,
               signer: Signer) -> list[float]:
    archive = Archive(staging)
    store = ObjectStore(store_config) if store_config else None
    took = []
    for i in range(count):
        run = archive.new_run("bench-targeted", now=START + timedelta(minutes=offset + i))
        write_run(run, os.urandom(series_bytes), START)
        t = time.perf_counter()
        if store is None:
            run.seal(signer)
        else:
            seal_to_store(run, store, signer)
        took.append(time.perf_counter() - t)
    return took


def _worker(config_json: str, staging: str, count: int, series_bytes: int, offset: int, key_pem: bytes) -> list[float]:
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    return _seal_into(ObjectStoreConfig.model_validate_json(config_json), Path(staging), count, series_bytes, offset,
                      Signer(load_pem_private_key(key_pem, None)))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--series-bytes", type=int, default=64 * 1024)
    args = parser.parse_args()
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, load {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory(prefix="livedrill-bench-worm-") as tmp, running_object_store(Path(tmp) / "rgw") as rgw:
        config = ObjectStoreConfig(endpoint_url=rgw.endpoint_url, bucket="bench-evidence", credentials_file=rgw.credentials_file())
        signer = Signer.generate()
        key_pem = signer._private_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                     serialization.NoEncryption())
        disk = _seal_into(None, Path(tmp) / "disk", args.runs, args.series_bytes, 0, signer)
        single = _seal_into(config, Path(tmp) / "staging-a", args.runs, args.series_bytes, 0, signer)
        files = sum(1 for p in next(Archive(Path(tmp) / "disk").runs().__iter__()).path.rglob("*") if p.is_file())
        print(f"seal, {args.runs} runs of {files} files each (series {args.series_bytes} B):")
        print(f"  local disk archive:          {_quantiles(disk)}")
        print(f"  WORM bucket, one sealer:     {_quantiles(single)}  ({statistics.median(single) / statistics.median(disk):.1f}x disk)")
        half = max(1, args.runs // 10)
        with multiprocessing.get_context("spawn").Pool(2) as pool:
            both = pool.starmap(_worker, [(config.model_dump_json(), str(Path(tmp) / f"staging-{h}"), half, args.series_bytes,
                                           100_000 * (n + 1), key_pem) for n, h in enumerate("bc")])
        print(f"  WORM bucket, two sealers:    {_quantiles(both[0] + both[1])}  ({2 * half} runs, two processes at once)")
        total = args.runs + 2 * half
        t = time.perf_counter()
        report = verify_store_report(ObjectStore(config), trusted_keys=[signer.public_key])
        from_store = time.perf_counter() - t
        t = time.perf_counter()
        local = verify_archive_report(Path(tmp) / "disk", trusted_keys=None)
        from_disk = time.perf_counter() - t
        print(f"verify all {total} runs from the bucket: {from_store:.1f} s, {len(report.problems)} problem(s); "
              f"{args.runs} runs from local disk: {from_disk:.1f} s (store/disk per run {from_store / total / (from_disk / args.runs):.1f}x)")
        return 0 if not report.problems and report.runs_checked == total else 1


if __name__ == "__main__":
    raise SystemExit(main())
