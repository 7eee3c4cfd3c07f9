// Frames -> a pcapng file (Wireshark's own format; tcpdump/libpcap read it too). Pure: frames
// and interface names in, bytes out. pcapng rather than classic pcap because each frame keeps
// the interface it arrived on (one Interface Description Block per interface, with its name):
// in a loop storm *which port* saw the frame is half the evidence.
// Format: draft-ietf-opsawg-pcapng (Section Header 0x0A0D0D0A, Interface Description 1,
// Enhanced Packet 6); little-endian, LINKTYPE_ETHERNET (1), timestamps in nanoseconds
// (if_tsresol = 9).

export interface CapturedFrame {
  /** Wall-clock time, seconds and nanoseconds. */
  sec: number;
  nsec: number;
  ifindex: number;
  /** Original length on the wire. */
  len: number;
  /** The bytes kept (a prefix of the frame). */
  data: Uint8Array;
}

const pad4 = (n: number): number => (n + 3) & ~3;

function block(type: number, body: Buffer): Buffer {
  const total = 12 + body.length;
  const b = Buffer.alloc(total);
  b.writeUInt32LE(type, 0);
  b.writeUInt32LE(total, 4);
  body.copy(b, 8);
  b.writeUInt32LE(total, total - 4);
  return b;
}

/** Options: code, length, value padded to 4; ends with opt_endofopt. */
function options(opts: ReadonlyArray<[number, Buffer]>): Buffer {
  const parts: Buffer[] = [];
  for (const [code, v] of opts) {
    const h = Buffer.alloc(4);
    h.writeUInt16LE(code, 0);
    h.writeUInt16LE(v.length, 2);
    parts.push(h, v, Buffer.alloc(pad4(v.length) - v.length));
  }
  parts.push(Buffer.alloc(4));
  return Buffer.concat(parts);
}

function sectionHeader(comment: string): Buffer {
  const fixed = Buffer.alloc(16);
  fixed.writeUInt32LE(0x1a2b3c4d, 0); // byte-order magic
  fixed.writeUInt16LE(1, 4); // major
  fixed.writeUInt16LE(0, 6); // minor
  fixed.writeBigInt64LE(-1n, 8); // section length unknown
  return block(0x0a0d0d0a, Buffer.concat([fixed, options([[1, Buffer.from(comment, 'utf8')]])]));
}

function interfaceDescription(name: string, snaplen: number): Buffer {
  const fixed = Buffer.alloc(8);
  fixed.writeUInt16LE(1, 0); // LINKTYPE_ETHERNET
  fixed.writeUInt32LE(snaplen, 4);
  return block(1, Buffer.concat([fixed, options([[2, Buffer.from(name, 'utf8')], [9, Buffer.from([9])]])]));
}

function enhancedPacket(ifId: number, f: CapturedFrame): Buffer {
  const ts = BigInt(f.sec) * 1_000_000_000n + BigInt(f.nsec);
  const fixed = Buffer.alloc(20);
  fixed.writeUInt32LE(ifId, 0);
  fixed.writeUInt32LE(Number(ts >> 32n), 4);
  fixed.writeUInt32LE(Number(ts & 0xffffffffn), 8);
  fixed.writeUInt32LE(f.data.length, 12);
  fixed.writeUInt32LE(Math.max(f.len, f.data.length), 16);
  const data = Buffer.alloc(pad4(f.data.length));
  data.set(f.data);
  return block(6, Buffer.concat([fixed, data, options([])]));
}

/**
 * One pcapng section: a comment (e.g. the trip's reason), one interface per ifindex seen (named
 * from `names`, else `ifindex N`), then the frames in the order given.
 */
export function toPcapng(frames: readonly CapturedFrame[], names: ReadonlyMap<number, string>, comment: string, snaplen = 128): Buffer {
  const ids = new Map<number, number>();
  const idbs: Buffer[] = [];
  for (const f of frames) {
    if (ids.has(f.ifindex)) continue;
    ids.set(f.ifindex, ids.size);
    idbs.push(interfaceDescription(names.get(f.ifindex) ?? `ifindex ${f.ifindex}`, snaplen));
  }
  return Buffer.concat([sectionHeader(comment), ...idbs, ...frames.map((f) => enhancedPacket(ids.get(f.ifindex)!, f))]);
}
