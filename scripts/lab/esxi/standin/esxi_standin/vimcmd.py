"""`vim-cmd` stand-in: vmsvc/getallvms, vmsvc/device.getdevices VMID and
vmsvc/device.connection VMID KEY 0|1.

Layouts: vim-cmd-getallvms_*.txt and vim-cmd-device-getdevices_usb-passthrough-notes.txt in
test/fixtures/esxcli/. A lab VM is a network namespace: it has no disks, controllers or CPUs, so
device.getdevices lists the PCI controller and the virtual NICs only, with fixed hardware values
(numCPU, memoryMB, slot numbers) from the inventory. Connection state, MACs, keys and port
groups are the lab's real ones.

device.connection KEY 0 takes the vNIC's host-side veth down (the guest sees carrier loss, as
with a disconnected virtual cable), 1 brings it up and gives it a NEW vSwitch port ID, as ESXi
does when a vNIC reconnects. Success prints nothing (not confirmed by a capture).

Errors: a vim fault block "(vim.fault.NotFound) { ... msg = ... }" in the form vim-cmd prints
faults (shape from public scripts parsing vim-cmd output), on stderr, exit 1.
"""
import json
import os
import sys
import time

from . import fmt, host, state
from .state import StandinError

NIC_TYPES = ("VirtualE1000", "VirtualE1000e", "VirtualVmxnet3", "VirtualVmxnet2", "VirtualPCNet32")


def fault(kind, msg):
    return StandinError(
        f"(vim.fault.{kind}) {{\n   faultCause = (vmodl.MethodFault) null,\n   faultMessage = <unset>,\n"
        f'   msg = "{msg}"\n}}'
    )


def getallvms(inv, args):
    if args:
        raise StandinError("vim-cmd stand-in: vmsvc/getallvms takes no arguments")
    rows = [{
        "vmid": v["vmid"], "name": v["name"], "file": f"[{v.get('datastore', 'datastore1')}] {v['name']}/{v['name']}.vmx",
        "guest": v.get("guestId", "otherLinux64Guest"), "version": v.get("hwVersion", "vmx-19"),
        "annotation": v.get("annotation", ""),
    } for v in inv["vms"]]
    return fmt.getallvms(rows)


def need_vm(inv, vmid):
    v = state.vm_by_vmid(inv, vmid) if vmid.isdigit() else None
    if v is None:
        raise fault("NotFound", "The object or item referred to could not be found.")
    return v


def _nic_block(i, n, last):
    kind = n.get("type", "VirtualVmxnet3")
    if kind not in NIC_TYPES:
        raise StandinError(f"vim-cmd stand-in: unknown virtual NIC type {kind!r} in inventory")
    pg = n["portgroup"]
    conn = "true" if n["connected"] else "false"
    lines = [
        f"      (vim.vm.device.{kind}) {{",
        f"         key = {n['key']},",
        "         deviceInfo = (vim.Description) {",
        f'            label = "Network adapter {i + 1}",',
        f'            summary = "{pg}"',
        "         },",
        "         backing = (vim.vm.device.VirtualEthernetCard.NetworkBackingInfo) {",
        f'            deviceName = "{pg}",',
        "            useAutoDetect = false,",
        f"            network = 'vim.Network:HaNetwork-{pg}',",
        "            inPassthroughMode = <unset>",
        "         },",
        "         connectable = (vim.vm.device.VirtualDevice.ConnectInfo) {",
        "            startConnected = true,",
        "            allowGuestControl = true,",
        f"            connected = {conn},",
        '            status = "ok"',
        "         },",
        "         slotInfo = (vim.vm.device.VirtualDevice.PciBusSlotInfo) {",
        f"            pciSlotNumber = {n.get('pciSlot', 192 + 32 * i)}",
        "         },",
        "         controllerKey = 100,",
        f"         unitNumber = {7 + i},",
        '         addressType = "generated",',
        f'         macAddress = "{n["mac"]}",',
        "         wakeOnLanEnabled = true,",
        "         resourceAllocation = (vim.vm.device.VirtualEthernetCard.ResourceAllocation) {",
        "            reservation = 0,",
        "            share = (vim.SharesInfo) {",
        "               shares = 50,",
        '               level = "normal"',
        "            },",
        "            limit = -1",
        "         },",
        "         externalId = <unset>,",
        "         uptCompatibilityEnabled = false,",  # trailing comma before "}": as captured
        "      }" if last else "      },",
    ]
    return lines


