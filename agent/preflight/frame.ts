// The loop probe's frame. Pure.
//
// A broadcast (every bridge floods it, like the ARP or DHCP a new host sends at go-live) with a
// private ethertype, so that one nft rule can drop exactly these frames at ingress and nothing
// else, and a random 16-byte nonce per probe, so that an arrival names the port it was sent from
// even when several runs or hosts probe one network at the same time.
import { randomBytes } from 'node:crypto';

/**
 * IEEE 802 "Local Experimental Ethertype 2" (0x88B6). The lab's frame sender uses type 1
 * (0x88B5) for its test traffic, so probes never match lab traffic and vice versa.
 */
export const PROBE_ETHERTYPE = 0x88b6;
const MAGIC = Buffer.from('SBPROBE1', 'latin1');
export const NONCE_BYTES = 16;
/** Ethernet minimum without FCS: physical NICs pad shorter frames anyway. */
export const PROBE_FRAME_BYTES = 60;
const BROADCAST = Buffer.alloc(6, 0xff);

/** A random locally administered unicast MAC (bit 1 set, bit 0 clear) for the probes' source. */
export function randomProbeMac(rand: (n: number) => Buffer = randomBytes): Buffer {
  const mac = Buffer.from(rand(6));
  mac[0] = ((mac[0] ?? 0) & 0xfc) | 0x02;
  return mac;
}

export function newNonce(rand: (n: number) => Buffer = randomBytes): Buffer {
  return Buffer.from(rand(NONCE_BYTES));
}

/** dst ff:ff:ff:ff:ff:ff, src, ethertype, "SBPROBE1", nonce, zero padding to 60 bytes. */
export function buildProbeFrame(src: Buffer, nonce: Buffer): Buffer {
  if (src.length !== 6) throw new RangeError('probe source MAC must be 6 bytes');
  if (nonce.length !== NONCE_BYTES) throw new RangeError(`probe nonce must be ${NONCE_BYTES} bytes`);
  const f = Buffer.alloc(PROBE_FRAME_BYTES);
  BROADCAST.copy(f, 0);
  src.copy(f, 6);
  f.writeUInt16BE(PROBE_ETHERTYPE, 12);
  MAGIC.copy(f, 14);
  nonce.copy(f, 14 + MAGIC.length);
  return f;
}

/** The nonce (hex) of a probe frame, or null for anything else (wrong type, magic, too short). */
export function parseProbeFrame(frame: Buffer): string | null {
  const end = 14 + MAGIC.length + NONCE_BYTES;
  if (frame.length < end) return null;
  if (frame.readUInt16BE(12) !== PROBE_ETHERTYPE) return null;
  if (!frame.subarray(14, 14 + MAGIC.length).equals(MAGIC)) return null;
  return frame.subarray(14 + MAGIC.length, end).toString('hex');
}
