#!/usr/bin/env node
// How many tests each test file registers, without running them — to keep
// test/support/suites.json in step when tests are added or removed:
//
//   node test/support/count-tests.mjs            list files whose count differs
//   node test/support/count-tests.mjs --write    also write the new counts
//
// Imports every file of every suite with VXVIRT_TEST_REGISTER_ONLY=1 (the
// driver registers, runs nothing) and compares with the manifest. A file is
// listed or removed only by --write, so a review sees each change.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const root = new URL('../..', import.meta.url).pathname;
const MANIFEST = 'test/support/suites.json';
const manifest = JSON.parse(readFileSync(join(root, MANIFEST), 'utf8'));
const write = process.argv.includes('--write');
const dir = mkdtempSync(join(tmpdir(), 'vxvirt-count-'));
let changes = 0;
try {
  for (const [suite, spec] of Object.entries(manifest.suites)) {
    const files = readdirSync(join(root, 'test', suite)).filter((f) => f.endsWith('.test.ts')).sort();
    const report = join(dir, `${suite}.json`);
    const r = spawnSync(
      process.execPath,
      ['--import', 'tsx', '--import', './test/support/uvu-redirect.mjs', 'test/support/driver.mjs', report, ...files.map((f) => `test/${suite}/${f}`)],
      { cwd: root, encoding: 'utf8', env: { ...process.env, VXVIRT_TEST_REGISTER_ONLY: '1' } },
    );
    const rec = JSON.parse(readFileSync(report, 'utf8'));
    for (const [file, err] of Object.entries(rec.importErrors)) throw new Error(`${file} does not load: ${err}\n${r.stderr}`);
    const next = {};
    for (const f of files) {
      const n = rec.groups.filter((g) => g.file === `test/${suite}/${f}`).reduce((a, g) => a + g.tests.length, 0);
      const old = spec.files[f];
      const oldN = typeof old === 'number' ? old : old?.tests;
      if (oldN !== n) {
        console.log(`${suite}/${f}: ${oldN ?? 'not listed'} -> ${n}`);
        changes++;
      }
      next[f] = typeof old === 'object' ? { ...old, tests: n } : n;
    }
    for (const f of Object.keys(spec.files)) if (!files.includes(f)) (console.log(`${suite}/${f}: no such file`), changes++);
    spec.files = next;
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
if (write && changes) writeFileSync(join(root, MANIFEST), `${JSON.stringify(manifest, null, 2)}\n`);
console.log(changes ? `${changes} change(s)${write ? ` written to ${MANIFEST}` : ` (--write to record them in ${MANIFEST})`}` : `${MANIFEST} is in step`);
