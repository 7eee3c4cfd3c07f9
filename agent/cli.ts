#!/usr/bin/env node
// The entry (package.json bin, the service unit, install.sh's wrapper). For the daemon (`run`)
// V8 compiles all of its code as it loads and keeps it compiled (daemon/keep-code.ts); those
// flags apply to code compiled after they are set, so the program is imported only now.
import { compileAheadAndKeep } from './daemon/keep-code.js';

if (process.argv[2] === 'run') {
  // Two libraries no storm runs are loaded first, compiled lazily as usual: the argument parser
  // (once, at start) and the YAML parser (the policy, at start and on a reload). Compiled ahead
  // they cost each start ~50 ms (yaml ~30, commander ~15, measured in scripts/bench-start.ts).
  await import('commander');
  await import('yaml');
  compileAheadAndKeep();
}
await import('./cli/program.js');
