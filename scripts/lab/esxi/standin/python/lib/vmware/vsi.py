"""Stand-in `vmware.vsi` for the stormbreaker ESXi lab: the in-process VSI reader ESXi's own Python
scripts import (`import vmware.vsi as vsi`), answered from the lab namespace's REAL counters.

Node paths and field names follow public ESXi scripts and captured vsish output:
- `vsi.list('/net/pNics/')` and `vsi.get('/net/pNics/%s/stats' % nic)['rxpkt']` / `['txpkt']`
  (a public per-vmnic packet counter script run on ESXi); the other pNIC keys (rxbrdcast,
  rxmltcast, txbrdcast, txmltcast, rxbytes, ...) as in the captured
  `vsish -pe get /net/pNics/vmnicN/stats` (test/fixtures/esxcli/vsish-pnic-stats_intel-mfd.txt).
- `vsi.list('/net/portsets')`, `vsi.list('/net/portsets/<ps>/ports')`,
  `vsi.get('/net/portsets/<ps>/ports/<id>/status')` with `clientName` and `clientType`
  (VMware's `lldpnetmap` in ESXi 6.7 walks these, per issue 12).
- `.../ports/<id>/clientStats` (pktsTxOK, bytesTxOK, droppedTx, pktsRxOK, bytesRxOK, droppedRx)
  and `.../ports/<id>/stats` (pktsTx, pktsTxMulticast, pktsTxBroadcast, pktsRx, pktsRxMulticast,
  pktsRxBroadcast, droppedTx, droppedRx): names as vsish prints them in public write-ups,
  NOT checked against a capture here.
- `clientType` values 3 (vmkernel NIC), 4 (physical NIC), 5 (virtual NIC) follow `net-stats -l`'s
  Type column as commonly shown; unverified, like `portCfg` (the port group) in `status`.

Directions, as the stand-in's esxcli: a vmnic's rx is from the physical switch; a VM or vmk port's
"Rx" is what the vSwitch port received FROM its client (the host-side veth's rx).

Costs: sysfs counters are read through kept-open descriptors (os.pread, a few us). Broadcast and
multicast exist only as nft named counters here (Linux has no per-device broadcast counter), read
through ONE long-lived `nft -j -i` child, at most once per millisecond (a sampler reads all ports
in one go). Real ESXi answers from the vmkernel, with no child process: that cost is unknown here.

Errors: an unknown node raises ValueError (the real module's exception type is not known here).
Safety: refuses to load outside the lab's ESXi namespace (esxi_standin.state.load).
"""
import json
import os
import select
import subprocess
import sys
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(os.path.dirname(os.path.realpath(__file__)), "..", "..", ".."))

from esxi_standin import state  # noqa: E402
from esxi_standin.host import NFT_TABLE, check_ifname  # noqa: E402

CLIENT_VMK, CLIENT_PNIC, CLIENT_VNIC = 3, 4, 5
PNIC_KEYS = (
    ("rxpkt", "rx_packets"), ("txpkt", "tx_packets"), ("rxbytes", "rx_bytes"), ("txbytes", "tx_bytes"),
    ("rxerr", "rx_errors"), ("txerr", "tx_errors"), ("rxdrp", "rx_dropped"), ("txdrp", "tx_dropped"),
)
NFT_KEYS = (("rxbrdcast", "rx_bc"), ("rxmltcast", "rx_mc"), ("txbrdcast", "tx_bc"), ("txmltcast", "tx_mc"))

_inv = None
_inv_mtime = None
_fds = {}
_nft = None
_nft_at = -1.0
_nft_vals = {}


def _inventory():
    """The lab inventory, re-read when its file changes (a reconnect gives a vNIC a new port ID)."""
    global _inv, _inv_mtime
    path = os.path.join(state.lab_dir(), state.INVENTORY)
    m = os.stat(path).st_mtime_ns
    if _inv is None or m != _inv_mtime:
        _inv = state.load()
        _inv_mtime = m
    return _inv


def _sys(dev, name):
    key = (dev, name)
    fd = _fds.get(key)
    if fd is None:
        fd = os.open(f"/sys/class/net/{check_ifname(dev)}/statistics/{name}", os.O_RDONLY)
        _fds[key] = fd
    return int(os.pread(fd, 32, 0))


