import type { Socket } from 'node:net';
import { loadAddon } from '../host/addon.js';

// Who is on the other end of a control connection. Node has no API for SO_PEERCRED, so the
// native addon asks the kernel; the fd comes from the accepted socket's libuv handle. When
// either is unavailable, the client's own claim is journaled and marked as such.

export interface PeerCred {
  pid: number;
  uid: number;
  gid: number;
}

/** Journaled with every override: `source` says whether the kernel vouches for the uid. */
export type Requester =
  | { uid: number; pid: number; gid: number; source: 'kernel'; claimedUser?: string }
  | { uid: number | null; source: 'client-claimed'; claimedUser?: string };

type PeerAddon = { peerCred(fd: number): PeerCred };

function load(): PeerAddon | null {
  const a = loadAddon();
  return !('error' in a) && typeof a.peerCred === 'function' ? (a as unknown as PeerAddon) : null;
}

/** The kernel's credentials of the peer, or null (no addon, or no fd on this handle). */
export function peerCredOf(sock: Socket): PeerCred | null {
  const a = load();
  const fd = (sock as unknown as { _handle?: { fd?: unknown } })._handle?.fd;
  if (!a || typeof fd !== 'number' || fd < 0) return null;
  try {
    return a.peerCred(fd);
  } catch {
    return null;
  }
}

/** The requester as journaled: the kernel's word when there is one, else the client's claim. */
export function requester(cred: PeerCred | null, args: Record<string, unknown>): Requester {
  const claimedUser = typeof args.user === 'string' && args.user.length <= 64 ? args.user : undefined;
  if (cred) return { uid: cred.uid, pid: cred.pid, gid: cred.gid, source: 'kernel', ...(claimedUser ? { claimedUser } : {}) };
  const uid = typeof args.uid === 'number' && Number.isInteger(args.uid) && args.uid >= 0 ? args.uid : null;
  return { uid, source: 'client-claimed', ...(claimedUser ? { claimedUser } : {}) };
}

/** A short human form for reasons: "uid 0 (kernel)" or "user alice (claimed)". */
export function requesterText(r: Requester): string {
  if (r.source === 'kernel') return `uid ${r.uid}${r.claimedUser ? ` (${r.claimedUser})` : ''}`;
  return `${r.claimedUser ? `user ${r.claimedUser}` : `uid ${r.uid ?? 'unknown'}`} (claimed)`;
}
