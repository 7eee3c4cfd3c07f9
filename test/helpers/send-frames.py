#!/usr/bin/env python3
"""Send an exact number of Ethernet frames out of one interface (lab namespaces only).

usage: send-frames.py IFACE [--broadcast N] [--multicast M] [--unicast K]
                            [--unicast-dst MAC] [--burst B] [--gap-ms MS]

Frames use EtherType 0x88B5 (IEEE local experimental) so no protocol stack answers
them. Multicast alternates between an IPv4 (01:00:5e:..) and an IPv6 (33:33:..)
group MAC. Unicast goes to --unicast-dst (default: a locally administered address
no one owns, i.e. PACKET_OTHERHOST at the receiver).

The veth qdisc is noqueue, so a frame the peer's backlog drops comes back as
ENOBUFS from send(); we retry such frames, so the printed counts are frames that
really reached the receiving interface. Prints one JSON line with the counts.
"""
import argparse
import errno
import json
import socket
import sys
import time

ETH_TYPE = b"\x88\xb5"
PAYLOAD = b"stormbreaker-lab".ljust(46, b"\0")  # minimum Ethernet payload
MCAST_DSTS = (bytes.fromhex("01005e7f0001"), bytes.fromhex("333300000001"))


def mac(text):
    b = bytes.fromhex(text.replace(":", ""))
    if len(b) != 6:
        raise argparse.ArgumentTypeError(f"bad MAC {text!r}")
    return b


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("iface")
    ap.add_argument("--broadcast", type=int, default=0)
    ap.add_argument("--multicast", type=int, default=0)
    ap.add_argument("--unicast", type=int, default=0)
    ap.add_argument("--unicast-dst", type=mac, default=mac("02:00:00:5b:0b:01"))
    ap.add_argument("--burst", type=int, default=64, help="frames between pauses")
    ap.add_argument("--gap-ms", type=float, default=0.2, help="pause after each burst")
    args = ap.parse_args()

    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    s.bind((args.iface, 0))
    src = s.getsockname()[4][:6]

    plan = [("broadcast", b"\xff" * 6, args.broadcast), ("unicast", args.unicast_dst, args.unicast)]
    sent = {"broadcast": 0, "multicast": 0, "unicast": 0, "retries": 0}
    total = 0

    def send(kind, dst):
        nonlocal total
        frame = dst + src + ETH_TYPE + PAYLOAD
        for _ in range(10000):
            try:
                s.send(frame)
                break
            except OSError as e:
                if e.errno != errno.ENOBUFS:
                    raise
                sent["retries"] += 1
                time.sleep(0.001)
        else:
            raise SystemExit(f"{args.iface}: gave up after repeated ENOBUFS")
        sent[kind] += 1
        total += 1
        if args.burst > 0 and total % args.burst == 0 and args.gap_ms > 0:
            time.sleep(args.gap_ms / 1000)

    for kind, dst, n in plan:
        for _ in range(n):
            send(kind, dst)
    for i in range(args.multicast):
        send("multicast", MCAST_DSTS[i % 2])
    s.close()
    print(json.dumps(sent))


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(130)
