"""`esxcli` stand-in: the commands stormbreaker runs on an ESXi host, answered from the lab's
real links and counters in the layouts of the captures in test/fixtures/esxcli/.

Error texts: "Error: Unknown command or namespace <words>" is the real esxcli wording (Broadcom
KB text quoted in public pages). The other error texts are NOT from captures; they follow the
same "Error: ..." form. Real esxcli may print errors on stdout; this stand-in prints them on
stderr and exits 1, which is what the agent checks.
"""
import sys

from . import fmt, host, state, vlan
from .state import StandinError

# --- option parsing ------------------------------------------------------------------------------


def parse_opts(args, spec):
    """spec: {canonical: [aliases...]}, all options take a value. Accepts `-n X`, `-n=X`,
    `--nic-name X`, `--nic-name=X`. Every option in spec is required."""
    alias = {a: c for c, names in spec.items() for a in names}
    got = {}
    i = 0
    while i < len(args):
        a = args[i]
        name, eq, val = a.partition("=")
        if name not in alias:
            raise StandinError(f"Error: Invalid option {name}")
        if not eq:
            if i + 1 >= len(args):
                raise StandinError(f"Error: Missing value for option {name}")
            i += 1
            val = args[i]
        c = alias[name]
        if c in got:
            raise StandinError(f"Error: Option {name} given twice")
        got[c] = val
        i += 1
    for c, names in spec.items():
        if c not in got:
            raise StandinError(f"Error: Missing required parameter {'|'.join(names)}")
    return got


NIC_OPT = {"nic": ["-n", "--nic-name"]}
PG_OPT = {"pg": ["-p", "--portgroup-name"]}


def need_nic(inv, name):
    n = state.nic(inv, name)
    if n is None:
        raise StandinError(f"Error: Unable to find physical NIC {name}")
    return n


def need_pg(inv, name):
    p = state.portgroup(inv, name)
    if p is None:
        raise StandinError(f"Error: Unable to find port group {name}")
    return p


# --- physical NICs -------------------------------------------------------------------------------


def nic_list(inv, args):
    parse_opts(args, {})
    rows = []
    for n in sorted(inv["nics"], key=lambda x: x["name"]):
        d = n["dev"]
        up = host.link_up(d)
        rows.append([
            n["name"], n["pci"], n["driver"], "Up" if host.admin_up(d) else "Down", "Up" if up else "Down",
            host.speed(d), "Full" if up else "Half", host.mac(d), host.mtu(d), n["description"],
        ])
    headers = ["Name", "PCI Device", "Driver", "Admin Status", "Link Status", "Speed", "Duplex",
               "MAC Address", "MTU", "Description"]
    return fmt.table(headers, rows, numeric={"Speed", "MTU"})


NIC_STATS = (
    ("Packets received", "rx_packets"), ("Packets sent", "tx_packets"),
    ("Bytes received", "rx_bytes"), ("Bytes sent", "tx_bytes"),
    ("Receive packets dropped", "rx_dropped"), ("Transmit packets dropped", "tx_dropped"),
    ("Multicast packets received", "rx_mc"), ("Broadcast packets received", "rx_bc"),
    ("Multicast packets sent", "tx_mc"), ("Broadcast packets sent", "tx_bc"),
    ("Total receive errors", "rx_errors"), ("Receive length errors", "rx_length_errors"),
    ("Receive over errors", "rx_over_errors"), ("Receive CRC errors", "rx_crc_errors"),
    ("Receive frame errors", "rx_frame_errors"), ("Receive FIFO errors", "rx_fifo_errors"),
    ("Receive missed errors", "rx_missed_errors"), ("Total transmit errors", "tx_errors"),
    ("Transmit aborted errors", "tx_aborted_errors"), ("Transmit carrier errors", "tx_carrier_errors"),
    ("Transmit FIFO errors", "tx_fifo_errors"), ("Transmit heartbeat errors", "tx_heartbeat_errors"),
    ("Transmit window errors", "tx_window_errors"),
)


def pnic_counters(inv, nic):
    """A physical NIC's counters as its driver would report them. driverReportsBroadcast false
    plays drivers that leave both broadcast counters at 0 (Broadcom KB 341594's vmnic2)."""
    c = host.port_counters(nic["dev"])
    if not inv.get("driverReportsBroadcast", True):
        c["rx_bc"] = 0
        c["tx_bc"] = 0
    return c


