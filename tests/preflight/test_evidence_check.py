"""The evidence-archive pre-flight check: a drill whose proof cannot be sealed is refused before anything moves;
a WORM store that does not answer only warns (the seal waits in the staging folder)."""

from __future__ import annotations

import pytest

from livedrill.evidence.worm import StoreReadiness
from livedrill.outcomes import CheckStatus
from livedrill.stages.preflight import evidence_check

GIB = 2**30
URL = "s3://core-evidence/core-tier"


@pytest.mark.parametrize("signer_error, free, store, status, says", [
    (None, 10 * GIB, None, CheckStatus.PASS, "signing key loaded, 10.0 GiB free"),
    (None, 10 * GIB, StoreReadiness(URL), CheckStatus.PASS, f"sealing into {URL}"),
    ("no such file", 10 * GIB, None, CheckStatus.FAIL, "the signing key cannot be loaded: no such file"),
    (None, GIB // 2, None, CheckStatus.FAIL, "512 MiB free, the probe series needs up to 1024 MiB"),
    (None, 10 * GIB, StoreReadiness(URL, "evidence.store.bucket core-evidence: Object Lock is not enabled"), CheckStatus.FAIL,
     "the WORM store refuses: evidence.store.bucket core-evidence: Object Lock is not enabled"),
    (None, 10 * GIB, StoreReadiness(URL, "put x: AccessDenied", transient=False), CheckStatus.FAIL, "refuses: put x: AccessDenied"),
    (None, 10 * GIB, StoreReadiness(URL, "unreachable (connection refused)", transient=True), CheckStatus.WARN,
     "the WORM store does not answer (unreachable (connection refused)): the seal will wait in the staging folder"),
    ("bad key", 10 * GIB, StoreReadiness(URL, "unreachable", transient=True), CheckStatus.FAIL, "the signing key cannot be loaded"),
])
def test_evidence_check(signer_error, free, store, status, says):
    check = evidence_check(signer_error, free, GIB, "evidence", store)
    assert check.status is status
    assert says in check.message
    assert (check.remedy is not None) == (status is CheckStatus.FAIL)
