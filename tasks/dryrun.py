"""Dry run: the pre-flight against a scratch evidence directory, so the real archive gets no run."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE

from livedrill.spec import DrillSpec
from livedrill.stages.session import DrillSession


@task(name="open-dry-run", cache_policy=NO_CACHE)
def open_dry_run(spec: DrillSpec) -> str:
    scratch = Path(tempfile.mkdtemp(prefix=f"livedrill-dry-run-{spec.name}-"))
    scratch_spec = spec.model_copy(update={"evidence": spec.evidence.model_copy(update={"dir": scratch})})
    return str(DrillSession.create(scratch_spec).run.path)


@task(name="discard-dry-run", cache_policy=NO_CACHE)
def discard_dry_run(run_dir: str) -> None:
    shutil.rmtree(Path(run_dir).parent, ignore_errors=True)
