#!/usr/bin/env python3
"""A stand-in guest on macvtap NICs: reads and writes the /dev/tapN character devices of macvtap
interfaces, as QEMU does for a libvirt `<interface type='direct'>` (macvtap) NIC.

Run as: ip netns exec NS python3 tapvm.py --dir DIR --tap macvtap0 [--tap macvtap1]
            [--mode bridge|guest|echo|send] [--duration S] [--count N] [--pps R]

  bridge: the guest bridges its NICs: every frame read from one tap is written to the others
          (a VM with br0 over eth0/eth1 inside; with each NIC on another host uplink into the
          same switch, that closes a loop through the switch). With --pps R > 0 it forwards at
          most R frames/s, holding each frame until its turn (a guest on a slow vCPU or a
          rate-limited NIC: a ring circles at that rate, under the agent's flood threshold).
  guest:  an ordinary guest: reads and drops what arrives; forwards nothing.
  echo:   an ordinary guest that answers: every broadcast read on a tap is answered on that tap
          with one broadcast from the tap's own MAC (as a DHCP server answers DISCOVERs with
          broadcast OFFERs); forwards nothing between taps.
  send:   a guest SENDING broadcast from its own MAC by its first tap (an ARP request frame,
          as a guest flooding or streaming does): --count frames (0: until the deadline), at
          --pps frames/s (0: as fast as it can write: a flooding guest); reads and drops what
          arrives on every tap. Prints {"sent": N} when done sending and keeps reading until
          the deadline or stdin EOF.

The character device of a macvtap is /dev/tap<ifindex> on a host with udev; this lab makes its
own node (mknod, major:minor from /sys/class/net/NAME/macvtap/tapIFINDEX/dev) inside DIR, a
private directory the caller created, and removes it at exit. A tap file is opened with
IFF_VNET_HDR set (the kernel's default for macvtap): each read starts with a virtio-net header,
and a frame read from one tap is written with its header unchanged to the other.

Prints one JSON line {"ready": true} once every tap is open, and at exit {"forwarded", "read"}.
Ends at its deadline (<= 600 s) or on SIGTERM/SIGINT/stdin EOF. Refuses to run outside a named
network namespace (`ip netns add`): lab traffic must never leave the lab.
"""
import argparse
import json
import os
import re
import select
import signal
import stat
import sys
import time

# The same lab-namespace check as send.py (this directory is on sys.path: the script's own).
from send import current_lab_netns  # noqa: E402

MAX_DURATION_S = 600.0
IFNAME = re.compile(r"^[A-Za-z0-9_.:@-]{1,15}$")
DEVNUM = re.compile(r"^(\d+):(\d+)$")
BATCH = 64
VNET_HDR = 10  # sizeof(struct virtio_net_hdr), the tap's default vnet_hdr_sz
stop = False


def fail(msg, code=2):
    print(f"tapvm.py: {msg}", file=sys.stderr)
    sys.exit(code)


def in_lab_netns():
    netns = current_lab_netns()
    return netns is not None and netns.startswith("sb")


def tap_node(dirpath, name):
    """mknod DIR/NAME for macvtap NAME's character device; returns its path."""
    if not IFNAME.match(name):
        fail(f"invalid interface name {name!r}")
    ifindex = open(f"/sys/class/net/{name}/ifindex").read().strip()
    if not ifindex.isdigit():
        fail(f"{name}: no ifindex")
    dev = open(f"/sys/class/net/{name}/macvtap/tap{ifindex}/dev").read().strip()
    m = DEVNUM.match(dev)
    if not m:
        fail(f"{name}: unexpected dev {dev!r}")
    path = os.path.join(dirpath, name)
    os.mknod(path, 0o600 | stat.S_IFCHR, os.makedev(int(m.group(1)), int(m.group(2))))
    return path


