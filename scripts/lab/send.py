#!/usr/bin/env python3
"""Send Ethernet frames from one interface of a lab namespace (AF_PACKET, stdlib only).

Run as: ip netns exec NS python3 send.py IFACE --count N [--pps R] [--duration S]
            [--kind broadcast|multicast|unicast|arp] [--src-mac M] [--dst-mac M] [--random-src]
            [--payload-tag TAG] [--size BYTES] [--vlan VID]

Prints one JSON line {"sent", "t_first_ns", "t_last_ns"} with CLOCK_MONOTONIC times, the same
clock as Node's process.hrtime.bigint(), so senders and observers share one time axis.

Refuses to run outside a named network namespace (`ip netns add`): lab traffic must never
leave the lab.
"""
import argparse
import errno
import json
import os
import random
import re
import socket
import struct
import sys
import time

MAX_DURATION_S = 10.0
MAX_COUNT = 5_000_000
ETHERTYPE_LOCAL = 0x88B5  # IEEE 802 local experimental ethertype 1
ETHERTYPE_ARP = 0x0806
IFNAME = re.compile(r"^[A-Za-z0-9_.:@-]{1,15}$")
MAC = re.compile(r"^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$")
DST = {
    "broadcast": b"\xff" * 6,
    "arp": b"\xff" * 6,
    # An IPv4-mapped group (239.119.0.1): bridges without snooping flood it like broadcast.
    "multicast": bytes.fromhex("01005e770001"),
    # Locally administered and owned by nobody: an unknown unicast, flooded by every bridge.
    "unicast": bytes.fromhex("027700ffff01"),
    # IPv6 all-nodes (an unsolicited Neighbor Advertisement, as a host announces itself): 33:33:..
    # multicast, flooded by bridges without snooping.
    "ipv6mc": bytes.fromhex("333300000001"),
}
ETHERTYPE_IPV6 = 0x86DD
ETHERTYPE_VLAN = 0x8100
MAX_FRAME = 9000
MIN_FRAME = 60  # Ethernet minimum without FCS; veth would carry shorter frames, real links not.
SPIN_BATCH = 32
LIVE_LAG_NS = 5_000_000  # --live: how late a frame may still be sent
LIVE_NAP_NS = 500_000  # --live: shortest sleep between batches (due frames go out together)
now_ns = lambda: time.clock_gettime_ns(time.CLOCK_MONOTONIC)  # noqa: E731


def fail(msg, code=2):
    print(f"send.py: {msg}", file=sys.stderr)
    sys.exit(code)


def current_lab_netns():
    """Name of the named netns this process is in, or None (e.g. the host's own netns)."""
    me = os.stat("/proc/self/ns/net")
    for d in ("/run/netns", "/var/run/netns"):
        try:
            names = os.listdir(d)
        except FileNotFoundError:
            continue
        for n in names:
            try:
                st = os.stat(os.path.join(d, n))
            except OSError:
                continue
            if (st.st_dev, st.st_ino) == (me.st_dev, me.st_ino):
                return n
    return None


def parse_mac(s):
    if not MAC.match(s):
        fail(f"bad MAC {s!r}")
    return bytes.fromhex(s.replace(":", ""))


def random_mac(rng):
    b = bytearray(rng.getrandbits(8) for _ in range(6))
    b[0] = (b[0] & 0xFC) | 0x02  # unicast, locally administered
    return bytes(b)


def ipv6_na(src):
    """IPv6 header + ICMPv6 Neighbor Advertisement from fe80::(src) to ff02::1 (checksum left 0:
    bridges forward it as is, and every lab namespace has IPv6 disabled)."""
    ll = b"\xfe\x80" + b"\x00" * 6 + src[:3] + b"\xff\xfe" + src[3:]
    icmp = struct.pack("!BBHI", 136, 0, 0, 0x20000000) + ll + struct.pack("!BB", 2, 1) + src
    return struct.pack("!IHBB", 0x60000000, len(icmp), 58, 255) + ll + bytes.fromhex("ff020000000000000000000000000001") + icmp


def build_frame(kind, dst, src, tag, seq, size=MIN_FRAME, vlan=None):
    vtag = struct.pack("!HH", ETHERTYPE_VLAN, vlan) if vlan is not None else b""
    if kind == "ipv6mc":
        frame = dst + src + vtag + struct.pack("!H", ETHERTYPE_IPV6) + ipv6_na(src)
    elif kind == "arp":
        # ARP request "who has 10.77.0.254 tell 10.77.0.253": ARP-like broadcast noise.
        body = struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, 1, src,
                           bytes([10, 77, 0, 253]), b"\x00" * 6, bytes([10, 77, 0, 254]))
        frame = dst + src + vtag + struct.pack("!H", ETHERTYPE_ARP) + body
    else:
        frame = dst + src + vtag + struct.pack("!H", ETHERTYPE_LOCAL) + tag + struct.pack("!Q", seq)
    if len(frame) < size:
        frame += b"\x00" * (size - len(frame))
    return frame


