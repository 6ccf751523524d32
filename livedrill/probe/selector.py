"""An event loop whose timers fire to the microsecond, for the probe's open-loop scheduler.

asyncio's epoll selector rounds every timeout up to a whole millisecond (epoll_wait takes milliseconds),
so at 1,000 probes/s each send could leave up to 1 ms late and sends bunched up: the probe sampled the
target at uneven intervals of 0-2 ms, and a gap's start could sit up to two periods before a freeze.
Here the loop waits on the epoll descriptor with select(), whose timeout has microseconds, then
collects the ready events from epoll without blocking. Sockets stay in epoll (no FD_SETSIZE limit on
them); only the epoll descriptor itself must be below FD_SETSIZE, otherwise the plain rounding applies.
"""

from __future__ import annotations

import asyncio
import select
import selectors

FD_SETSIZE = 1024


class MicrosecondEpollSelector(selectors.EpollSelector):
    def select(self, timeout: float | None = None):
        epoll_fd = self.fileno()
        if timeout is not None and timeout > 0 and epoll_fd < FD_SETSIZE:
            try:
                ready, _, _ = select.select([epoll_fd], [], [], timeout)
            except InterruptedError:
                ready = [epoll_fd]  # a signal: collect whatever is ready, like epoll_wait would
            if not ready:
                return []
            timeout = 0
        return super().select(timeout)


def new_probe_loop() -> asyncio.AbstractEventLoop:
    return asyncio.SelectorEventLoop(MicrosecondEpollSelector())
