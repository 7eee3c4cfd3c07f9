import { isIP } from 'node:net';

/** Loopback literals only: a name could resolve anywhere, and 0.0.0.0 is every interface. */
export function isLoopbackHost(host: string): boolean {
  if (host === 'localhost') return true;
  const fam = isIP(host);
  if (fam === 4) return host.split('.')[0] === '127';
  if (fam === 6) return host === '::1' || host === '0:0:0:0:0:0:0:1';
  return false;
}
