// Alias-bomb guard. YAML aliases (`*name`) let a few lines stand for an exponentially large
// structure ("billion laughs"). The schema walker never expands a subtree the schema does not
// expect, so a bomb cannot hurt the loader itself; this check exists so a bomb anywhere in the
// file is *reported* as one, with a position, instead of hiding behind other errors.
//
// One linear pass over the syntax tree (aliases not followed), then memoised expanded sizes.
// The yaml package's own maxAliasCount only applies in toJS(), which this loader never calls
// (toJS loses positions), and its per-alias resolve() rescans the whole document each time.
import { isAlias, isCollection, isPair, visit, type Document, type LineCounter } from 'yaml';
import { MAX_ALIAS_COUNT } from './defaults.js';
import { PolicyError } from './errors.js';

/** Nodes that aliases may add to the document once expanded; a policy reusing a thresholds block needs a few hundred. */
export const MAX_ALIAS_EXPANSION = 10_000;

export function checkAliases(doc: Document.Parsed, lc: LineCounter, file: string): PolicyError[] {
  const anchors = new Map<string, unknown>();
  const aliases: Array<{ node: { source: string; range?: unknown }; target: unknown }> = [];
  const at = (node: unknown, message: string): PolicyError => {
    const range = (node as { range?: unknown }).range;
    const off = Array.isArray(range) && typeof range[0] === 'number' ? range[0] : 0;
    const p = lc.linePos(off);
    return new PolicyError({ code: 'E_POLICY_ALIAS', file, line: Math.max(1, p.line), col: Math.max(1, p.col), field: '(yaml)', message });
  };

  // Pre-order visit: an anchor is seen before anything inside or after it, which is exactly the
  // YAML rule (an alias refers to the latest earlier definition of its anchor).
  const errors: PolicyError[] = [];
  visit(doc, {
    Node(_key, node) {
      if (isAlias(node)) {
        if (aliases.length === MAX_ALIAS_COUNT) {
          errors.push(at(node, `more than ${MAX_ALIAS_COUNT} aliases in one policy (an alias bomb?)`));
          return visit.BREAK;
        }
        const target = anchors.get(node.source);
        if (target === undefined) errors.push(at(node, `alias *${node.source} refers to no anchor before it`));
        else aliases.push({ node, target });
      } else if (node.anchor) {
        anchors.set(node.anchor, node);
      }
      return undefined;
    },
  });
  if (errors.length > 0) return errors;

  const targetOf = new Map<unknown, unknown>(aliases.map((a) => [a.node, a.target]));
  const sizes = new Map<unknown, number>();
  const inProgress = new Set<unknown>();
  // Expanded node count; Infinity for a cycle (an alias inside the node it names).
  const size = (node: unknown): number => {
    if (node === null || typeof node !== 'object') return 0;
    const known = sizes.get(node);
    if (known !== undefined) return known;
    if (inProgress.has(node)) return Infinity;
    inProgress.add(node);
    let n: number;
    if (isAlias(node)) n = size(targetOf.get(node));
    else if (isPair(node)) n = size(node.key) + size(node.value);
    else if (isCollection(node)) n = 1 + (node.items as unknown[]).reduce<number>((s, i) => s + size(i), 0);
    else n = 1;
    inProgress.delete(node);
    sizes.set(node, n);
    return n;
  };

  let added = 0;
  for (const a of aliases) {
    const s = size(a.target);
    if (s === Infinity) return [at(a.node, `alias *${a.node.source} refers to a node that contains it`)];
    added += s;
    if (added > MAX_ALIAS_EXPANSION) {
      return [at(a.node, `aliases expand the policy by more than ${MAX_ALIAS_EXPANSION} nodes (an alias bomb?)`)];
    }
  }
  return [];
}
