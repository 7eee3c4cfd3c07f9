import { setFlagsFromString } from 'node:v8';

// A cold agent reacts like a warm one (issue 11 item 4): the first storm must not compile code.
//
// Compile ahead: V8 compiles a function lazily, at its first call. Logged in a cold lab storm
// (--log-function-events, kvm, session 14): 92 of the agent's functions ran for the first time
// in the storm's first 130 ms, ~4.7 ms of parsing and compiling on the JS thread, most of it
// before the stop (the scheduler's wake, the FDB and tripwire sources, recorder, executor, port
// kinds: the daemon's own closures, which the warm-up's synthetic trips do not call). With
// --no-lazy set before the program loads, 13 were left, all inside node's Buffer code after the
// stop. Its price: ~80 ms more at start and ~4.5 MB of bytecode.
//
// Keep: V8 discards the bytecode of a function that has not run across several mark-compact
// GCs (--flush-bytecode, bytecode-old-age 5); in a test a function run once came back as a lazy
// stub after ~10 of them. The trip path runs at start (warmup.ts) and then not for months while
// the idle agent's heap turns over, so without this its first real storm would compile it again.
// V8 reads that flag at each GC, so setting it at run time holds from the next one on.

/** Keep compiled bytecode for the life of the process (see the file comment). */
export function keepCompiledCode(): void {
  setFlagsFromString('--no-flush-bytecode');
}

/**
 * Compile every function of code loaded from now on as it loads, and keep it: for the daemon,
 * called before its modules are imported (agent/cli.ts). The CLI's short commands stay lazy.
 */
export function compileAheadAndKeep(): void {
  setFlagsFromString('--no-lazy');
  keepCompiledCode();
}
