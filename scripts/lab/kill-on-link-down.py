#!/usr/bin/env python3
"""SIGKILL a process the instant one of the named links goes admin-down.

Run inside the links' namespace (`ip netns exec`). The kernel announces a link-down on
rtnetlink (RTNLGRP_LINK) from inside the very write that downs it, and this process waits on
that socket at a SCHED_FIFO priority above the agent's, so it runs as soon as the agent's
write returns: a kill lands microseconds after the link went down, inside any window between
an action and its journal line (issue 13: "a trip lost between link-down and fsync").

Prints {"ready": true} once subscribed; then {"killed": true, "port": P, "t_down_ns": ..,
"t_kill_ns": ..} (CLOCK_MONOTONIC, as process.hrtime) or {"killed": false} after --timeout-ms.
"""
import argparse
import json
import os
import select
import signal
import socket
import struct
import sys
import time

IFF_UP = 0x1
RTM_NEWLINK = 16
RTMGRP_LINK = 0x1
NLMSG_HDR = struct.Struct("=IHHII")
IFINFOMSG = struct.Struct("=BBHiII")


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--pid", type=int, required=True)
    p.add_argument("--ports", required=True, help="comma-separated link names")
    p.add_argument("--delay-us", type=int, default=0, help="spin this long between the link-down and the kill")
    p.add_argument("--timeout-ms", type=int, default=2000)
    p.add_argument("--rt-priority", type=int, default=50)
    a = p.parse_args()
    if a.pid <= 1 or not (0 <= a.delay_us <= 100_000) or not (0 < a.timeout_ms <= 60_000):
        print(json.dumps({"error": "bad arguments"}), flush=True)
        return 2
    names = {socket.if_nametoindex(n): n for n in a.ports.split(",")}
    s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    s.bind((0, RTMGRP_LINK))
    if a.rt_priority:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(a.rt_priority))
    print(json.dumps({"ready": True}), flush=True)
    deadline = time.monotonic() + a.timeout_ms / 1000
    while True:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([s], [], [], left)[0]:
            print(json.dumps({"killed": False}), flush=True)
            return 0
        data = s.recv(1 << 16)
        off = 0
        while off + NLMSG_HDR.size <= len(data):
            length, typ, _, _, _ = NLMSG_HDR.unpack_from(data, off)
            if length < NLMSG_HDR.size:
                break
            if typ == RTM_NEWLINK and length >= NLMSG_HDR.size + IFINFOMSG.size:
                _, _, _, index, flags, _ = IFINFOMSG.unpack_from(data, off + NLMSG_HDR.size)
                if index in names and not flags & IFF_UP:
                    t_down = time.monotonic_ns()
                    while time.monotonic_ns() - t_down < a.delay_us * 1000:
                        pass
                    t_kill = time.monotonic_ns()
                    os.kill(a.pid, signal.SIGKILL)
                    print(json.dumps({"killed": True, "port": names[index], "t_down_ns": t_down, "t_kill_ns": t_kill}), flush=True)
                    return 0
            off += (length + 3) & ~3


if __name__ == "__main__":
    sys.exit(main())