def send_one(sock, frame):
    # A full veth backlog answers ENOBUFS/EAGAIN; yield briefly and retry so "sent" is exact.
    while True:
        try:
            sock.send(frame)
            return
        except OSError as e:
            if e.errno not in (errno.ENOBUFS, errno.EAGAIN):
                raise
            time.sleep(0.0001)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("iface")
    p.add_argument("--count", type=int, default=None, help=f"frames to send (<= {MAX_COUNT})")
    p.add_argument("--pps", type=float, default=None, help="paced rate; as fast as possible when absent")
    p.add_argument("--duration", type=float, default=None, help=f"seconds (<= {MAX_DURATION_S})")
    p.add_argument("--kind", choices=sorted(DST), default="broadcast")
    p.add_argument("--src-mac", default=None)
    p.add_argument("--dst-mac", default=None, help="unicast only: this destination instead of a MAC nobody owns")
    p.add_argument("--random-src", action="store_true", help="a new random source MAC per frame")
    p.add_argument("--payload-tag", default="stormbreaker-lab")
    p.add_argument("--size", type=int, default=MIN_FRAME, help=f"frame length without FCS ({MIN_FRAME}..{MAX_FRAME})")
    p.add_argument("--vlan", type=int, default=None, help="an 802.1Q tag with this VLAN id (1..4094)")
    p.add_argument("--live", action="store_true",
                   help="paced only: frames more than %d ms late are dropped, not sent in a burst (a live feed: "
                        "a stalled python must not send faster than --pps to catch up)" % (LIVE_LAG_NS // 1_000_000))
    p.add_argument("--armed", action="store_true",
                   help="print {\"ready\": true} once the socket is open, send when a line arrives on stdin "
                        "(EOF: send nothing): the frame leaves within a pipe wake-up, not a python start")
    a = p.parse_args()

    if not IFNAME.match(a.iface):
        fail(f"bad interface name {a.iface!r}")
    if a.count is None and a.duration is None:
        fail("give --count and/or --duration")
    if a.count is not None and not (1 <= a.count <= MAX_COUNT):
        fail(f"--count must be in 1..{MAX_COUNT}")
    if a.duration is not None and not (0 < a.duration <= MAX_DURATION_S):
        fail(f"--duration must be in (0, {MAX_DURATION_S}]")
    if a.pps is not None and not (0 < a.pps <= 10_000_000):
        fail("--pps must be in (0, 1e7]")
    if not (MIN_FRAME <= a.size <= MAX_FRAME):
        fail(f"--size must be in {MIN_FRAME}..{MAX_FRAME}")
    if a.vlan is not None and not (1 <= a.vlan <= 4094):
        fail("--vlan must be in 1..4094")
    if a.random_src and a.src_mac:
        fail("--random-src and --src-mac are exclusive")
    if a.live and a.pps is None:
        fail("--live needs --pps")
    if a.dst_mac and a.kind != "unicast":
        fail("--dst-mac needs --kind unicast")
    tag = a.payload_tag.encode()[:32]
    netns = current_lab_netns()
    if netns is None:
        fail("refusing to send: not inside a named network namespace (run via `ip netns exec`)")

    count = a.count if a.count is not None else MAX_COUNT
    if a.duration is not None and a.pps is not None:
        count = min(count, max(1, int(round(a.pps * a.duration))))

    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    sock.bind((a.iface, 0))
    own = sock.getsockname()[4]
    rng = random.Random()
    src = parse_mac(a.src_mac) if a.src_mac else own
    dst = parse_mac(a.dst_mac) if a.dst_mac else DST[a.kind]
    if a.dst_mac and dst[0] & 1:
        fail("--dst-mac must be a unicast MAC")
    fixed = None if a.random_src else [build_frame(a.kind, dst, src, tag, 0, a.size, a.vlan)]

    if a.armed:
        print(json.dumps({"ready": True}), flush=True)
        if not sys.stdin.readline():
            sock.close()
            print(json.dumps({"sent": 0, "t_first_ns": 0, "t_last_ns": 0, "netns": netns}), flush=True)
            return
    period_ns = int(1e9 / a.pps) if a.pps else 0
    sent = 0
    dropped = 0
    t_first = t_last = 0
    t0 = now_ns()
    # Even a paced run stops at its duration (plus one period, so that R*S frames fit): a slow
    # sender must not outlive its slot.
    deadline = t0 + int((a.duration if a.duration is not None else MAX_DURATION_S) * 1e9) + period_ns
    while sent < count:
        t = now_ns()
        if t >= deadline:
            break
        if period_ns:
            due = t0 + sent * period_ns
            ahead = due - t
            if a.live and ahead > 0:
                # A live feed sleeps rather than spins (what is due then goes out in one small
                # batch): a spinning sender takes a whole core, and on a busy machine the stalls
                # it then suffers are what a live feed would drop.
                time.sleep(max(ahead, LIVE_NAP_NS) / 1e9)
                continue
            if ahead > 2_000_000:
                time.sleep((ahead - 1_000_000) / 1e9)  # coarse sleep, then spin for accuracy
                continue
            if ahead > 0:
                continue  # busy-wait on the monotonic clock
            if a.live and -ahead > LIVE_LAG_NS:
                # Late by more than the lag a live feed allows: skip those frames.
                skip = (-ahead - LIVE_LAG_NS) // period_ns + 1
                t0 += skip * period_ns
                dropped += skip
                count = max(sent, count - skip)
                continue
            # Send what is due now (at most a small batch) so pacing never bursts far.
            n = min(count - sent, SPIN_BATCH, 1 + (t - due) // period_ns)
        else:
            n = min(count - sent, SPIN_BATCH)
        for _ in range(n):
            frame = build_frame(a.kind, dst, random_mac(rng), tag, sent, a.size, a.vlan) if fixed is None else fixed[0]
            if sent == 0:
                t_first = now_ns()  # before the send: the frame cannot arrive earlier
            send_one(sock, frame)
            sent += 1
        t_last = now_ns()
    sock.close()
    print(json.dumps({"sent": sent, "dropped_late": dropped, "t_first_ns": t_first, "t_last_ns": t_last, "netns": netns}), flush=True)


if __name__ == "__main__":
    main()
