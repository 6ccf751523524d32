"""The probe loop's selector: sub-millisecond timeouts reach the kernel unrounded, and I/O still works."""

from __future__ import annotations

import asyncio
import socket

from livedrill.probe import selector as selector_module
from livedrill.probe.selector import MicrosecondEpollSelector, new_probe_loop


def test_a_sub_millisecond_timeout_is_passed_unrounded_and_epoll_is_then_only_polled(monkeypatch):
    waited: list = []
    polled: list = []
    real_select = selector_module.select.select

    def recording_select(r, w, x, timeout):
        waited.append(timeout)
        return real_select(r, w, x, timeout)

    monkeypatch.setattr(selector_module.select, "select", recording_select)
    sel = MicrosecondEpollSelector()
    real_poll = sel._selector.poll
    sel._selector = _PollRecorder(real_poll, polled, sel._selector)
    try:
        assert sel.select(0.0003) == []
    finally:
        sel.close()
    assert waited == [0.0003]  # epoll alone would have waited a whole millisecond
    assert polled == []  # nothing ready: epoll was not even asked


class _PollRecorder:
    def __init__(self, poll, record, epoll):
        self._poll, self._record, self._epoll = poll, record, epoll

    def poll(self, timeout=-1, maxevents=-1):
        self._record.append(timeout)
        return self._poll(timeout, maxevents)

    def __getattr__(self, name):
        return getattr(self._epoll, name)


def test_the_probe_loop_serves_sockets_and_timers():
    async def scenario():
        loop = asyncio.get_running_loop()
        a, b = socket.socketpair()
        a.setblocking(False)
        b.setblocking(False)
        order = []
        loop.call_later(0.0004, order.append, "timer")
        await loop.sock_sendall(a, b"ping")
        got = await loop.sock_recv(b, 4)
        await asyncio.sleep(0.002)
        a.close()
        b.close()
        return got, order

    with asyncio.Runner(loop_factory=new_probe_loop) as runner:
        got, order = runner.run(scenario())
    assert got == b"ping" and order == ["timer"]


def test_an_epoll_descriptor_beyond_fd_setsize_falls_back_to_plain_epoll(monkeypatch):
    monkeypatch.setattr(selector_module, "FD_SETSIZE", 0)
    monkeypatch.setattr(selector_module.select, "select", _must_not_be_called)
    with asyncio.Runner(loop_factory=new_probe_loop) as runner:
        runner.run(asyncio.sleep(0.0005))


def _must_not_be_called(*args):
    raise AssertionError("select() must not be used for a descriptor select() cannot take")
