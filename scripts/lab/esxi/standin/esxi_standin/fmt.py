"""Text layouts of ESXi command output, copied from the captures in test/fixtures/esxcli/.

Pure functions over plain values; nothing here reads the system.

esxcli tables (nic-list_*, portgroup-list_*, vm-list_*): every column is as wide as the widest of
its header and its values, columns are separated by two spaces, a row of dashes of that width
sits under the header, text is left-aligned and integers right-aligned (Speed, MTU, Active
Clients, VLAN ID, World ID, Num Ports in the captures), the integer columns' HEADERS too (the
12-vmnic capture prints " MTU" over "1500"). Lines carry no trailing spaces.

esxcli "Key: value" blocks (vswitch-standard-list_*, vm-port-list_*, nic-stats-get_*): a title
line at column 0 (or none), entries indented by three spaces. An empty value keeps the space
after the colon in `vswitch standard list` ("Beacon Required By: ") but not in `vm port list`
("DVPort ID:") or the policy/advanced outputs; callers say which.
"""

INDENT = "   "


def table(headers, rows, numeric=()):
    """An esxcli table. headers: list of str; rows: list of lists of str or int; numeric: header
    names whose cells are right-aligned."""
    cells = [[str(c) for c in r] for r in rows]
    widths = [len(h) for h in headers]
    for r in cells:
        for i, c in enumerate(r):
            widths[i] = max(widths[i], len(c))

    def line(values):
        parts = []
        for i, v in enumerate(values):
            parts.append(v.rjust(widths[i]) if headers[i] in numeric else v.ljust(widths[i]))
        return "  ".join(parts).rstrip()

    out = [line(headers), "  ".join("-" * w for w in widths)]
    out.extend(line(r) for r in cells)
    return "\n".join(out) + "\n"


def kv(key, value, keep_space=False):
    """One indented "Key: value" line. keep_space: print "Key: " for an empty value."""
    v = str(value)
    if v == "" and not keep_space:
        return f"{INDENT}{key}:"
    return f"{INDENT}{key}: {v}"


def kv_block(title, pairs, keep_space=False):
    """A block: optional title line, then one kv line per (key, value)."""
    lines = [] if title is None else [title]
    lines.extend(kv(k, v, keep_space) for k, v in pairs)
    return "\n".join(lines) + "\n"


def flag(b):
    """esxcli booleans print as true/false."""
    return "true" if b else "false"


def join_list(items):
    """esxcli lists ("Uplinks", "Portgroups", "Networks", "Active Adapters") are joined by ", "."""
    return ", ".join(items)


def vsish_python(pairs):
    """`vsish -pe get` "Python mode" body (vsish-pnic-stats_intel-mfd.txt): "{", one line per
    member `   "key" : value,` (strings in double quotes, raw newlines kept), EVERY member
    followed by a comma, the last one included, then "}". Not JSON, on purpose."""
    lines = ["{"]
    for k, v in pairs:
        if isinstance(v, str):
            lines.append(f'   "{k}" : "{v}",')
        else:
            lines.append(f'   "{k}" : {int(v)},')
    lines.append("}")
    return "\n".join(lines) + "\n"


def getallvms(vms):
    """`vim-cmd vmsvc/getallvms` (vim-cmd-getallvms_*.txt). vim-cmd does NOT align the header
    with the rows: in all three captures the header is padded one way and the rows another.
    Rows: Vmid left-justified in 7 characters, then Name, File, Guest OS and Version each padded
    to their widest value plus three spaces, then Annotation. The header here is the ESXi 5
    capture's header verbatim (its widths depend on something the captures do not show).
    vms: list of dicts with vmid, name, file, guest, version, annotation."""
    header = "Vmid   Name                File                 Guest OS      Version   Annotation"
    cols = ["name", "file", "guest", "version"]
    w = {c: max([len(str(v[c])) for v in vms] + [0]) + 3 for c in cols}
    out = [header]
    for v in vms:
        row = str(v["vmid"]).ljust(7) + "".join(str(v[c]).ljust(w[c]) for c in cols) + str(v.get("annotation", ""))
        out.append(row.rstrip())
    return "\n".join(out) + "\n"
