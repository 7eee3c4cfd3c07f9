"""The real system under the stand-in: sysfs counters and link state of the ESXi namespace, the
nft counters that count broadcast and multicast per port, and the ip/bridge commands that act.

Every number printed by a stand-in comes from here. A counter that cannot be read is an error,
never a made-up value.
"""
import json
import os
import select
import signal
import time

from .state import StandinError

SYS = "/sys/class/net"
IFNAME_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.:@-")
NFT_TABLE = ("netdev", "stormbreaker_standin")
TIMEOUT_S = 5

# /sys/class/net/DEV/statistics files used by the stand-ins.
STAT_FILES = (
    "rx_packets", "tx_packets", "rx_bytes", "tx_bytes", "rx_dropped", "tx_dropped", "rx_errors",
    "tx_errors", "rx_length_errors", "rx_over_errors", "rx_crc_errors", "rx_frame_errors",
    "rx_fifo_errors", "rx_missed_errors", "tx_aborted_errors", "tx_carrier_errors",
    "tx_fifo_errors", "tx_heartbeat_errors", "tx_window_errors", "collisions",
)


def check_ifname(dev):
    if not isinstance(dev, str) or not 1 <= len(dev) <= 15 or not set(dev) <= IFNAME_CHARS:
        raise StandinError(f"Error: invalid interface name {dev!r} in inventory")
    return dev


def _read(dev, rel):
    path = os.path.join(SYS, check_ifname(dev), rel)
    try:
        with open(path, encoding="ascii") as f:
            return f.read().strip()
    except OSError as e:
        raise StandinError(f"Error: cannot read {path}: {e.strerror}") from e


def exists(dev):
    return os.path.isdir(os.path.join(SYS, check_ifname(dev)))


def stats(dev):
    return {k: int(_read(dev, f"statistics/{k}")) for k in STAT_FILES}


def admin_up(dev):
    return int(_read(dev, "flags"), 16) & 0x1 == 1  # IFF_UP


def link_up(dev):
    return _read(dev, "operstate") == "up"


def mac(dev):
    return _read(dev, "address")


def mtu(dev):
    return int(_read(dev, "mtu"))


def speed(dev):
    """Mb/s the driver reports (veth: 10000); 0 when the link is down or the driver knows none."""
    if not link_up(dev):
        return 0
    try:
        s = int(_read(dev, "speed"))
    except (StandinError, ValueError):
        return 0
    return s if s > 0 else 0


def bridge_ports(bridge):
    try:
        return sorted(os.listdir(os.path.join(SYS, check_ifname(bridge), "brif")))
    except OSError as e:
        raise StandinError(f"Error: cannot list ports of {bridge}: {e.strerror}") from e


def run(argv):
    """Run a host command (argv, never a shell string) with a timeout; its failure is ours.

    posix_spawn and a select loop rather than the subprocess module: importing subprocess costs
    ~10 ms per call here, a third of a stand-in's whole run."""
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    null = os.open(os.devnull, os.O_RDONLY)
    try:
        pid = os.posix_spawnp(argv[0], argv, os.environ, file_actions=[
            (os.POSIX_SPAWN_DUP2, null, 0), (os.POSIX_SPAWN_DUP2, out_w, 1), (os.POSIX_SPAWN_DUP2, err_w, 2),
        ])
    except OSError as e:
        for fd in (out_r, out_w, err_r, err_w, null):
            os.close(fd)
        raise StandinError(f"Error: {' '.join(argv)}: {e.strerror}") from e
    for fd in (out_w, err_w, null):
        os.close(fd)
    bufs = {out_r: [], err_r: []}
    pending = {out_r, err_r}
    deadline = time.monotonic() + TIMEOUT_S
    while pending:
        left = deadline - time.monotonic()
        ready = select.select(list(pending), [], [], max(0.0, left))[0] if left > 0 else []
        if not ready:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            for fd in pending:
                os.close(fd)
            raise StandinError(f"Error: {' '.join(argv)}: timed out after {TIMEOUT_S} s")
        for fd in ready:
            chunk = os.read(fd, 65536)
            if chunk:
                bufs[fd].append(chunk)
            else:
                pending.discard(fd)
                os.close(fd)
    code = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
    out = b"".join(bufs[out_r]).decode("utf-8", "replace")
    if code != 0:
        err = b"".join(bufs[err_r]).decode("utf-8", "replace").strip()
        raise StandinError(f"Error: {' '.join(argv)} failed (exit {code}): {err}")
    return out


def nft_counters():
    """All named counters of the stand-in's nft table: {name: packets}."""
    fam, table = NFT_TABLE
    out = run(["nft", "-j", "list", "counters", "table", fam, table])
    try:
        items = json.loads(out)["nftables"]
    except (ValueError, KeyError, TypeError) as e:
        raise StandinError(f"Error: unexpected nft output: {e}") from e
    res = {}
    for it in items:
        c = it.get("counter") if isinstance(it, dict) else None
        if c and c.get("table") == table:
            res[c["name"]] = int(c["packets"])
    return res


def counter_names(dev):
    """Names of the four nft counters of one port; must match scripts/lab/esxi/plan.ts."""
    d = check_ifname(dev)
    return {k: f"{d}_{k}" for k in ("rx_bc", "rx_mc", "tx_bc", "tx_mc")}


def port_counters(dev, nft=None):
    """Counters of one port: sysfs plus broadcast/multicast per direction from nft.

    Directions are the host-side interface's: rx = frames the interface received (for a vmnic,
    from the physical switch; for a VM port, from the VM), tx = frames it sent. Multicast
    counts group-addressed frames EXCEPT broadcast (the nft rule for broadcast accepts first).
    """
    s = stats(dev)
    n = nft_counters() if nft is None else nft
    names = counter_names(dev)
    missing = [v for v in names.values() if v not in n]
    if missing:
        raise StandinError(f"Error: nft counters missing for {dev}: {', '.join(missing)}")
    for k, v in names.items():
        s[k] = n[v]
    return s


def link_set(dev, state):
    run(["ip", "link", "set", "dev", check_ifname(dev), state])


# --- port group VLANs (see vlan.py) -----------------------------------------------------------

def apply_nft(script, lab_dir):
    """Run an nft script as one transaction (all of it or nothing), from a file in the lab dir."""
    path = os.path.join(lab_dir, f".nft.{os.getpid()}")
    with open(path, "w", encoding="ascii") as f:
        f.write(script)
    try:
        run(["nft", "-f", path])
    finally:
        os.unlink(path)
