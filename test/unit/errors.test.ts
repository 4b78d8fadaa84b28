import { readFileSync } from 'node:fs';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as errors from '../../src/errors.ts';

test("README's exit status table lists each error class's status once, and nothing else", () => {
  const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
  const section = readme.split('### Exit statuses')[1]?.split('\n## ')[0] ?? '';
  const documented = [...section.matchAll(/^\| (\d+) \|/gm)].map((m) => Number(m[1]));
  assert.equal(documented, [...new Set(documented)].sort((a, b) => a - b), 'one row per status, in order');
  const classes = (Object.values(errors) as unknown[]).filter(
    (v): v is typeof errors.VxvirtError => typeof v === 'function' && v.prototype instanceof errors.VxvirtError,
  );
  const used = new Set([0, ...classes.map((C) => new C('x').exitCode)]);
  assert.equal(documented, [...used].sort((a, b) => a - b));
});

test('CheckFailedError and FileConflictError carry their documented statuses', () => {
  assert.is(errors.exitCodeOf(new errors.CheckFailedError('check found 1 failure')), 10);
  assert.is(errors.exitCodeOf(new errors.FileConflictError('x')), 7);
});

test.run();
