"""Turns a deployment's request into the spec it runs, from the specs `livedrill serve` was started with."""

from __future__ import annotations

import os
from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE

from livedrill.deploy.request import DrillRequest, resolve_request
from livedrill.spec import DrillSpec

# `serve` exports the served spec paths here; the runner's flow-run subprocesses inherit it.
SERVED_SPECS_ENV = "LIVEDRILL_SERVED_SPECS"


def served_specs() -> list[Path]:
    return [Path(p) for p in os.environ.get(SERVED_SPECS_ENV, "").split(os.pathsep) if p]


@task(name="resolve-request", cache_policy=NO_CACHE)
def load_request(request: DrillRequest) -> tuple[DrillSpec, str]:
    return resolve_request(request, served_specs())
