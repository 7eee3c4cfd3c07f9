"""The stand-in's state: the lab's inventory.json, read by every command and rewritten by the
ones that change something (port group VLAN, vNIC connection).

Concurrency: sshd runs up to MaxSessions commands at once. Writers take an exclusive flock on
inventory.lock for the whole read-apply-write, so two changes never interleave; the file is
replaced by an atomic rename, so readers (who take no lock) see either the old or the new
inventory, never half of one.

Safety: the stand-ins change real links. They refuse to run unless the current network namespace
is the lab's ESXi namespace named in the inventory, so a stray PATH can never make them touch the
machine's own interfaces.
"""
import contextlib
import fcntl
import json
import os

ENV_LAB = "STORMBREAKER_ESXI_LAB"
INVENTORY = "inventory.json"
LOCK = "inventory.lock"


class StandinError(Exception):
    """An error the stand-in reports like the real tool would: message to stderr, exit 1."""


def lab_dir():
    d = os.environ.get(ENV_LAB, "")
    if not d or not os.path.isabs(d) or not os.path.isdir(d):
        raise StandinError(f"Error: stand-in not configured: {ENV_LAB} must name the lab directory")
    return d


def current_netns():
    """Name of the named netns (ip netns add) this process is in, or None."""
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


def load():
    path = os.path.join(lab_dir(), INVENTORY)
    try:
        with open(path, encoding="utf-8") as f:
            inv = json.load(f)
    except (OSError, ValueError) as e:
        raise StandinError(f"Error: cannot read stand-in inventory {path}: {e}") from e
    if inv.get("version") != 1:
        raise StandinError(f"Error: unsupported stand-in inventory version {inv.get('version')!r}")
    ns = current_netns()
    if ns is None or ns != inv.get("netns"):
        raise StandinError(
            f"Error: stand-in refuses to run outside the lab's ESXi namespace "
            f"{inv.get('netns')!r} (running in {ns!r})"
        )
    return inv


def save(inv):
    d = lab_dir()
    path = os.path.join(d, INVENTORY)
    tmp = os.path.join(d, f".{INVENTORY}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(inv, f, indent=2)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


@contextlib.contextmanager
def locked():
    """Exclusive lock for a read-apply-write; yields the freshly loaded inventory."""
    fd = os.open(os.path.join(lab_dir(), LOCK), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield load()
    finally:
        os.close(fd)


# --- lookups (unknown names are errors, never guesses) -------------------------------------------

def nic(inv, name):
    for n in inv["nics"]:
        if n["name"] == name:
            return n
    return None


def portgroup(inv, name):
    for p in inv["portgroups"]:
        if p["name"] == name:
            return p
    return None


def vm_by_vmid(inv, vmid):
    for v in inv["vms"]:
        if str(v["vmid"]) == vmid:
            return v
    return None


def vm_by_world(inv, world_id):
    for v in inv["vms"]:
        if str(v["worldId"]) == world_id:
            return v
    return None


def vswitch(inv, name):
    for s in inv["vswitches"]:
        if s["name"] == name:
            return s
    return None
