"""When the probes' smoke run before a drill has its answer (table test of the pure decision)."""

from __future__ import annotations

import pytest

from livedrill.probe.threaded import ProbeLive
from livedrill.stages.probecheck import smoke_settled


def live(ok: int, failed: int = 0, name: str = "ledger") -> ProbeLive:
    return ProbeLive(name=name, window="baseline", rate_per_s=200.0, sent=ok + failed, ok=ok, failed=failed,
                     in_flight=0, last_gap_ms=None, current_gap_ms=0.0)


@pytest.mark.parametrize("probes, settled", [
    ([], False),                                  # the engine has not reported yet
    ([live(0)], False),                           # nothing answered yet
    ([live(19)], False),                          # one success short
    ([live(20)], True),                           # enough successes
    ([live(3, failed=1)], True),                  # a failure decides it (the check fails)
    ([live(25), live(5, name="gateway")], False), # every probe needs its successes
    ([live(25), live(20, name="gateway")], True),
    ([live(25), live(0, failed=2, name="gateway")], True),
])
def test_smoke_settled(probes, settled):
    assert smoke_settled(probes, successes=20) is settled