def nic_stats_get(inv, args):
    o = parse_opts(args, NIC_OPT)
    n = need_nic(inv, o["nic"])
    c = pnic_counters(inv, n)
    return fmt.kv_block(f"NIC statistics for {n['name']}", [(label, c[k]) for label, k in NIC_STATS])


def nic_updown(state_word):
    def run(_inv, args):
        o = parse_opts(args, NIC_OPT)
        with state.locked() as inv:
            n = need_nic(inv, o["nic"])
            host.link_set(n["dev"], state_word)
        return ""
    return run


# --- vSwitches and port groups -------------------------------------------------------------------


def vswitch_list(inv, args):
    parse_opts(args, {})
    blocks = []
    for s in inv["vswitches"]:
        # Used Ports: the bridge's real ports plus the VMkernel NICs on this vSwitch (vmk0 is
        # out of band in the lab, see README, but ESXi counts it on vSwitch0).
        vmk = [k for k in inv.get("vmknics", []) if state.portgroup(inv, k["portgroup"]) and
               state.portgroup(inv, k["portgroup"])["vswitch"] == s["name"]]
        pairs = [
            ("Name", s["name"]), ("Class", s.get("class", "cswitch")), ("Num Ports", s["numPorts"]),
            ("Used Ports", len(host.bridge_ports(s["bridge"])) + len(vmk)),
            ("Configured Ports", s["configuredPorts"]), ("MTU", host.mtu(s["bridge"])),
            ("CDP Status", s.get("cdpStatus", "listen")), ("Beacon Enabled", fmt.flag(s.get("beaconEnabled", False))),
            ("Beacon Interval", s.get("beaconInterval", 1)), ("Beacon Threshold", s.get("beaconThreshold", 3)),
            ("Beacon Required By", ""), ("Uplinks", fmt.join_list(s["uplinks"])),
            ("Portgroups", fmt.join_list(s["portgroups"])),
        ]
        blocks.append(fmt.kv_block(s["name"], pairs, keep_space=True))
    return "\n".join(blocks)


def active_clients(inv, pg):
    vnics = sum(1 for v in inv["vms"] for n in v["nics"] if n["portgroup"] == pg["name"] and n["connected"])
    vmk = sum(1 for k in inv.get("vmknics", []) if k["portgroup"] == pg["name"])
    return vnics + vmk


def portgroup_list(inv, args):
    parse_opts(args, {})
    rows = [[p["name"], p["vswitch"], active_clients(inv, p), p["vlanId"]]
            for p in sorted(inv["portgroups"], key=lambda x: x["name"])]
    return fmt.table(["Name", "Virtual Switch", "Active Clients", "VLAN ID"], rows,
                     numeric={"Active Clients", "VLAN ID"})


def portgroup_set(_inv, args):
    o = parse_opts(args, {**PG_OPT, "vlan": ["-v", "--vlan-id"]})
    raw = o["vlan"]
    if not raw.isdigit() or not 0 <= int(raw) <= 4095:
        raise StandinError(f"Error: Invalid value for --vlan-id: {raw!r} (expected 0-4095)")
    vid = int(raw)
    with state.locked() as inv:
        pg = need_pg(inv, o["pg"])
        old = pg["vlanId"]
        pg["vlanId"] = vid
        # Every vNIC on the port group moves, connected or not (a disconnected vNIC comes back on
        # the new VLAN). The nft transaction applies all ports at once; the inventory is saved
        # only after it succeeded, so a failure leaves both unchanged.
        try:
            host.apply_nft(vlan.nft_script(vlan.forward_rules(vlan.memberships(inv))), state.lab_dir())
        except StandinError:
            pg["vlanId"] = old
            raise
        state.save(inv)
    return ""


