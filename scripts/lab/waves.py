#!/usr/bin/env python3
"""Legitimate traffic waves from many MACs for the benign lab tests (AF_PACKET, stdlib only).

Run as: ip netns exec NS python3 waves.py IFACE MODE [options]
  dhcp-clients  --clients N --spread-ms S [--retries R --retry-ms M] [--mac-prefix P]
                N PXE clients booting at once: one DHCPDISCOVER (broadcast, UDP 68->67) per client
                MAC, spread evenly over S ms, then R retries of the whole wave every M ms.
  dhcp-server   --duration S [--limit N] [--batch-ms B [--burst-pps P]]
                A DHCP server: answers each DISCOVER it receives with a broadcast OFFER (the
                broadcast flag of a PXE ROM), for S seconds or until it answered N. With B, the
                OFFERs leave in bursts: those queued are sent together every B ms (a busy server),
                at P frames/s (default: as fast as it can).
  rarp          --macs N --spread-ms S [--repeat K] [--mac-prefix P]
                vMotion-style announcements: K RARP requests (ethertype 0x8035, broadcast) from
                each of N MACs, the whole set spread over S ms (what a hypervisor sends for every
                vNIC of a VM that just migrated in).
  garp          same options as rarp: gratuitous ARP requests instead.

Prints one JSON line with what it sent (and received). Refuses to run outside a named network
namespace, like send.py: lab traffic must never leave the lab.
"""
import argparse
import json
import re
import socket
import struct
import sys
import time

# The same lab-namespace check as send.py (this directory is on sys.path: the script's own).
from send import current_lab_netns  # noqa: E402

IFNAME = re.compile(r"^[A-Za-z0-9_.:@-]{1,15}$")
PREFIX = re.compile(r"^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){2}$")
BCAST = b"\xff" * 6
MAX_ITEMS = 65536
MAX_DURATION_S = 10.0
PACKET_OUTGOING = 4
MIN_FRAME = 60
now_ns = lambda: time.clock_gettime_ns(time.CLOCK_MONOTONIC)  # noqa: E731


def fail(msg, code=2):
    print(f"waves.py: {msg}", file=sys.stderr)
    sys.exit(code)


def mac_of(prefix, i):
    return bytes.fromhex(prefix.replace(":", "")) + struct.pack("!I", i)[1:]


def ip_checksum(h):
    s = sum(struct.unpack(f"!{len(h) // 2}H", h))
    s = (s >> 16) + (s & 0xFFFF)
    s += s >> 16
    return (~s) & 0xFFFF


def udp_ip(src_ip, dst_ip, sport, dport, payload):
    udp = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload  # UDP checksum 0: allowed on IPv4
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0x10, 20 + len(udp), 0, 0, 64, 17, 0, src_ip, dst_ip)
    hdr = hdr[:10] + struct.pack("!H", ip_checksum(hdr)) + hdr[12:]
    return hdr + udp


def bootp(op, xid, chaddr, yiaddr, options):
    # RFC 2131: op htype hlen hops xid secs flags ciaddr yiaddr siaddr giaddr chaddr(16) sname(64) file(128)
    head = struct.pack("!BBBBIHH4s4s4s4s", op, 1, 6, 0, xid, 0, 0x8000, b"\0" * 4, yiaddr, b"\0" * 4, b"\0" * 4)
    return head + chaddr + b"\0" * 10 + b"\0" * 192 + b"\x63\x82\x53\x63" + options + b"\xff"


def discover(mac, xid):
    # Option 53 = 1 (DISCOVER), 60 = "PXEClient" (a PXE ROM's vendor class).
    opts = b"\x35\x01\x01" + b"\x3c\x09PXEClient"
    return BCAST + mac + b"\x08\x00" + udp_ip(b"\0" * 4, b"\xff" * 4, 68, 67, bootp(1, xid, mac, b"\0" * 4, opts))


def offer(server_mac, xid, chaddr, n):
    yi = bytes([10, 78, (n >> 8) & 0xFF, n & 0xFF])
    opts = b"\x35\x01\x02" + b"\x36\x04\x0a\x4e\x00\x01" + b"\x33\x04\x00\x00\x0e\x10" + b"\x01\x04\xff\xff\x00\x00"
    return BCAST + server_mac + b"\x08\x00" + udp_ip(b"\x0a\x4e\x00\x01", b"\xff" * 4, 67, 68, bootp(2, xid, chaddr, yi, opts))


def announce(kind, mac):
    if kind == "rarp":
        # RFC 903 "request reverse": what ESXi sends for a migrated vNIC.
        body = struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, 3, mac, b"\0" * 4, mac, b"\0" * 4)
        frame = BCAST + mac + b"\x80\x35" + body
    else:
        ip = bytes([10, 79]) + mac[4:6]
        body = struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, 1, mac, ip, b"\0" * 6, ip)
        frame = BCAST + mac + b"\x08\x06" + body
    return frame + b"\0" * max(0, MIN_FRAME - len(frame))


def paced(sock, frames, spread_ns, t0):
    """Send frames evenly over spread_ns from t0 (coarse sleep, then spin)."""
    n = len(frames)
    period = spread_ns / max(1, n)
    for i, f in enumerate(frames):
        due = t0 + int(i * period)
        while True:
            ahead = due - now_ns()
            if ahead > 2_000_000:
                time.sleep((ahead - 1_000_000) / 1e9)
            elif ahead <= 0:
                break
        while True:
            try:
                sock.send(f)
                break
            except OSError:
                time.sleep(0.0001)  # a full veth backlog (ENOBUFS): retry so the count is exact
    return n


