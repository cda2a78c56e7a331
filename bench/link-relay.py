#!/usr/bin/env python3
# A long, lossy link in user space (the kernel here has no sch_netem): frames read from one
# interface with an AF_PACKET socket go out of the other after random loss, a drop-tail queue
# drained at the link's rate, and a fixed one-way delay; the same independently both ways.
# Run by bench/link.ts in a namespace of its own between two veth pairs. Needs root.
#
#   python3 bench/link-relay.py IFACE_A IFACE_B [--mbit 50] [--delay-ms 75] [--loss 0.01]
#                               [--queue-ms 100] [--seed 1]
#
# Prints "ready" once both sockets are bound, one JSON line of counters on SIGUSR1, and again
# when it ends on SIGTERM.
#
#   python3 bench/link-relay.py no-offload IFACE
#
# turns off an end's transmit checksum offload (and with it TSO), as `ethtool -K IFACE tx off`
# would: a veth leaves checksums to be filled in later, and a frame relayed through a packet
# socket would arrive with a wrong one; TSO would hand the relay 64 KB frames.

import argparse
import collections
import ctypes
import fcntl
import json
import random
import select
import signal
import socket
import struct
import sys
import time

ETH_P_ALL = 0x0003
ETH_P_IP = 0x0800
PACKET_OUTGOING = 4
SO_RCVBUFFORCE = 33
SO_SNDBUFFORCE = 32
SIOCETHTOOL = 0x8946
ETHTOOL_STXCSUM = 0x17
ETHTOOL_SGSO = 0x24


def ethtool_set(ifname, cmd, value):
    """The legacy ETHTOOL_S* ioctl: struct ethtool_value { u32 cmd; u32 data; }."""
    value_buf = ctypes.create_string_buffer(struct.pack('II', cmd, value), 8)
    ifreq = struct.pack('16sP16x', ifname.encode(), ctypes.addressof(value_buf))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        fcntl.ioctl(s.fileno(), SIOCETHTOOL, ifreq)


def parse():
    p = argparse.ArgumentParser()
    p.add_argument('a')
    p.add_argument('b')
    p.add_argument('--mbit', type=float, default=50.0)
    p.add_argument('--delay-ms', type=float, default=75.0)
    p.add_argument('--loss', type=float, default=0.01)
    p.add_argument('--queue-ms', type=float, default=100.0)
    p.add_argument('--seed', type=int, default=1)
    return p.parse_args()


def bound(name):
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    # Room for bursts, so that no frame is lost before the relay reads it (only on purpose).
    s.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 16 << 20)
    s.setsockopt(socket.SOL_SOCKET, SO_SNDBUFFORCE, 16 << 20)
    s.bind((name, 0))
    s.setblocking(False)
    return s


class Direction:
    """One way of the link: loss, then a queue served at the link's rate, then the delay."""

    def __init__(self, out, o, rng):
        self.out = out
        self.byte_s = o.mbit * 1e6 / 8
        self.delay = o.delay_ms / 1000
        self.queue = o.queue_ms / 1000
        self.loss = o.loss
        self.rng = rng
        self.busy_until = 0.0
        self.line = collections.deque()  # (due, frame), due in order
        self.c = {'frames': 0, 'bytes': 0, 'lost': 0, 'queue_drops': 0, 'biggest': 0}

    def arrive(self, frame, now):
        c = self.c
        c['biggest'] = max(c['biggest'], len(frame))
        # Only IPv4 is lost: ARP must get through for the link to come up at all.
        is_ip = len(frame) >= 14 and int.from_bytes(frame[12:14], 'big') == ETH_P_IP
        if is_ip and self.rng.random() < self.loss:
            c['lost'] += 1
            return
        start = self.busy_until if self.busy_until > now else now
        if start - now > self.queue:
            c['queue_drops'] += 1
            return
        # Ethernet preamble, frame check and gap: 24 bytes on the wire besides the frame.
        self.busy_until = start + (len(frame) + 24) / self.byte_s
        self.line.append((self.busy_until + self.delay, frame))

    def send_due(self, now):
        line = self.line
        while line and line[0][0] <= now:
            frame = line.popleft()[1]
            try:
                self.out.send(frame)
                self.c['frames'] += 1
                self.c['bytes'] += len(frame)
            except (BlockingIOError, OSError):
                self.c['queue_drops'] += 1
        return line[0][0] if line else None


def main():
    o = parse()
    rng = random.Random(o.seed)
    sa, sb = bound(o.a), bound(o.b)
    ways = {sa.fileno(): (sa, Direction(sb, o, rng)), sb.fileno(): (sb, Direction(sa, o, rng))}
    a_to_b = ways[sa.fileno()][1]
    b_to_a = ways[sb.fileno()][1]
    stopping = []
    snapshots = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(1))
    signal.signal(signal.SIGINT, lambda *_: stopping.append(1))
    signal.signal(signal.SIGUSR1, lambda *_: snapshots.append(1))
    poller = select.epoll()
    for fd in ways:
        poller.register(fd, select.EPOLLIN)
    print('ready', flush=True)
    clock = time.monotonic
    counters = lambda: json.dumps({'a_to_b': a_to_b.c, 'b_to_a': b_to_a.c}) + '\n'
    while not stopping:
        if snapshots:
            snapshots.clear()
            sys.stdout.write(counters())
            sys.stdout.flush()
        now = clock()
        nexts = [d for d in (a_to_b.send_due(now), b_to_a.send_due(now)) if d is not None]
        timeout = max(0.0, min(nexts) - clock()) if nexts else 0.5
        try:
            events = poller.poll(timeout)
        except InterruptedError:
            continue
        now = clock()
        for fd, _ in events:
            sock, way = ways[fd]
            for _ in range(512):
                try:
                    frame, addr = sock.recvfrom(65536)
                except BlockingIOError:
                    break
                except OSError:
                    stopping.append(1)  # the interface went away: the bench is tearing down
                    break
                if addr[2] == PACKET_OUTGOING:
                    continue  # what this relay itself sent out of the interface
                way.arrive(frame, now)
    sys.stdout.write(counters())
    sys.stdout.flush()


if __name__ == '__main__':
    if len(sys.argv) == 3 and sys.argv[1] == 'no-offload':
        ethtool_set(sys.argv[2], ETHTOOL_STXCSUM, 0)
        ethtool_set(sys.argv[2], ETHTOOL_SGSO, 0)
    else:
        main()