def policy_security_get(inv, args):
    o = parse_opts(args, PG_OPT)
    pg = need_pg(inv, o["pg"])
    s = pg["security"]
    ov = pg.get("securityOverride", {})
    return fmt.kv_block(None, [
        ("Allow Promiscuous", fmt.flag(s["allowPromiscuous"])),
        ("Allow MAC Address Change", fmt.flag(s["allowMacChanges"])),
        ("Allow Forged Transmits", fmt.flag(s["allowForgedTransmits"])),
        ("Override Vswitch Allow Promiscuous", fmt.flag(ov.get("allowPromiscuous", False))),
        ("Override Vswitch Allow MAC Address Change", fmt.flag(ov.get("allowMacChanges", False))),
        ("Override Vswitch Allow Forged Transmits", fmt.flag(ov.get("allowForgedTransmits", False))),
    ])


def policy_failover_get(inv, args):
    o = parse_opts(args, PG_OPT)
    pg = need_pg(inv, o["pg"])
    sw = state.vswitch(inv, pg["vswitch"])
    active, standby = pg["activeUplinks"], pg["standbyUplinks"]
    unused = [u for u in (sw["uplinks"] if sw else []) if u not in active and u not in standby]
    f = pg.get("failover", {})
    return fmt.kv_block(None, [
        ("Load Balancing", f.get("loadBalancing", "srcport")),
        ("Network Failure Detection", f.get("failureDetection", "link")),
        ("Notify Switches", fmt.flag(f.get("notifySwitches", True))),
        ("Failback", fmt.flag(f.get("failback", True))),
        ("Active Adapters", fmt.join_list(active)),
        ("Standby Adapters", fmt.join_list(standby)),
        ("Unused Adapters", fmt.join_list(unused)),
        ("Override Vswitch Load Balancing", "false"),
        ("Override Vswitch Network Failure Detection", "false"),
        ("Override Vswitch Notify Switches", "false"),
        ("Override Vswitch Failback", "false"),
        ("Override Vswitch Uplinks", fmt.flag(f.get("overrideUplinks", False))),
    ])


# --- VMs and ports -------------------------------------------------------------------------------


def team_uplink(inv, pg, port_id):
    """The uplink a VM port's traffic leaves by under "Route based on originating virtual port"
    (srcport): one of the port group's active uplinks whose link is up, chosen by port ID, else
    a standby one; None when no uplink is up. Reported only: the Linux bridge floods broadcast
    to every uplink (see README)."""
    for group in (pg["activeUplinks"], pg["standbyUplinks"]):
        up = [u for u in group if state.nic(inv, u) and host.link_up(state.nic(inv, u)["dev"])]
        if up:
            return state.nic(inv, up[port_id % len(up)])
    return None


def vm_list(inv, args):
    parse_opts(args, {})
    rows = []
    for v in inv["vms"]:
        conn = [n for n in v["nics"] if n["connected"]]
        rows.append([v["worldId"], v["name"], len(conn), fmt.join_list([n["portgroup"] for n in conn])])
    return fmt.table(["World ID", "Name", "Num Ports", "Networks"], rows, numeric={"World ID", "Num Ports"})


def vm_port_list(inv, args):
    o = parse_opts(args, {"world": ["-w", "--world-id"]})
    v = state.vm_by_world(inv, o["world"])
    if v is None:
        raise StandinError(f"Error: Unable to find VM with world ID {o['world']}")
    blocks = []
    for n in v["nics"]:
        if not n["connected"]:
            continue  # a disconnected vNIC has no vSwitch port
        pg = need_pg(inv, n["portgroup"])
        up = team_uplink(inv, pg, int(n["portId"]))
        blocks.append(fmt.kv_block(None, [
            ("Port ID", n["portId"]), ("vSwitch", pg["vswitch"]), ("Portgroup", pg["name"]),
            ("DVPort ID", ""), ("MAC Address", n["mac"]), ("IP Address", "0.0.0.0"),
            ("Team Uplink", up["name"] if up else ""), ("Uplink Port ID", up["uplinkPortId"] if up else ""),
            ("Active Filters", ""),
        ]))
    return "\n".join(blocks)


def find_port(inv, port_id):
    """(kind, dev) of a vSwitch port ID: a connected vNIC, an uplink or a VMkernel NIC."""
    for v in inv["vms"]:
        for n in v["nics"]:
            if n["connected"] and str(n["portId"]) == port_id:
                return n["dev"]
    for n in inv["nics"]:
        if str(n.get("uplinkPortId")) == port_id:
            return n["dev"]
    for k in inv.get("vmknics", []):
        if str(k.get("portId")) == port_id:
            return k["dev"]
    return None


