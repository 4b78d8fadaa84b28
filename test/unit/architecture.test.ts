// The module map of ARCHITECTURE.md, checked: every module in src/ belongs to
// one layer, pure modules touch nothing, the hooks' code never reaches
// libvirt or the CLI, and nothing imports in a circle. A new module fails
// here until ARCHITECTURE.md and LAYERS below say where it belongs.
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, normalize, relative } from 'node:path';
import ts from 'typescript';
import { test } from 'uvu';
import * as assert from 'uvu/assert';

const root = join(dirname(new URL(import.meta.url).pathname), '../..');
const src = join(root, 'src');

/** The layers, innermost first (ARCHITECTURE.md, "Layers"). */
const LAYERS: Record<string, readonly string[]> = {
  pure: [
    'errors.ts', 'network-definition.ts', 'xml.ts', 'domain-xml.ts', 'generator.ts', 'plan.ts', 'users.ts',
    'drift.ts', 'reconcile.ts', 'redefine.ts', 'check.ts', 'frr.ts', 'host-limits.ts', 'hook-plan.ts', 'network-port.ts',
    'templates.ts', 'libvirt/virsh-output.ts', 'libvirt/choice.ts', 'host-address.ts', 'apply.ts', 'formats.ts', 'version.ts',
  ],
  effects: [
    'crash-point.ts', 'iproute.ts', 'store.ts', 'sysctl.ts', 'log.ts', 'hook-stdin.ts', 'hook-install.ts', 'check-facts.ts',
    'libvirt/backend.ts', 'libvirt/bindings.ts', 'libvirt/virsh.ts', 'libvirt/networks.ts', 'libvirt/devices.ts', 'libvirt/index.ts',
  ],
  transactions: ['lifecycle.ts', 'network-transactions.ts', 'attach.ts', 'reconcile-run.ts', 'status.ts'],
  entries: ['hook.ts', 'network-hook.ts', 'hook-entry.ts', 'hook-main.ts', 'network-hook-main.ts'],
};
const ORDER = ['pure', 'effects', 'transactions', 'entries', 'cli'];

function modules(): string[] {
  return readdirSync(src, { recursive: true })
    .map(String)
    .filter((f) => f.endsWith('.ts'))
    .sort();
}
const layerOf = (m: string): string | undefined =>
  m.startsWith('cli/') ? 'cli' : Object.keys(LAYERS).find((l) => LAYERS[l]!.includes(m));

const source = (m: string): string => readFileSync(join(src, m), 'utf8');
/** The src/ modules `m` imports (type-only imports included: they are still a dependency of the design). */
function importsOf(m: string): string[] {
  const out: string[] = [];
  for (const match of source(m).matchAll(/from '(\.\.?\/[^']+)'/g)) {
    out.push(relative(src, normalize(join(src, dirname(m), match[1]!))));
  }
  return [...new Set(out)];
}
/** Node built-ins and packages through which a module touches the world. */
const EFFECTFUL = /from '(node:fs|node:child_process|node:fs\/promises|node:net\/sockets|execa|@unraid\/libvirt)'/;

test('every module in src/ has a layer', () => {
  const unplaced = modules().filter((m) => layerOf(m) === undefined);
  assert.equal(unplaced, [], `modules without a layer (add them to ARCHITECTURE.md and LAYERS): ${unplaced.join(', ')}`);
  for (const m of Object.values(LAYERS).flat()) assert.ok(modules().includes(m), `${m} is listed but does not exist`);
});

/** Pure but for reading vxvirt's own files, which ship with the code and never change at run time. */
const READS_OWN_FILES = ['templates.ts'];

test('pure modules touch nothing and import only pure modules', () => {
  for (const m of LAYERS.pure!) {
    if (!READS_OWN_FILES.includes(m)) assert.not.ok(EFFECTFUL.test(source(m)), `${m} is listed as pure but imports ${EFFECTFUL.exec(source(m))?.[1]}`);
    for (const dep of importsOf(m)) assert.is(layerOf(dep), 'pure', `pure ${m} imports ${dep} (${layerOf(dep)})`);
  }
});

test('no module imports one of a later layer (cli last)', () => {
  for (const m of modules()) {
    for (const dep of importsOf(m)) {
      assert.ok(ORDER.indexOf(layerOf(dep)!) <= ORDER.indexOf(layerOf(m)!), `${m} (${layerOf(m)}) imports ${dep} (${layerOf(dep)})`);
    }
  }
});

/** Every module reachable from `entry` by imports. */
function closure(entry: string): Set<string> {
  const seen = new Set<string>();
  const visit = (m: string): void => {
    if (seen.has(m)) return;
    seen.add(m);
    importsOf(m).forEach(visit);
  };
  visit(entry);
  return seen;
}

test('the hooks never reach libvirt (it would deadlock) or the CLI', () => {
  for (const entry of ['hook-main.ts', 'network-hook-main.ts']) {
    const reached = [...closure(entry)];
    const bad = reached.filter((m) => (m.startsWith('libvirt/') && m !== 'libvirt/choice.ts' && m !== 'libvirt/virsh-output.ts') || m.startsWith('cli/'));
    assert.equal(bad, [], `${entry} reaches ${bad.join(', ')}`);
  }
});

test('no import cycles', () => {
  const state = new Map<string, 'visiting' | 'done'>();
  const visit = (m: string, path: string[]): void => {
    if (state.get(m) === 'done') return;
    assert.not.ok(state.get(m) === 'visiting', `import cycle: ${[...path, m].join(' -> ')}`);
    state.set(m, 'visiting');
    for (const dep of importsOf(m)) visit(dep, [...path, m]);
    state.set(m, 'done');
  };
  for (const m of modules()) visit(m, []);
});

/** Functions (of any kind) in `m` longer than `max` lines, as "m:LINE NAME (N lines)". */
function longFunctions(m: string, max: number): string[] {
  const file = ts.createSourceFile(m, source(m), ts.ScriptTarget.Latest, true);
  const found: string[] = [];
  const visit = (node: ts.Node): void => {
    if (ts.isFunctionLike(node) && 'body' in node && node.body) {
      const first = file.getLineAndCharacterOfPosition(node.getStart()).line;
      const lines = file.getLineAndCharacterOfPosition(node.end).line - first + 1;
      const name = node.name && ts.isIdentifier(node.name) ? node.name.text : '(anonymous)';
      if (lines > max) found.push(`${m}:${first + 1} ${name} (${lines} lines)`);
    }
    ts.forEachChild(node, visit);
  };
  visit(file);
  return found;
}

test('no function in src/ is longer than 80 lines: split it into named steps', () => {
  assert.equal(modules().flatMap((m) => longFunctions(m, 80)), []);
  assert.ok(longFunctions('lifecycle.ts', 5).length > 0, 'the length check finds functions at all');
});

test('the checker sees imports (guards against a regex that matches nothing)', () => {
  assert.ok(importsOf('lifecycle.ts').includes('iproute.ts'));
  assert.ok(closure('hook-main.ts').has('lifecycle.ts'));
  assert.ok(EFFECTFUL.test(source('store.ts')));
});

test.run();