def getdevices(inv, args):
    if len(args) != 1:
        raise StandinError("vim-cmd stand-in: usage: vmsvc/device.getdevices VMID")
    v = need_vm(inv, args[0])
    hw = v.get("hardware", {})
    keys = [n["key"] for n in v["nics"]]
    lines = [
        "Devices:",
        "",
        "(vim.vm.VirtualHardware) {",
        f"   numCPU = {hw.get('numCPU', 1)},",
        f"   numCoresPerSocket = {hw.get('numCoresPerSocket', 1)},",
        f"   memoryMB = {hw.get('memoryMB', 512)},",
        "   virtualICH7MPresent = false,",
        "   virtualSMCPresent = false,",
        "   device = (vim.vm.device.VirtualDevice) [",
        "      (vim.vm.device.VirtualPCIController) {",
        "         key = 100,",
        "         deviceInfo = (vim.Description) {",
        '            label = "PCI controller 0",',
        '            summary = "PCI controller 0"',
        "         },",
        "         backing = (vim.vm.device.VirtualDevice.BackingInfo) null,",
        "         connectable = (vim.vm.device.VirtualDevice.ConnectInfo) null,",
        "         slotInfo = (vim.vm.device.VirtualDevice.BusSlotInfo) null,",
        "         controllerKey = <unset>,",
        "         unitNumber = <unset>,",
        "         busNumber = 0,",
        "         device = (int) [",
    ]
    lines += [f"            {k}," for k in keys[:-1]] + ([f"            {keys[-1]}"] if keys else [])
    lines += ["         ]", "      }," if v["nics"] else "      }"]
    for i, n in enumerate(v["nics"]):
        lines += _nic_block(i, n, i == len(v["nics"]) - 1)
    lines += ["   ]", "}"]
    return "\n".join(lines) + "\n"


# Lab knob, not a VMware behaviour (test/integration/esxi-fuse-agent.test.ts): while the file
# <lab>/vimcmd.hang exists, a disconnect (KEY 0) waits before it acts, at most HANG_MAX_S, with its
# pid in <lab>/vimcmd.hang.pid: a call stuck in hostd, so that a test can kill its caller mid-call.
HANG = "vimcmd.hang"
HANG_MAX_S = 10


# Lab instrument, not a VMware behaviour (scripts/bench-esxi.ts --trace): while <lab>/vimcmd.trace
# exists, each call appends one JSON line to it with CLOCK_MONOTONIC times (s) of its steps: start
# (the script's first line), imported, locked, ip (the link change spawned), ipDone, end.
TRACE = {}
TRACE_FILE = "vimcmd.trace"


def _mark(step):
    TRACE[step] = time.monotonic()


def trace_out(argv, rc):
    try:
        p = os.path.join(state.lab_dir(), TRACE_FILE)
        if not os.path.exists(p):
            return
        _mark("end")
        with open(p, "a", encoding="ascii") as f:
            f.write(json.dumps(dict(TRACE, argv=argv, rc=rc, pid=os.getpid())) + "\n")
    except (OSError, StandinError):
        pass


def _hang_if_asked():
    p = os.path.join(state.lab_dir(), HANG)
    if not os.path.exists(p):
        return
    with open(p + ".pid", "w", encoding="ascii") as f:
        f.write(str(os.getpid()))
    until = time.monotonic() + HANG_MAX_S
    while os.path.exists(p) and time.monotonic() < until:
        time.sleep(0.005)


def connection(_inv, args):
    if len(args) != 3 or args[2] not in ("0", "1"):
        raise StandinError("vim-cmd stand-in: usage: vmsvc/device.connection VMID DEVICEKEY 0|1")
    vmid, key, on = args[0], args[1], args[2] == "1"
    if not on:
        _hang_if_asked()
    with state.locked() as inv:
        _mark("locked")
        v = need_vm(inv, vmid)
        nic = next((n for n in v["nics"] if str(n["key"]) == key), None)
        if nic is None:
            raise fault("NotFound", "The object or item referred to could not be found.")
        _mark("ip")
        host.link_set(nic["dev"], "up" if on else "down")
        _mark("ipDone")
        if on and not nic["connected"]:
            nic["portId"] = inv["nextPortId"]
            inv["nextPortId"] += 1
        nic["connected"] = on
        state.save(inv)
    return ""


COMMANDS = {
    "vmsvc/getallvms": getallvms,
    "vmsvc/device.getdevices": getdevices,
    "vmsvc/device.connection": connection,
}


def main(argv):
    try:
        fn = COMMANDS.get(argv[0]) if argv else None
        if fn is None:
            raise StandinError(f"vim-cmd stand-in: unknown command {argv[0] if argv else '(none)'!r}")
        out = fn(state.load(), argv[1:])
    except StandinError as e:
        print(str(e), file=sys.stderr)
        return 1
    sys.stdout.write(out)
    return 0