def port_stats_get(inv, args):
    o = parse_opts(args, {"port": ["-p", "--portid"]})
    pid = o["port"]
    dev = find_port(inv, pid) if pid.isdigit() else None
    if dev is None:
        raise StandinError(f"Error: Unable to find port {pid}")
    # Direction: "received" = frames this vSwitch port received FROM its client (the VM, the
    # uplink's wire, the vmknic), i.e. the host-side veth's rx; "sent" = frames it delivered to
    # the client (the veth's tx). This is an assumption: no capture shows a port's counters next
    # to a known traffic direction. Unicast = packets - broadcast - multicast, derived from the
    # same real counters (nft counts bcast/mcast on the same hook points sysfs counts packets).
    c = host.port_counters(dev)
    return fmt.kv_block(f"Packet statistics for port {pid}", [
        ("Packets received", c["rx_packets"]), ("Packets sent", c["tx_packets"]),
        ("Bytes received", c["rx_bytes"]), ("Bytes sent", c["tx_bytes"]),
        ("Broadcast packets received", c["rx_bc"]), ("Broadcast packets sent", c["tx_bc"]),
        ("Multicast packets received", c["rx_mc"]), ("Multicast packets sent", c["tx_mc"]),
        ("Unicast packets received", max(0, c["rx_packets"] - c["rx_bc"] - c["rx_mc"])),
        ("Unicast packets sent", max(0, c["tx_packets"] - c["tx_bc"] - c["tx_mc"])),
        ("Receive packets dropped", c["rx_dropped"]), ("Transmit packets dropped", c["tx_dropped"]),
    ])


# --- advanced settings ---------------------------------------------------------------------------

ADVANCED = {
    # Layout: advanced-list-BlockGuestBPDU_RECONSTRUCTED.txt (field list from a real ESXi 5.0
    # capture of another option; description text from an ESXi 8.0.3 audit table).
    "/Net/BlockGuestBPDU": {"type": "integer", "default": 0, "min": 0, "max": 1,
                            "description": "Block guest sourced BPDU frames"},
}


def advanced_list(inv, args):
    o = parse_opts(args, {"option": ["-o", "--option"]})
    path = o["option"]
    meta = ADVANCED.get(path)
    if meta is None:
        raise StandinError(f"Error: Unable to find option {path}")
    val = int(inv.get("advanced", {}).get(path, meta["default"]))
    return fmt.kv_block(None, [
        ("Path", path), ("Type", meta["type"]), ("Int Value", val), ("Default Int Value", meta["default"]),
        ("Min Value", meta["min"]), ("Max Value", meta["max"]), ("String Value", ""),
        ("Default String Value", ""), ("Valid Characters", ""), ("Description", meta["description"]),
    ])


COMMANDS = {
    ("network", "nic", "list"): nic_list,
    ("network", "nic", "stats", "get"): nic_stats_get,
    ("network", "nic", "down"): nic_updown("down"),
    ("network", "nic", "up"): nic_updown("up"),
    ("network", "vswitch", "standard", "list"): vswitch_list,
    ("network", "vswitch", "standard", "portgroup", "list"): portgroup_list,
    ("network", "vswitch", "standard", "portgroup", "set"): portgroup_set,
    ("network", "vswitch", "standard", "portgroup", "policy", "security", "get"): policy_security_get,
    ("network", "vswitch", "standard", "portgroup", "policy", "failover", "get"): policy_failover_get,
    ("network", "vm", "list"): vm_list,
    ("network", "vm", "port", "list"): vm_port_list,
    ("network", "port", "stats", "get"): port_stats_get,
    ("system", "settings", "advanced", "list"): advanced_list,
}


def dispatch(argv):
    words = []
    for a in argv:
        if a.startswith("-"):
            break
        words.append(a)
    fn = COMMANDS.get(tuple(words))
    if fn is None:
        raise StandinError(f"Error: Unknown command or namespace {' '.join(words)}".rstrip())
    return fn(state.load(), argv[len(words):])


def main(argv):
    try:
        out = dispatch(argv)
    except StandinError as e:
        print(str(e), file=sys.stderr)
        return 1
    sys.stdout.write(out)
    return 0
