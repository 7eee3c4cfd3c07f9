#!/usr/bin/env node
// The entry (package.json bin, the service unit, install.sh's wrapper). For the daemon (`run`)
// V8 compiles all of its code as it loads and keeps it compiled (daemon/keep-code.ts); those
// flags apply to code compiled after they are set, so the program is imported only now.
import { compileAheadAndKeep } from './daemon/keep-code.js';

if (process.argv[2] === 'run') compileAheadAndKeep();
await import('./cli/program.js');
