"""What exporting one drill's metrics costs: samples, payload sizes per wire format, encode time, and
the push to a real Prometheus (remote write) and VictoriaMetrics (import) when their binaries exist.

    .venv/bin/python benchmarks/metrics_export.py [--gaps 0,50,500] [--repeat 5]

Writes one sample run per `--gaps` value (the run's gap list is what grows: everything else is fixed
per probe), then prints one row per run and store. Figures only: nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from livedrill.evidence.keys import Signer  # noqa: E402
from livedrill.metrics.config import PushSink  # noqa: E402
from livedrill.metrics.encode import encode_write_request, render_text, snappy_compress  # noqa: E402
from livedrill.metrics.push import push_samples  # noqa: E402
from livedrill.metrics.rundir import samples_from_run_dir  # noqa: E402
from tests.metrics import stores  # noqa: E402
from tests.metrics.sample_runs import QUARTERLY, SampleGap, write_sample_run  # noqa: E402


def best_of(repeat: int, fn) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gaps", default="0,50,500", help="gaps above threshold per run, comma-separated (0: the sample's 3)")
    parser.add_argument("--repeat", type=int, default=5, help="timings are the best of this many")
    args = parser.parse_args()
    print(f"# {platform.python_implementation()} {platform.python_version()}, {os.cpu_count()} CPUs, {platform.machine()}; "
          f"best of {args.repeat}; one transaction probe, 7 phases, 3 windows")
    print(f"{'gaps':>5} {'samples':>7} {'text B':>8} {'proto B':>8} {'snappy B':>8} {'read+build ms':>13} "
          f"{'proto ms':>8} {'snappy ms':>9} {'store':>16} {'push ms':>8}")
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        signer = Signer.generate()
        runs = []
        for n in (int(x) for x in args.gaps.split(",")):
            base = QUARTERLY[3]
            gaps = tuple(SampleGap(25.0 + i % 40, 4.5 + 15.0 * i / max(n, 1)) for i in range(n)) or base.gaps
            runs.append((len(gaps), write_sample_run(tmp_path / f"archive-{n}", replace(base, gaps=gaps), signer)))
        targets = []
        if stores.PROMETHEUS:
            targets.append(("prometheus", stores.prometheus, "remote_write", "/api/v1/write"))
        if stores.VICTORIA_METRICS:
            targets.append(("victoriametrics", stores.victoria_metrics, "victoriametrics_import", "/api/v1/import/prometheus"))
        for n, run_dir in runs:
            samples = samples_from_run_dir(run_dir)
            text = render_text(samples).encode()
            proto = encode_write_request(samples)
            packed = snappy_compress(proto)
            build_ms = best_of(args.repeat, lambda: samples_from_run_dir(run_dir)) * 1000
            proto_ms = best_of(args.repeat, lambda: encode_write_request(samples)) * 1000
            snappy_ms = best_of(args.repeat, lambda: snappy_compress(proto)) * 1000
            row = (f"{n:>5} {len(samples):>7} {len(text):>8} {len(proto):>8} {len(packed):>8} {build_ms:>13.1f} "
                   f"{proto_ms:>8.2f} {snappy_ms:>9.2f}")
            if not targets:
                print(row, f"{'(no store installed)':>16}")
            for name, start, kind, path in targets:
                with start(tmp_path / f"{name}-{n}") as store:
                    sink = PushSink(kind=kind, url=store.base_url + path)
                    push_ms = best_of(args.repeat, lambda: push_samples(samples, sink)) * 1000
                print(row, f"{name:>16} {push_ms:>8.1f}")


if __name__ == "__main__":
    main()
