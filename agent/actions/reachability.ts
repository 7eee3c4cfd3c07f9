// Is the management gateway still reachable? ICMP echo over one raw IPv4 socket (the `raw-socket`
// package: it opens AF_INET raw sockets only, which is all an echo needs), opened lazily in the
// agent's own network namespace and kept open. Used after every automatic link-down (an action
// must not cut the operator's way in) and as a baseline every few seconds.
//
// Echo packets are built and replies parsed by pure functions below; only createPinger does I/O.
import { createRequire } from 'node:module';
import { IPV4_RE } from '../policy/schema.js';

/** Echo request: type 8, code 0, checksum, identifier, sequence, payload. */
export function buildEcho(id: number, seq: number, payload: Buffer = Buffer.from('stormbreaker')): Buffer {
  const b = Buffer.alloc(8 + payload.length);
  b.writeUInt8(8, 0);
  b.writeUInt8(0, 1);
  b.writeUInt16BE(id & 0xffff, 4);
  b.writeUInt16BE(seq & 0xffff, 6);
  payload.copy(b, 8);
  b.writeUInt16BE(inetChecksum(b), 2);
  return b;
}

/** RFC 1071 one's-complement sum of 16-bit words (the checksum field must be 0 when computing). */
export function inetChecksum(b: Buffer): number {
  let sum = 0;
  for (let i = 0; i + 1 < b.length; i += 2) sum += b.readUInt16BE(i);
  if (b.length % 2 === 1) sum += b[b.length - 1]! << 8;
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

/**
 * An IPv4 datagram as a raw ICMP socket delivers it (IP header included): the echo reply's
 * identifier and sequence, or null for anything else (requests, errors, other ICMP).
 */
export function parseEchoReply(pkt: Buffer): { id: number; seq: number } | null {
  if (pkt.length < 20 || pkt[0]! >> 4 !== 4) return null;
  const ihl = (pkt[0]! & 0x0f) * 4;
  if (ihl < 20 || pkt.length < ihl + 8) return null;
  if (pkt[ihl] !== 0 || pkt[ihl + 1] !== 0) return null; // type 0 code 0: echo reply
  return { id: pkt.readUInt16BE(ihl + 4), seq: pkt.readUInt16BE(ihl + 6) };
}

export interface EchoOutcome {
  ok: boolean;
  /** Round trip of the answered echo, ms. */
  rttMs?: number;
  error?: string;
}

export interface CheckOutcome {
  reachable: boolean;
  /** Echoes sent. */
  tries: number;
  rttMs?: number;
  /** Why no echo could be sent at all (no raw socket): the check could not be made. */
  error?: string;
}

export interface Pinger {
  /** One echo to target, answered within timeoutMs or not. Never rejects. */
  echo(target: string, timeoutMs: number): Promise<EchoOutcome>;
  /** Up to `tries` echoes, one after the other; reachable on the first reply. Never rejects. */
  check(target: string, timeoutMs: number, tries: number): Promise<CheckOutcome>;
  close(): void;
}

interface RawSocket {
  on(ev: 'message', cb: (buf: Buffer, source: string) => void): void;
  on(ev: 'error', cb: (err: Error) => void): void;
  send(buf: Buffer, offset: number, length: number, address: string, after: (err: Error | null, bytes: number) => void): void;
  close(): void;
}
interface RawModule {
  createSocket(o: { protocol: number }): RawSocket;
  Protocol: { ICMP: number };
}

let rawModule: RawModule | { error: string } | null = null;

/** The native module, loaded once; a missing or unbuilt addon is a reason, not a crash. */
export function loadRawSocket(): RawModule | { error: string } {
  if (rawModule) return rawModule;
  try {
    rawModule = createRequire(import.meta.url)('raw-socket') as RawModule;
  } catch (err) {
    rawModule = { error: `raw-socket unavailable: ${(err as Error).message.split('\n')[0]}` };
  }
  return rawModule;
}

const hrMs = (): number => Number(process.hrtime.bigint()) / 1e6;

export function createPinger(): Pinger {
  // The identifier tells our replies from other processes' (a raw socket sees every ICMP packet).
  const id = process.pid & 0xffff;
  let seq = 0;
  let sock: RawSocket | null = null;
  let closed = false;
  const waiting = new Map<number, { target: string; done: (o: EchoOutcome) => void; sentAt: number }>();

  function open(): RawSocket | { error: string } {
    if (sock) return sock;
    const m = loadRawSocket();
    if ('error' in m) return m;
    try {
      const s = m.createSocket({ protocol: m.Protocol.ICMP });
      s.on('message', (buf, source) => {
        const r = parseEchoReply(buf);
        if (!r || r.id !== id) return;
        const w = waiting.get(r.seq);
        if (!w || w.target !== source) return;
        waiting.delete(r.seq);
        w.done({ ok: true, rttMs: hrMs() - w.sentAt });
      });
      s.on('error', (err) => {
        // raw-socket closes the socket after an error: open a new one on the next echo.
        sock = null;
        for (const [k, w] of waiting) {
          waiting.delete(k);
          w.done({ ok: false, error: err.message });
        }
      });
      sock = s;
      return s;
    } catch (err) {
      return { error: `cannot open a raw ICMP socket: ${(err as Error).message}` };
    }
  }

  function echo(target: string, timeoutMs: number): Promise<EchoOutcome> {
    if (!IPV4_RE.test(target)) return Promise.resolve({ ok: false, error: `not an IPv4 address: ${JSON.stringify(target)}` });
    if (closed) return Promise.resolve({ ok: false, error: 'pinger closed' });
    const s = open();
    if ('error' in s) return Promise.resolve({ ok: false, error: s.error });
    seq = (seq + 1) & 0xffff;
    const mySeq = seq;
    return new Promise<EchoOutcome>((resolve) => {
      const timer = setTimeout(() => {
        waiting.delete(mySeq);
        resolve({ ok: false });
      }, timeoutMs);
      const done = (o: EchoOutcome): void => {
        clearTimeout(timer);
        resolve(o);
      };
      waiting.set(mySeq, { target, done, sentAt: hrMs() });
      const pkt = buildEcho(id, mySeq);
      s.send(pkt, 0, pkt.length, target, (err) => {
        if (!err) return;
        // e.g. ENETUNREACH once the only route is gone: an answer in itself.
        waiting.delete(mySeq);
        done({ ok: false, error: err.message });
      });
    });
  }

  async function check(target: string, timeoutMs: number, tries: number): Promise<CheckOutcome> {
    let n = 0;
    for (; n < tries; n++) {
      const o = await echo(target, timeoutMs);
      if (o.ok) return { reachable: true, tries: n + 1, ...(o.rttMs !== undefined ? { rttMs: o.rttMs } : {}) };
      // No socket at all: more tries would not help, and "unreachable" would be a guess.
      if (o.error && !sock) return { reachable: false, tries: n + 1, error: o.error };
    }
    return { reachable: false, tries: n };
  }

  return {
    echo,
    check,
    close() {
      closed = true;
      for (const [k, w] of waiting) {
        waiting.delete(k);
        w.done({ ok: false, error: 'pinger closed' });
      }
      sock?.close();
      sock = null;
    },
  };
}
