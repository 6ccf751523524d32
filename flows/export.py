"""The auditor export as a Prefect flow: the same bundle as `livedrill evidence export`."""

from __future__ import annotations

from prefect import flow

from tasks.evidence import export_bundle


@flow(name="livedrill-evidence-export")
def export(archive: str, quarter: str, out: str) -> dict:
    return export_bundle(archive, quarter, out)
