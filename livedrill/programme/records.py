"""The programme's own records, sealed into the evidence archive like a drill: a deficiency (a failed drill's root
cause, who remediates it and by when) and the quarter's management sign-off (who, in which role, what they
decided, and the coverage they saw). Each is one archive run holding one record file, signed and chained, so
nobody rewrites a root cause or a sign-off afterwards without `evidence verify` saying so.

A deficiency is closed by the VM's next passing drill (its retest) after the failed one: that is read from the
archive's drills, not recorded by hand.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Annotated, Literal, Union

from pydantic import AwareDatetime, Field, TypeAdapter

from livedrill.errors import InputError
from livedrill.evidence.archive import Archive
from livedrill.evidence.keys import Signer
from livedrill.evidence.records import RECORD_FILE, sealed_records
from livedrill.evidence.store_config import ObjectStoreConfig
from livedrill.evidence.worm import seal_run
from livedrill.outcomes import Record
from livedrill.spec import VMRef

_TEXT = Field(min_length=1)


class DeficiencyRecord(Record):
    kind: Literal["deficiency"] = "deficiency"
    programme: str
    quarter: str
    cluster: str
    vm: VMRef
    failed_run: str = Field(description="The sealed drill run that failed")
    root_cause: Annotated[str, _TEXT]
    owner: Annotated[str, _TEXT] = Field(description="Who remediates it")
    due: date = Field(description="When the remediation is due (the retest follows)")
    recorded_by: Annotated[str, _TEXT]
    recorded_at: AwareDatetime


class CoverageFigures(Record):
    """The coverage the signer saw (livedrill.programme.coverage), as counts."""

    in_scope: int
    to_drill: int
    passed: int
    failed: int
    open_deficiencies: int
    not_drilled: int
    exceptions: int
    complete: bool


class SignOffRecord(Record):
    kind: Literal["sign-off"] = "sign-off"
    programme: str
    quarter: str
    role: Annotated[str, _TEXT]
    name: Annotated[str, _TEXT]
    decision: Literal["approved", "rejected"]
    statement: Annotated[str, _TEXT]
    coverage: CoverageFigures
    recorded_at: AwareDatetime


ProgrammeRecord = Annotated[Union[DeficiencyRecord, SignOffRecord], Field(discriminator="kind")]
_RECORD = TypeAdapter(ProgrammeRecord)


def seal_record(archive_root: Path, record: DeficiencyRecord | SignOffRecord, signer: Signer,
                store: ObjectStoreConfig | None = None, witness: Path | None = None) -> str:
    """Write `record` as a run of its own and seal it into the chain (the WORM store's, when `store` names one, as
    the drills of that archive are); its run id. An unreachable store raises StoreUnavailable with the record
    staged, unsealed, for `livedrill evidence sync`."""
    root = Path(archive_root)
    if not root.is_dir():
        raise InputError(f"--archive: no evidence archive at {root}")
    run = Archive(root).new_run(f"programme-{record.programme}-{record.kind}", now=record.recorded_at)
    run.write_json(RECORD_FILE, record.model_dump(mode="json"))
    seal_run(run, signer, store, witness=witness)
    return run.run_id


def read_records(archive_root: Path, quarter: str | None = None) -> list[tuple[str, DeficiencyRecord | SignOffRecord]]:
    """(run id, record) of every sealed programme record of the archive (about `quarter`, if given)."""
    return [(run_id, _RECORD.validate_python(raw)) for run_id, raw in sealed_records(archive_root, quarter)]
