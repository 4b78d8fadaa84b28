// uvu as the test files see it under test/run.mjs (uvu-resolve.mjs routes
// their `import … from 'uvu'` here): the same API, but every test, test.only,
// test.skip, hook failure and test.run() is written down in a registry that
// test/support/driver.mjs hands to the runner. The runner then judges from
// what was registered and what ran, never from uvu's coloured output.
//
// A test that throws a missing-prerequisite error (test/support/require.ts)
// is recorded as skipped when VXVIRT_TEST_PARTIAL=1, and fails otherwise.
import * as uvu from 'uvu';

/**
 * groups: one per suite object and test.run() (uvu's default `test` is shared
 * by every file and reset by each run()). file: the test file being imported.
 */
const registry = (globalThis.__vxvirtTestRegistry ??= { file: undefined, groups: [] });
const partial = process.env.VXVIRT_TEST_PARTIAL === '1';

const firstLine = (err) => String(err instanceof Error ? err.message : err).split('\n')[0];

function track(real, title) {
  let group;
  const current = () => {
    if (!group || group.runCalled || group.file !== registry.file) {
      group = { file: registry.file ?? '(outside a test file)', suite: title, tests: [], only: false, runCalled: false, hookErrors: [], skipReason: undefined };
      registry.groups.push(group);
    }
    return group;
  };
  const add = (name, kind) => {
    const g = current();
    const entry = { name: String(name ?? '(no name)'), kind, state: kind === 'skip' ? 'skipped' : 'registered', reason: kind === 'skip' ? 'test.skip' : undefined };
    g.tests.push(entry);
    return { g, entry };
  };
  const wrap = (entry, handler) => async (ctx) => {
    entry.state = 'running';
    const started = performance.now();
    try {
      await handler(ctx);
      entry.ms = Math.round(performance.now() - started);
      entry.state = 'passed';
    } catch (err) {
      if (partial && err?.missingPrerequisite) {
        entry.state = 'skipped';
        entry.reason = firstLine(err);
        process.stdout.write(`\n  skipped "${entry.name}": ${entry.reason}\n`);
        return;
      }
      entry.ms = Math.round(performance.now() - started);
      entry.state = 'failed';
      entry.reason = firstLine(err);
      throw err;
    }
  };
  const hook = (realHook, what) => (fn) => {
    const g = current();
    realHook(async (ctx) => {
      try {
        await fn(ctx);
      } catch (err) {
        if (partial && err?.missingPrerequisite && what === 'before') g.skipReason = firstLine(err);
        else g.hookErrors.push({ hook: what, message: firstLine(err) });
        // uvu swallows a failing `before` (its tests then just do not run);
        // the runner reports those tests as not run, with this message.
        throw err;
      }
    });
  };

  const t = (name, handler) => {
    const { entry } = add(name, 'test');
    real(name, wrap(entry, handler));
  };
  t.only = (name, handler) => {
    const { g, entry } = add(name, 'only');
    g.only = true;
    real.only(name, wrap(entry, handler));
  };
  t.skip = (name, handler) => {
    add(name, 'skip');
    real.skip(name, handler);
  };
  t.before = hook(real.before, 'before');
  t.before.each = hook(real.before.each, 'before.each');
  t.after = hook(real.after, 'after');
  t.after.each = hook(real.after.each, 'after.each');
  t.run = () => {
    current().runCalled = true;
    real.run();
  };
  return t;
}

export const suite = (title = '', state = {}) => track(uvu.suite(title, state), title);
export const test = track(uvu.test, '');
export const exec = uvu.exec;
