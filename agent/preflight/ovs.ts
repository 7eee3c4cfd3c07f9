// Open vSwitch bridges, ports and interfaces from `ovs-vsctl --format=json list <Table>`. Pure.
//
// The JSON is {"headings": [column...], "data": [[value...]...]}, values in OVSDB's JSON
// encoding (RFC 7047 5.1): an atom as itself, ["uuid", "..."], ["set", [atom...]] (a set of
// exactly one element may be printed as that bare atom), ["map", [[k, v]...]]. Rows are read by
// heading, never by position: ovs-vsctl adds columns between versions.
//
// OVS is not installed on the machine this was written on: the parser and the rule are tested
// against literal fixtures in the documented format (test/fixtures/preflight/ovs-*.json), not
// against a running ovsdb-server.

export interface OvsPort {
  name: string;
  /** Interface names of this port: one for a plain port, two or more for an OVS bond. */
  interfaces: string[];
  bondMode: string | null;
}

export interface OvsBridge {
  name: string;
  stp: boolean;
  rstp: boolean;
  /** other_config:forward-bpdu (default false: OVS drops 802.1D BPDUs it does not consume). */
  forwardBpdu: boolean;
  ports: OvsPort[];
}

type Row = Record<string, unknown>;

/** Decode one OVSDB JSON value into plain JS: uuid -> string, set -> array, map -> object. */
export function decodeOvsValue(v: unknown): unknown {
  if (!Array.isArray(v) || v.length !== 2 || typeof v[0] !== 'string') return v;
  const [tag, body] = v as [string, unknown];
  if (tag === 'uuid' || tag === 'named-uuid') return String(body);
  if (tag === 'set') return Array.isArray(body) ? body.map(decodeOvsValue) : [];
  if (tag === 'map') {
    const o: Record<string, unknown> = {};
    if (Array.isArray(body)) {
      for (const kv of body) {
        if (Array.isArray(kv) && kv.length === 2) o[String(decodeOvsValue(kv[0]))] = decodeOvsValue(kv[1]);
      }
    }
    return o;
  }
  return v;
}

/** Rows of one `ovs-vsctl --format=json list T` output, decoded and keyed by heading. */
export function parseOvsTable(json: string, table: string): Row[] {
  let v: unknown;
  try {
    v = JSON.parse(json);
  } catch (err) {
    throw new Error(`ovs-vsctl list ${table}: output is not JSON`, { cause: err });
  }
  const o = v as { headings?: unknown; data?: unknown };
  if (!o || !Array.isArray(o.headings) || !Array.isArray(o.data)) {
    throw new Error(`ovs-vsctl list ${table}: expected {"headings": [...], "data": [...]}`);
  }
  const headings = o.headings.map(String);
  return o.data
    .filter((r): r is unknown[] => Array.isArray(r))
    .map((r) => {
      const row: Row = {};
      headings.forEach((h, i) => (row[h] = decodeOvsValue(r[i])));
      return row;
    });
}

/** A set column: a bare atom means a one-element set. */
function asList(v: unknown): unknown[] {
  if (Array.isArray(v)) return v;
  return v === undefined || v === null ? [] : [v];
}

function asMap(v: unknown): Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : {};
}

/** Join the Bridge, Port and Interface tables into bridges with their ports and interfaces. */
export function parseOvs(bridgeJson: string, portJson: string, interfaceJson: string): OvsBridge[] {
  const ifaces = new Map<string, string>();
  for (const r of parseOvsTable(interfaceJson, 'Interface')) ifaces.set(String(r['_uuid']), String(r['name']));
  const ports = new Map<string, OvsPort>();
  for (const r of parseOvsTable(portJson, 'Port')) {
    const bond = asList(r['bond_mode'])[0];
    ports.set(String(r['_uuid']), {
      name: String(r['name']),
      interfaces: asList(r['interfaces']).map((u) => ifaces.get(String(u)) ?? String(u)),
      bondMode: typeof bond === 'string' ? bond : null,
    });
  }
  return parseOvsTable(bridgeJson, 'Bridge').map((r) => {
    const oc = asMap(r['other_config']);
    return {
      name: String(r['name']),
      stp: r['stp_enable'] === true,
      rstp: r['rstp_enable'] === true,
      forwardBpdu: oc['forward-bpdu'] === 'true',
      ports: asList(r['ports'])
        .map((u) => ports.get(String(u)))
        .filter((p): p is OvsPort => p !== undefined),
    };
  });
}
