"""How many requests a probe keeps on the wire to one target at once: pure decisions, table-tested.

A target that freezes (stop-and-copy) holds every request already sent to it; when it resumes it must
serve them all before anything else, and that extra time is added to the gap the probe measures. So the
connection pool keeps a window just above what the probe rate really needs: it shrinks to the peak use
of the last period plus one spare connection, and grows by one per answer while probes are waiting (never
while the target is silent). A gateway with high latency needs a wide window and keeps it; a fast local
target needs one or two, and only those are stuck in a freeze. (Lost requests and scouts beyond the window
are http1.Http1Pool's: they need the kernel's view of a connection.)
"""

from __future__ import annotations


def window_after_period(window: int, peak_in_use: int, waiting: int) -> int:
    """At the end of a period: the peak use plus one spare, never wider than before; unchanged while probes wait."""
    if waiting:
        return window
    return max(1, min(window, peak_in_use + 1))


def window_after_answer(window: int, max_connections: int, waiting: int, answered_since_growth: bool) -> int:
    """After an answer: one wider if probes are still waiting and the target answered since the last growth."""
    if waiting and answered_since_growth and window < max_connections:
        return window + 1
    return window


def may_send(occupied: int, window: int, scouts_at_most: int, quiet_s: float, scout_after_s: float) -> bool:
    """May one more request go out? Within the window, yes; beyond it only as a scout: nothing was sent or
    answered for `scout_after_s` (`quiet_s` so far), and fewer than `scouts_at_most` scouts are out."""
    if occupied < window:
        return True
    return occupied < window + scouts_at_most and quiet_s >= scout_after_s
