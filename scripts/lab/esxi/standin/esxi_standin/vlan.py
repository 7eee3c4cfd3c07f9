"""Port group VLANs on a bridge without 802.1Q.

The lab kernel has no CONFIG_VLAN_8021Q, so a Linux bridge cannot do vlan_filtering (even
`vlan_filtering 0` is refused) and nothing can push or pop tags. VLANs are therefore played by
MEMBERSHIP: each vSwitch0 port is a member of a set of VLANs, and an nft bridge-family rule drops
a frame forwarded between two ports that share no VLAN (table bridge stormbreaker_vlan, chain
forward; the bridge runs the forward hook once per egress port, flooded copies included).

Membership (pure, from the inventory):
- a VM port is in its port group's VLAN: 0 (untagged), N (1-4094), or for 4095 (guest tagging)
  in 0 plus every trunk VLAN;
- an uplink is in 0 plus the inventory's trunkVlans (what the physical switch port trunks). A
  VLAN no uplink trunks (a quarantine VLAN) reaches no uplink and hears nothing from one.

What this does NOT reproduce: tags on the wire. A trunked VLAN's frames leave the uplink
untagged, and untagged frames from the physical switch reach VM ports of every trunked VLAN: on
the uplinks, trunked VLANs are merged with the untagged one. Isolation between VM ports on
different VLANs, and of non-trunked VLANs from the uplinks, is exact.
"""

UNTAGGED = 0


def vm_port_members(vlan_id, trunk_vlans):
    vlan_id = int(vlan_id)
    if vlan_id == 4095:
        return {UNTAGGED, *trunk(trunk_vlans)}
    if 0 <= vlan_id <= 4094:
        return {vlan_id}
    raise ValueError(f"VLAN ID out of range: {vlan_id}")


def trunk(trunk_vlans):
    return {int(t) for t in trunk_vlans if 1 <= int(t) <= 4094}


def memberships(inv):
    """{bridge port: set of VLANs} for the uplinks and every vNIC port of the vSwitch0 bridge."""
    tv = inv.get("trunkVlans", [])
    pgs = {p["name"]: p for p in inv["portgroups"]}
    out = {}
    for n in inv["nics"]:
        out[n["dev"]] = {UNTAGGED, *trunk(tv)}
    for v in inv["vms"]:
        for n in v["nics"]:
            out[n["dev"]] = vm_port_members(pgs[n["portgroup"]]["vlanId"], tv)
    return out


def forward_rules(members):
    """{egress port: sorted ingress ports allowed} for every port that must NOT hear everyone.
    Ports that share a VLAN with all others get no rule (the default lab has none at all)."""
    ports = sorted(members)
    rules = {}
    for o in ports:
        allowed = [i for i in ports if i != o and members[i] & members[o]]
        if len(allowed) < len(ports) - 1:
            rules[o] = allowed
    return rules


def nft_script(rules, table="stormbreaker_vlan"):
    """An atomic nft transaction replacing the forward chain's rules."""
    lines = [f"flush chain bridge {table} forward"]
    for o, allowed in sorted(rules.items()):
        if allowed:
            names = ", ".join(f'"{i}"' for i in allowed)
            lines.append(f'add rule bridge {table} forward oifname "{o}" iifname != {{ {names} }} drop')
        else:
            lines.append(f'add rule bridge {table} forward oifname "{o}" drop')
    return "\n".join(lines) + "\n"
