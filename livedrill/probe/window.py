"""How many requests a probe keeps on the wire to one target at once: pure decisions, table-tested.

A target that freezes (stop-and-copy) holds every request already sent to it; when it resumes it must
serve them all before anything else, and that extra time is added to the gap the probe measures. So the
connection pool keeps a window just above what the probe rate really needs: it shrinks to the peak use
of the last period plus one spare connection, and grows by one per answer while probes are waiting (never
while the target is silent). A gateway with high latency needs a wide window and keeps it; a fast local
target needs one or two, and only those are stuck in a freeze. While nothing answers and the window is full,
a probe may go out on a fresh connection of its own (a hunter, `may_hunt`) until one of them reaches the
peer. (Which requests are lost, and the handshakes of hunters, are http1.Http1Pool's: they need the kernel's
view of a connection.)
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


def hunt_interval_s(period_s: float, floor_s: float, periods: float) -> float:
    """The least time between two hunters: a fraction of the probe's period (see SessionConfig.hunt_every_periods),
    never below the floor."""
    return max(floor_s, periods * period_s)


def may_hunt(quiet_s: float, hunt_after_s: float, peer_reached: bool, since_hunt_s: float, hunt_every_s: float) -> bool:
    """May a probe that finds the window full go out on a fresh connection of its own (a hunter)?

    Only while nothing has answered for `hunt_after_s` (`quiet_s` so far), and only until a hunter's
    connection has reached the peer in this silence (`peer_reached`): a peer whose kernel completes the
    handshake is there but not answering, frozen or slow, and more requests would only queue in it. While
    the path loses packets no handshake completes, so a fresh hunter goes out at every probe, and the first
    sent after the path is back is answered at once, instead of waiting for TCP's retransmission timer.
    At most one hunter per `hunt_every_s` (`since_hunt_s` since the last): probes launched together after a
    stall of the prober itself would otherwise all hunt into a target that is merely frozen.
    """
    return quiet_s >= hunt_after_s and not peer_reached and since_hunt_s >= hunt_every_s


def hunt_give_up_s(connect_s: list[float], floor_s: float, factor: float, ceiling_s: float) -> float:
    """How long a hunter waits for its handshake before it counts as lost: `factor` times the slowest recent
    handshake to this target (`connect_s`), within [floor_s, ceiling_s]; the ceiling when none was measured."""
    if not connect_s:
        return ceiling_s
    return min(ceiling_s, max(floor_s, factor * max(connect_s)))