def _nft_counters():
    """{counter name: packets} from the long-lived `nft -j -i` (one query per ms at most)."""
    global _nft, _nft_at, _nft_vals
    now = time.monotonic()
    if now - _nft_at < 0.001:
        return _nft_vals
    if _nft is None or _nft.poll() is not None:
        _nft = subprocess.Popen(["nft", "-j", "-i"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, bufsize=0)
    fam, table = NFT_TABLE
    _nft.stdin.write(f"list counters table {fam} {table}\n".encode())
    buf, dec, deadline = b"", json.JSONDecoder(), now + 1.0
    while True:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([_nft.stdout], [], [], left)[0]:
            _nft.kill()
            _nft = None
            raise OSError("vsi stand-in: nft did not answer within 1 s")
        chunk = os.read(_nft.stdout.fileno(), 1 << 16)
        if not chunk:
            _nft = None
            raise OSError("vsi stand-in: nft exited")
        buf += chunk
        try:
            doc, _ = dec.raw_decode(buf.decode().lstrip())
            break
        except ValueError:
            continue
    vals = {}
    for it in doc.get("nftables", []):
        c = it.get("counter") if isinstance(it, dict) else None
        if c and c.get("table") == table:
            vals[c["name"]] = int(c["packets"])
    _nft_vals, _nft_at = vals, time.monotonic()
    return vals


def _ports(inv, ps):
    """{port id (str): (dev, clientName, clientType, portgroup)} of a portset (vSwitch)."""
    sw = state.vswitch(inv, ps)
    if sw is None:
        raise ValueError(f"Not found: /net/portsets/{ps}")
    out = {}
    for n in inv["nics"]:
        if n["name"] in sw["uplinks"]:
            out[str(n["uplinkPortId"])] = (n["dev"], n["name"], CLIENT_PNIC, "")
    for k in inv.get("vmknics", []):
        out[str(k["portId"])] = (k["dev"], k["name"], CLIENT_VMK, k["portgroup"])
    for vm in inv["vms"]:
        for i, n in enumerate(vm["nics"]):
            pg = state.portgroup(inv, n["portgroup"])
            if n["connected"] and pg is not None and pg["vswitch"] == ps:
                out[str(n["portId"])] = (n["dev"], f"{vm['name']}.eth{i}", CLIENT_VNIC, n["portgroup"])
    return out


def list(path):  # noqa: A001 - the real module's name
    inv = _inventory()
    parts = [p for p in path.split("/") if p]
    if parts == ["net", "pNics"]:
        return [n["name"] for n in inv["nics"]]
    if parts == ["net", "portsets"]:
        return [s["name"] for s in inv["vswitches"]]
    if len(parts) == 4 and parts[:2] == ["net", "portsets"] and parts[3] == "ports":
        return sorted(_ports(inv, parts[2]))
    raise ValueError(f"Not found: {path}")


def _pnic_stats(inv, name):
    nic = state.nic(inv, name)
    if nic is None:
        raise ValueError(f"Not found: /net/pNics/{name}/stats")
    dev = nic["dev"]
    out = {k: _sys(dev, src) for k, src in PNIC_KEYS}
    nft = _nft_counters()
    for k, src in NFT_KEYS:
        # A driver that counts no broadcast (Broadcom KB 341594's vmnic2) reports 0, as vsish does.
        out[k] = nft[f"{dev}_{src}"] if inv.get("driverReportsBroadcast", True) or "brdcast" not in k else 0
    return out


def _port_node(inv, ps, pid, leaf):
    port = _ports(inv, ps).get(pid)
    if port is None:
        raise ValueError(f"Not found: /net/portsets/{ps}/ports/{pid}")
    dev, name, ctype, pg = port
    if leaf == "status":
        return {"clientName": name, "clientType": ctype, "portCfg": pg}
    rx, tx = _sys(dev, "rx_packets"), _sys(dev, "tx_packets")
    if leaf == "clientStats":
        return {"pktsTxOK": tx, "bytesTxOK": _sys(dev, "tx_bytes"), "droppedTx": _sys(dev, "tx_dropped"),
                "pktsRxOK": rx, "bytesRxOK": _sys(dev, "rx_bytes"), "droppedRx": _sys(dev, "rx_dropped")}
    if leaf == "stats":
        nft = _nft_counters()
        return {"pktsTx": tx, "pktsTxMulticast": nft.get(f"{dev}_tx_mc", 0), "pktsTxBroadcast": nft.get(f"{dev}_tx_bc", 0),
                "pktsRx": rx, "pktsRxMulticast": nft.get(f"{dev}_rx_mc", 0), "pktsRxBroadcast": nft.get(f"{dev}_rx_bc", 0),
                "droppedTx": _sys(dev, "tx_dropped"), "droppedRx": _sys(dev, "rx_dropped")}
    raise ValueError(f"Not found: /net/portsets/{ps}/ports/{pid}/{leaf}")


def get(path):
    inv = _inventory()
    parts = [p for p in path.split("/") if p]
    if len(parts) == 4 and parts[:2] == ["net", "pNics"] and parts[3] == "stats":
        return _pnic_stats(inv, parts[2])
    if len(parts) == 6 and parts[:2] == ["net", "portsets"] and parts[3] == "ports":
        return _port_node(inv, parts[2], parts[4], parts[5])
    raise ValueError(f"Not found: {path}")
