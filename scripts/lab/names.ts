// Names that enter the lab toolkit are validated here, once, before any command is built.
// Reject, don't sanitise (STYLE.md rule 5).

const IFNAME = /^[A-Za-z0-9_.:@-]{1,15}$/;
// A prefix is the only thing that scopes teardown, so it must be non-empty and plain:
// an empty prefix would match every namespace on the machine.
const PREFIX = /^[A-Za-z][A-Za-z0-9_-]{0,23}$/;
const NETNS = /^[A-Za-z0-9_-]{1,48}$/;

export function assertIfName(name: string): string {
  if (!IFNAME.test(name)) throw new Error(`invalid interface name ${JSON.stringify(name)}`);
  return name;
}

export function assertPrefix(prefix: string): string {
  if (!PREFIX.test(prefix)) throw new Error(`invalid lab prefix ${JSON.stringify(prefix)} (want ${PREFIX})`);
  return prefix;
}

export function assertNetns(name: string): string {
  if (!NETNS.test(name)) throw new Error(`invalid namespace name ${JSON.stringify(name)}`);
  return name;
}
