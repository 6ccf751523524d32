"""TCP forwarder from loopback into the lab's network namespace (how the drill's probes reach the guest).

The lab binds a listening socket on 127.0.0.1:0 in the caller's network namespace, then starts this
program *inside* the lab namespace (`ip netns exec`) with that socket inherited as `--listen-fd`.
A socket stays in the namespace it was created in, so this process accepts loopback clients outside
and connects to the guest inside. Each client connection gets its own guest connection, so HTTP
keep-alive from the probe is kept end to end. SIGTERM ends it.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import socket


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        try:
            writer.close()
        except (ConnectionError, OSError):
            pass


async def _serve(listen_fd: int, host: str, port: int, connect_timeout_s: float) -> None:
    listener = socket.socket(fileno=listen_fd)
    listener.setblocking(False)

    async def handle(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            guest_r, guest_w = await asyncio.wait_for(asyncio.open_connection(host, port), connect_timeout_s)
        except (OSError, asyncio.TimeoutError):
            client_w.close()
            return
        for w in (client_w, guest_w):
            sock = w.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        await asyncio.gather(_pipe(client_r, guest_w), _pipe(guest_r, client_w))

    server = await asyncio.start_server(handle, sock=listener)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    async with server:
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--listen-fd", type=int, required=True)
    parser.add_argument("--target", required=True, help="HOST:PORT inside the lab namespace")
    parser.add_argument("--connect-timeout-s", type=float, required=True)
    args = parser.parse_args()
    host, _, port = args.target.rpartition(":")
    asyncio.run(_serve(args.listen_fd, host, int(port), args.connect_timeout_s))


if __name__ == "__main__":
    main()
