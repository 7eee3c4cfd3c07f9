// A policy directory: several files' PolicyInputs -> one PolicyInput for resolve.ts. Pure.
//
// Precedence (files are taken in name order, `10-base.yaml` before `20-site.yaml`):
//   - Settings (sampling, defaults, breaker, recovery, actions, fdb, reachability, metrics, notify, dryRun) merge key by key: a key the
//     later file writes replaces the earlier value; keys it does not write are kept. A list
//     setting (breaker.shutOrder, breaker.floodShutRoles) is one value: replaced whole.
//   - `esxi` is taken WHOLE from the last file that writes it: its hosts are not merged key by
//     key nor concatenated. A host's connection, keys, NICs and actions belong together; a later
//     file changing half of a host (or adding one that an earlier file also names) would build a
//     host nobody wrote. A file that does not write `esxi` leaves the earlier one in place.
//   - `ports` lists are CONCATENATED in file order. Rules are first-match, so an earlier file's
//     rule wins over a later file's for the same port: a base file pins what must never change
//     (mgmt protected), later files add ports. Two rules with the same `match` in any files is an
//     error naming both places, and a later literal name an earlier glob already matches is the
//     usual "never applies" error, since neither can mean what its author wanted.
//   - Every file must say `version: 1` itself: a file is also read on its own (editor, review,
//     `policy check` of one file), and a version is a promise about that file's contents.
// Each value keeps the file:line:col it was written at, so errors point into the right file.
import { MAX_PORT_RULES } from './defaults.js';
import { PolicyError } from './errors.js';
import { isBad } from './resolve.js';
import { emptyPolicyInput, type PolicyInput } from './schema.js';

export interface Merged {
  input: PolicyInput;
  errors: PolicyError[];
}

/**
 * Merge per-file inputs (already in load order) into one. `file` names the whole (the directory)
 * and becomes Policy.file. Errors here are the ones only the directory can have: a file without
 * `version`, and more than MAX_PORT_RULES rules in all.
 */
export function mergePolicyInputs(inputs: readonly PolicyInput[], file: string): Merged {
  const errors: PolicyError[] = [];
  const merged: PolicyInput = {
    ...emptyPolicyInput(file, { line: 1, col: 1 }, new Set()),
    files: inputs.map((i) => i.file),
    badByFile: new Map(inputs.map((i) => [i.file, i.bad])),
  };
  let everyVersion = true;
  let capped = false;
  for (const inp of inputs) {
    if (!inp.version) {
      everyVersion = false;
      if (!isBad(inp.bad, 'version')) {
        errors.push(
          new PolicyError({
            code: 'E_POLICY_MISSING',
            file: inp.file,
            line: inp.root.line,
            col: inp.root.col,
            field: 'version',
            message: 'required in every file of a policy directory: add `version: 1` at the top',
          }),
        );
      }
    } else {
      merged.version = inp.version;
    }
    Object.assign(merged.sampling, inp.sampling);
    Object.assign(merged.defaults, inp.defaults);
    Object.assign(merged.breaker, inp.breaker);
    Object.assign(merged.recovery, inp.recovery);
    Object.assign(merged.actions, inp.actions);
    Object.assign(merged.fdb, inp.fdb);
    Object.assign(merged.reachability, inp.reachability);
    Object.assign(merged.metrics, inp.metrics);
    // webhook and hookArgv are separate keys: one file may write the URL, another the hook; both are used.
    Object.assign(merged.notify, inp.notify);
    if (inp.esxi) merged.esxi = inp.esxi;
    if (inp.dryRun) merged.dryRun = inp.dryRun;
    if (inp.ports) {
      merged.ports ??= [];
      for (const rule of inp.ports) {
        if (capped) break;
        if (merged.ports.length === MAX_PORT_RULES) {
          capped = true;
          // Same cap as one file, for the same reason: shutRank = roleIndex * 1000 + ruleIndex.
          errors.push(
            new PolicyError({
              code: 'E_POLICY_RANGE',
              file: rule.file,
              line: rule.line,
              col: rule.col,
              field: rule.field,
              message: `at most ${MAX_PORT_RULES} rules are allowed in all files of a policy directory together`,
            }),
          );
          break;
        }
        merged.ports.push(rule);
      }
    }
    // Settings: a field invalid in any file skips the cross-checks that read it (no cascades;
    // the file is rejected anyway). Rule fields are numbered per file, and `esxi` comes from one
    // file, so those stay in badByFile (resolve.ts asks the file that wrote them).
    for (const f of inp.bad) if (!/^(ports|esxi)(\[|\.|$)/.test(f)) merged.bad.add(f);
  }
  // Missing or unsupported versions were reported per file; keep resolve.ts from saying it again.
  if (!everyVersion) merged.bad.add('version');
  return { input: merged, errors };
}
