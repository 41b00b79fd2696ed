"""Traffic that moves the counters a poll reads, on a bench HostLab (bench/hostlab.py).

Sockets are opened in three network namespaces (setns between them):

- the client ("outside"): ``rate`` TCP connections a second to the host's
  published ports 10000+i, round robin over the containers: each is DNATed by
  the nat DOCKER chain, accepted by the filter DOCKER chain and answered with a
  RST by the container, so rule counters and the container's veth move;
- the host: ten times a second a UDP broadcast into every bridge, which every
  veth on it forwards: every interface counter moves;
- one container: ten times a second a connection to a container on another
  network, which Docker's isolation rules drop.

Prints "ready" once its sockets are set up, then runs until terminated.
"""

from __future__ import annotations

import argparse
import ctypes
import errno
import os
import signal
import socket
import sys
import time

from bench.hostlab import BRIDGES, HOST_EXT, container_ip, published_port

CLONE_NEWNET = 0x40000000
TICK = 0.01


def setns(path: str) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(path, os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns {path}: {os.strerror(err)}")
    finally:
        os.close(fd)


def connect_and_drop(family_sock: socket.socket, addr: tuple[str, int]) -> None:
    """Send a SYN from a fresh socket and close it: the reply (RST) needs no socket."""
    family_sock.setblocking(False)
    err = family_sock.connect_ex(addr)
    if err not in (0, errno.EINPROGRESS):
        raise OSError(err, f"connect {addr}: {os.strerror(err)}")
    family_sock.close()


def main() -> None:
    ap = argparse.ArgumentParser(prog="traffic", description=__doc__.splitlines()[0])
    ap.add_argument("--host", required=True, help="the lab host's netns path")
    ap.add_argument("--client", required=True, help="the outside client's netns path")
    ap.add_argument("--peer", required=True, help="a container's netns path (bridge 0)")
    ap.add_argument("--containers", type=int, required=True)
    ap.add_argument("--rate", type=int, default=200, help="new connections a second")
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))

    setns(args.host)
    bcast = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    bcast.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
    targets = [(f"10.{100 + b}.255.255", 9) for b in range(BRIDGES)]
    setns(args.peer)  # a socket per connection, so switch per use: remember the path
    setns(args.client)
    print("ready", flush=True)

    per_tick = args.rate * TICK
    due = 0.0
    i = tick = 0
    next_at = time.monotonic()
    while True:
        due += per_tick
        while due >= 1:
            due -= 1
            connect_and_drop(
                socket.socket(socket.AF_INET, socket.SOCK_STREAM),
                (HOST_EXT, published_port(i)),
            )
            i = (i + 1) % args.containers
        if tick % 10 == 0:
            for target in targets:
                bcast.sendto(b"netpath-bench", target)
            setns(args.peer)
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            setns(args.client)
            # container 1 is on bridge 1: Docker's isolation drops this
            connect_and_drop(s, (container_ip(1), 80))
        tick += 1
        next_at += TICK
        delay = next_at - time.monotonic()
        if delay > 0:
            time.sleep(delay)  # pacing the generator, not synchronisation
        else:
            next_at = time.monotonic()


if __name__ == "__main__":
    main()
