import { defineConfig } from 'vitest/config';

// Two projects, one after the other (sequence.groupOrder: integration starts only after every
// unit file is done):
// - unit: pure code, fixtures and child processes at most (no namespace, no storm, no lab lock
//   needed): two files at a time (vitest's default is cores - 1, one worker on a 2-core machine),
//   and one module graph per worker (isolate: false): starting a fresh fork per file cost ~0.7 s of
//   75 files. No unit file mocks modules or stubs globals (fake timers are restored in afterEach);
//   the agent's module-level state is caches of loaded native modules and package paths.
// - integration: real namespaces and storms, one file at a time so storms never overlap on a
//   2-core machine and skew each other's timing.
export default defineConfig({
  test: {
    testTimeout: 60_000,
    hookTimeout: 60_000,
    projects: [
      {
        extends: true,
        test: { name: 'unit', include: ['test/unit/**/*.test.ts'], maxWorkers: 2, isolate: false, sequence: { groupOrder: 0 } },
      },
      {
        extends: true,
        test: { name: 'integration', include: ['test/integration/**/*.test.ts'], fileParallelism: false, sequence: { groupOrder: 1 } },
      },
    ],
  },
});
