// Reject, don't sanitise: names reach argv and sysfs paths only after this check.
const IFNAME = /^[A-Za-z0-9_.:@-]{1,15}$/;

export function isValidIfName(name: string): boolean {
  return IFNAME.test(name) && name !== '.' && name !== '..';
}

export function assertIfName(name: string): string {
  if (!isValidIfName(name)) {
    throw Object.assign(new Error(`invalid interface name ${JSON.stringify(name)}`), { code: 'E_IFNAME' });
  }
  return name;
}
