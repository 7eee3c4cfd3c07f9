// Run a compiled Node entry point under extra node flags (e.g. --cpu-prof, which NODE_OPTIONS
// refuses), through startAgent's `wrap`: the argv becomes
//   node --cpu-prof ... dist/scripts/lab/node-flags.js  node  ENTRY  args...
// This drops the inner `node`, restores the argv ENTRY expects ([node, ENTRY, args...]) and
// imports ENTRY as if it had been started directly.
import { pathToFileURL } from 'node:url';

const [node, , , entry, ...rest] = process.argv;
if (!node || !entry) {
  process.stderr.write('usage: node [flags] node-flags.js NODE ENTRY [args...]\n');
  process.exit(2);
}
process.argv = [node, entry, ...rest];
await import(pathToFileURL(entry).href);