def on_signal(_s, _f):
    global stop
    stop = True


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", required=True)
    ap.add_argument("--tap", action="append", required=True)
    ap.add_argument("--mode", choices=("bridge", "guest", "echo", "send"), default="bridge")
    ap.add_argument("--duration", type=float, default=60.0)
    ap.add_argument("--count", type=int, default=0)
    ap.add_argument("--pps", type=float, default=0.0)
    a = ap.parse_args()
    if not in_lab_netns():
        fail("not inside an sb* lab network namespace; refusing")
    if not (0 < a.duration <= MAX_DURATION_S):
        fail(f"--duration must be in (0, {MAX_DURATION_S}]")
    if not os.path.isdir(a.dir) or os.listdir(a.dir):
        fail("--dir must be an existing, empty directory")
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    nodes, fds, macs = [], [], {}
    read = forwarded = 0
    try:
        for t in a.tap:
            p = tap_node(a.dir, t)
            nodes.append(p)
            fds.append(os.open(p, os.O_RDWR | os.O_NONBLOCK))
            macs[fds[-1]] = bytes.fromhex(open(f"/sys/class/net/{t}/address").read().strip().replace(":", ""))
        poll = select.poll()
        for fd in fds:
            poll.register(fd, select.POLLIN)
        poll.register(sys.stdin.fileno(), select.POLLIN)
        print(json.dumps({"ready": True}), flush=True)
        deadline = time.monotonic() + a.duration
        pace = Pacer(a.pps if a.mode == "bridge" else 0)
        if a.mode == "send":
            n = send(fds[0], macs[fds[0]], a.count, a.pps, deadline)
            print(json.dumps({"sent": n}), flush=True)
        while not stop and time.monotonic() < deadline:
            for fd, ev in poll.poll(100):
                if fd == sys.stdin.fileno():
                    if not os.read(fd, 4096):
                        return finish(read, forwarded)
                    continue
                for _ in range(BATCH):
                    try:
                        buf = os.read(fd, 65536)
                    except BlockingIOError:
                        break
                    except OSError:
                        break  # the interface went down (EIO on a downed macvtap is not fatal)
                    read += 1
                    if a.mode == "echo":
                        answer(fd, buf, macs[fd])
                        forwarded += 1
                        continue
                    if a.mode != "bridge":
                        continue
                    pace.wait()
                    for out in fds:
                        if out == fd:
                            continue
                        try:
                            os.write(out, buf)
                            forwarded += 1
                        except OSError:
                            pass  # queue full or the other NIC down: a guest bridge drops too
        finish(read, forwarded)
    finally:
        for fd in fds:
            os.close(fd)
        for p in nodes:
            try:
                os.unlink(p)
            except OSError:
                pass


class Pacer:
    """At most `pps` frames/s (0: no limit): wait() holds the caller until the next frame's turn.
    A frame is held, never dropped: one frame circling a ring keeps circling, at this rate."""

    def __init__(self, pps):
        self.gap = 1.0 / pps if pps > 0 else 0.0
        self.next = 0.0

    def wait(self):
        if self.gap == 0.0:
            return
        now = time.monotonic()
        # No credit for idle time: after a pause the next frame goes at once, then one per gap.
        self.next = max(self.next, now)
        while not stop and time.monotonic() < self.next:
            time.sleep(0.00005)
        self.next += self.gap


def send(fd, mac, count, pps, deadline):
    """Broadcast ARP requests from `mac` by tap fd: `count` (0: until the deadline or a stop), paced
    to `pps` per 1 ms slot (0: as fast as writes go). Returns the frames written."""
    arp = bytes.fromhex("0001080006040001") + mac + bytes([10, 9, 0, 1]) + bytes(6) + bytes([10, 9, 0, 2])
    frame = bytes(VNET_HDR) + b"\xff" * 6 + mac + b"\x08\x06" + arp + bytes(18)
    sent = 0
    t0 = time.monotonic()
    while not stop and (count == 0 or sent < count):
        now = time.monotonic()
        if now >= deadline:
            break
        if pps > 0 and sent >= (now - t0) * pps:
            time.sleep(0.0002)
            continue
        try:
            os.write(fd, frame)
            sent += 1
        except OSError:
            pass  # queue full or the NIC down: a guest's driver drops too
    return sent


def answer(fd, buf, mac):
    """One broadcast from `mac` for a broadcast read (buf: virtio-net header + frame)."""
    frame = buf[VNET_HDR:]
    if len(frame) < 14 or frame[:6] != b"\xff" * 6:
        return
    try:
        os.write(fd, bytes(VNET_HDR) + b"\xff" * 6 + mac + frame[12:])
    except OSError:
        pass


def finish(read, forwarded):
    print(json.dumps({"read": read, "forwarded": forwarded}), flush=True)


if __name__ == "__main__":
    main()