SO_RCVBUFFORCE = 33  # socket.h; root may exceed rmem_max


def run_server(sock, own, duration_s, limit, batch_ms=0.0, burst_pps=0.0):
    # A wave arrives faster than Python answers: queue it rather than drop it.
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 16 << 20)
    except OSError:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 << 20)
    sock.settimeout(0.05 if batch_ms <= 0 else min(0.05, batch_ms / 4000))
    seen = answered = batches = 0
    queued = []
    flushed = now_ns()
    deadline = now_ns() + int(duration_s * 1e9)
    while now_ns() < deadline and answered + len(queued) < limit:
        if queued and now_ns() - flushed >= batch_ms * 1e6:
            paced(sock, queued, int(len(queued) / burst_pps * 1e9) if burst_pps > 0 else 0, now_ns())
            answered += len(queued)
            batches += 1
            queued = []
            flushed = now_ns()
        try:
            data, addr = sock.recvfrom(2048)
        except socket.timeout:
            continue
        if addr[2] == PACKET_OUTGOING or len(data) < 14 + 20 + 8 + 240 or data[12:14] != b"\x08\x00":
            continue
        ihl = (data[14] & 0x0F) * 4
        if data[23] != 17:
            continue
        udp = 14 + ihl
        if struct.unpack("!H", data[udp + 2:udp + 4])[0] != 67:
            continue
        b = udp + 8
        if data[b] != 1 or data[b + 236:b + 240] != b"\x63\x82\x53\x63" or data[b + 240:b + 243] != b"\x35\x01\x01":
            continue
        seen += 1
        xid = struct.unpack("!I", data[b + 4:b + 8])[0]
        if batch_ms > 0:
            queued.append(offer(own, xid, data[b + 28:b + 44], seen))
            continue
        sock.send(offer(own, xid, data[b + 28:b + 44], seen))
        answered += 1
    if queued:
        paced(sock, queued, int(len(queued) / burst_pps * 1e9) if burst_pps > 0 else 0, now_ns())
        answered += len(queued)
        batches += 1
    return {"seen": seen, "answered": answered, "batches": batches}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("iface")
    p.add_argument("mode", choices=["dhcp-clients", "dhcp-server", "rarp", "garp"])
    p.add_argument("--clients", type=int, default=0)
    p.add_argument("--macs", type=int, default=0)
    p.add_argument("--spread-ms", type=float, default=100.0)
    p.add_argument("--retries", type=int, default=0)
    p.add_argument("--retry-ms", type=float, default=1000.0)
    p.add_argument("--repeat", type=int, default=1)
    p.add_argument("--duration", type=float, default=2.0)
    p.add_argument("--limit", type=int, default=MAX_ITEMS * 4)
    p.add_argument("--batch-ms", type=float, default=0.0)
    p.add_argument("--burst-pps", type=float, default=0.0)
    p.add_argument("--mac-prefix", default="02:5b:01")
    a = p.parse_args()
    if not IFNAME.match(a.iface):
        fail(f"bad interface name {a.iface!r}")
    if not PREFIX.match(a.mac_prefix) or int(a.mac_prefix[:2], 16) & 1:
        fail(f"--mac-prefix must be 3 bytes of a unicast MAC, got {a.mac_prefix!r}")
    n = a.clients if a.mode == "dhcp-clients" else a.macs
    if a.mode != "dhcp-server" and not (1 <= n <= MAX_ITEMS):
        fail(f"--clients/--macs must be in 1..{MAX_ITEMS}")
    if not (0 < a.spread_ms <= MAX_DURATION_S * 1000) or not (0 < a.duration <= MAX_DURATION_S):
        fail("--spread-ms and --duration must be positive and at most 10 s")
    if not (0 <= a.retries <= 8) or not (1 <= a.repeat <= 16):
        fail("--retries must be in 0..8 and --repeat in 1..16")
    netns = current_lab_netns()
    if netns is None:
        fail("refusing to send: not inside a named network namespace (run via `ip netns exec`)")

    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
    sock.bind((a.iface, 0))
    own = sock.getsockname()[4]
    t_first = now_ns()
    if a.mode == "dhcp-server":
        if not (0 <= a.batch_ms <= 1000) or not (0 <= a.burst_pps <= 1e6):
            fail("--batch-ms must be in 0..1000 and --burst-pps in 0..1000000")
        out = run_server(sock, own, a.duration, a.limit, a.batch_ms, a.burst_pps)
    elif a.mode == "dhcp-clients":
        macs = [mac_of(a.mac_prefix, i) for i in range(n)]
        sent = 0
        for r in range(a.retries + 1):
            t0 = t_first + int(r * a.retry_ms * 1e6)
            sent += paced(sock, [discover(m, 0x5B000000 + i) for i, m in enumerate(macs)], int(a.spread_ms * 1e6), t0)
        out = {"sent": sent}
    else:
        frames = [announce(a.mode, mac_of(a.mac_prefix, i)) for i in range(n) for _ in range(a.repeat)]
        out = {"sent": paced(sock, frames, int(a.spread_ms * 1e6), t_first)}
    sock.close()
    out.update({"t_first_ns": t_first, "t_last_ns": now_ns(), "netns": netns})
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
