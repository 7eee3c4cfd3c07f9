import { configDefaults, defineConfig } from 'vitest/config';

// Three projects in two groups (sequence.groupOrder: group 1 starts only after every file of
// group 0 is done):
// - unit (group 0): pure code, fixtures and child processes at most (no namespace, no storm, no
//   lab lock needed): two files at a time (vitest's default is cores - 1, one worker on a 2-core
//   machine), and one module graph per worker (isolate: false): starting a fresh fork per file
//   cost ~0.7 s of 75 files. No unit file mocks modules or stubs globals (fake timers are restored
//   in afterEach); the agent's module-level state is caches of loaded native modules and package
//   paths.
// - package (group 0, beside unit): the Debian package end to end (debian-package.test.ts) and
//   install.sh into a staging root (install.test.ts, no lab, no timing). Most of the former's
//   ~75 s is building the .deb and a Debian root (mmdebstrap), which needs no lab; its one storm
//   runs in a lab of its own prefix while only unit files run, which start no storm, so storms
//   still never overlap. Its bounds are loose (the cut within 5 s, the watchdog within 30 s).
//   Sorted first in their group (project name before "unit", larger file first), both start at
//   once; unit files take a worker as each ends. A group's projects must have the same maxWorkers.
// - integration (group 1): real namespaces and storms, one file at a time so storms never
//   overlap on a 2-core machine and skew each other's timing.
const PACKAGE = ['test/integration/debian-package.test.ts', 'test/integration/install.test.ts'];
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
        test: { name: 'package', include: PACKAGE, maxWorkers: 2, sequence: { groupOrder: 0 } },
      },
      {
        extends: true,
        test: { name: 'integration', include: ['test/integration/**/*.test.ts'], exclude: [...configDefaults.exclude, ...PACKAGE], fileParallelism: false, sequence: { groupOrder: 1 } },
      },
    ],
  },
});
