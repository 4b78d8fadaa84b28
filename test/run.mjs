#!/usr/bin/env node
// The test command (`npm test`): build, type-check, then the unit,
// integration and lab suites, each in its own uvu process. Its last line is
// `N passed, N failed` (`, N skipped` on a partial run) and it exits non-zero
// if anything failed.
//
//   npm test                              all suites
//   npm test -- unit integration          only the named suites (the others are
//                                         "not selected", and the last line says so)
//   VXVIRT_TEST_PARTIAL=1 npm test        a partial run is intended: see below
//
// Strict by default: whatever does not run is a failure, not a quiet skip.
// test/support/suites.json lists each suite's test files with the number of
// tests each registers, and what a suite or file needs (root, tools). The run
// fails when
//   - a listed file is missing, a file is not listed, or a file registers a
//     different number of tests than listed (none at all included);
//   - a test is skipped: test.skip, a test.only (which also leaves the rest of
//     its suite unrun), a missing prerequisite of a suite, a file or a test
//     (test/support/require.ts's needs());
//   - a test did not run (a failing `before` hook, a suite never run(), the
//     process ending early) or failed, a file failed to import, a hook failed.
// With VXVIRT_TEST_PARTIAL=1, skips (and only skips) are allowed: they are
// counted, named on the line before the last, and the last line says
// `N passed, N failed, N skipped`.
//
// Outcomes come from a record of what each file registered and how each test
// ended (test/support/uvu-tracked.mjs, which every `import … from 'uvu'` is
// routed to), not from uvu's printed output.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const root = new URL('..', import.meta.url).pathname;
const MANIFEST = 'test/support/suites.json';
const manifest = JSON.parse(readFileSync(join(root, MANIFEST), 'utf8'));
const ALL = Object.keys(manifest.suites);
const partial = process.env.VXVIRT_TEST_PARTIAL === '1';
const PARTIAL_HINT = 'VXVIRT_TEST_PARTIAL=1 allows a partial run';

const wanted = process.argv.slice(2);
const unknown = wanted.filter((s) => !ALL.includes(s));
if (unknown.length > 0) {
  process.stderr.write(`test/run.mjs: unknown suite ${unknown.join(', ')}: the suites are ${ALL.join(', ')}\n`);
  process.exit(2);
}
const selected = ALL.filter((s) => wanted.length === 0 || wanted.includes(s));

let passed = 0;
/** What failed, one line each. A line may stand for several failed tests (`count`). */
const failures = [];
/** What was skipped (partial runs only), one line each. */
const skips = [];
const fail = (what, count = 1) => failures.push({ what, count });
/** A skip: counted as such on a partial run, as a failure otherwise. */
const skip = (what, count = 1) => (partial ? skips : failures).push({ what: partial ? what : `${what} (skipped; ${PARTIAL_HINT})`, count });
const total = (list) => list.reduce((n, x) => n + x.count, 0);

// ---- prerequisites (the same rules as test/support/require.ts) -----------------

const SEARCH_PATH = `${process.env.PATH ?? ''}:/usr/local/sbin:/usr/sbin:/sbin`;
function present(what) {
  if (what === 'root') return process.getuid?.() === 0;
  if (what.includes('/')) return existsSync(what.startsWith('/') ? what : join(root, what));
  return spawnSync('sh', ['-c', 'command -v "$1"', 'sh', what], { env: { ...process.env, PATH: SEARCH_PATH } }).status === 0;
}
/** "missing X (how), Y (how)" or undefined when all are here. */
function missing(needs) {
  const gone = needs.filter((n) => !present(n));
  if (gone.length === 0) return undefined;
  return `missing ${gone.map((g) => `${g} (${manifest.tools[g] ?? 'see test/support/suites.json'})`).join(', ')}; test/all installs what the tests need`;
}

// ---- steps -------------------------------------------------------------------

function step(title, cmd, args) {
  process.stdout.write(`\n== ${title}\n`);
  const r = spawnSync(cmd, args, { cwd: root, stdio: 'inherit' });
  return r.status === 0;
}

/** Every *.test.ts under test/<suite>, relative to it. */
function filesOnDisk(suite) {
  return readdirSync(join(root, 'test', suite), { recursive: true })
    .map(String)
    .filter((f) => f.endsWith('.test.ts'))
    .sort();
}

/**
 * Suites that start libvirtd run under `tini -s`, a child subreaper, as a
 * systemd host effectively has: the daemons and QEMU processes they orphan
 * are reaped at once by it rather than late by this machine's PID 1, and
 * `virsh destroy` waits for that reaping.
 */
function runDriver(suite, files, { capture = false } = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'vxvirt-test-report-'));
  const reportFile = join(dir, 'report.json');
  const driver = [process.execPath, '--import', 'tsx', '--import', './test/support/uvu-redirect.mjs', 'test/support/driver.mjs', reportFile, ...files];
  const argv = manifest.suites[suite].needs.includes('tini') ? ['tini', '-s', '--', ...driver] : driver;
  return new Promise((resolve) => {
    const child = spawn(argv[0], argv.slice(1), { cwd: root, stdio: ['ignore', capture ? 'pipe' : 'inherit', capture ? 'pipe' : 'inherit'] });
    const output = [];
    if (capture) {
      child.stdout.on('data', (d) => output.push(d));
      child.stderr.on('data', (d) => output.push(d));
    }
    child.on('close', (code, signal) => {
      let report;
      try {
        report = JSON.parse(readFileSync(reportFile, 'utf8'));
      } catch {
        report = undefined;
      }
      rmSync(dir, { recursive: true, force: true });
      resolve({ code, signal, report, output: Buffer.concat(output) });
    });
  });
}

/**
 * A suite with `"parallel": N` in the manifest runs its files N at a time,
 * each file in its own uvu process, longest first (by the `seconds` the
 * manifest gives a file, else its number of tests), so that one long file does
 * not end the run alone. Its output is printed whole when the file ends.
 * The tests' namespaces, state directories and lab hosts are named per
 * process, so files do not meet each other.
 */
async function runFilesInParallel(suite, files, declared, width) {
  const weight = (f) => declared.get(f)?.seconds ?? declared.get(f)?.tests ?? 1;
  const queue = [...files].sort((a, b) => weight(b) - weight(a));
  const results = [];
  const worker = async () => {
    for (let f = queue.shift(); f !== undefined; f = queue.shift()) {
      const started = Date.now();
      const result = await runDriver(suite, [`test/${suite}/${f}`], { capture: true });
      process.stdout.write(`\n-- ${suite}/${f} (${Math.round((Date.now() - started) / 1000)} s)\n`);
      process.stdout.write(result.output);
      results.push({ files: [f], ...result });
    }
  };
  await Promise.all(Array.from({ length: Math.min(width, files.length) }, worker));
  return results;
}

/** The files that took longest, from the tests' own times: where a suite's time goes. */
function slowest(suite, reports) {
  const perFile = new Map();
  for (const r of reports) {
    for (const g of r?.groups ?? []) {
      const ms = g.tests.reduce((a, t) => a + (t.ms ?? 0), 0);
      perFile.set(g.file, (perFile.get(g.file) ?? 0) + ms);
    }
  }
  const top = [...perFile].sort((a, b) => b[1] - a[1]).slice(0, 6);
  if (top.length > 0) process.stdout.write(`${suite}: slowest files (test time): ${top.map(([f, ms]) => `${f.replace(`test/${suite}/`, '')} ${Math.round(ms / 1000)} s`).join(', ')}\n`);
}

const quote = (t) => `"${t.name}"`;

async function runSuite(suite) {
  process.stdout.write(`\n== ${suite} tests\n`);
  const spec = manifest.suites[suite];
  const declared = new Map(Object.entries(spec.files).map(([f, v]) => [f, typeof v === 'number' ? { tests: v, needs: [] } : { needs: [], ...v }]));
  const before = { passed, failed: total(failures), skipped: total(skips) };

  const suiteMissing = missing(spec.needs);
  if (suiteMissing) {
    const n = [...declared.values()].reduce((a, d) => a + d.tests, 0);
    process.stdout.write(`${suite}: not run: ${suiteMissing}\n`);
    skip(`${suite}: all ${n} tests not run: ${suiteMissing}`, n);
    return summary(suite, before);
  }

  const onDisk = filesOnDisk(suite);
  for (const [f, d] of declared) if (!onDisk.includes(f)) fail(`${suite}/${f}: listed in ${MANIFEST} with ${d.tests} tests, but there is no such file`, d.tests);
  const toRun = [];
  for (const f of onDisk) {
    const d = declared.get(f);
    if (!d) {
      fail(`${suite}/${f}: not listed in ${MANIFEST} (add it with the number of tests it registers)`);
      toRun.push(f);
      continue;
    }
    const why = missing(d.needs);
    if (why) {
      process.stdout.write(`${suite}/${f}: not run: ${why}\n`);
      skip(`${suite}/${f}: all ${d.tests} tests not run: ${why}`, d.tests);
    } else toRun.push(f);
  }
  if (toRun.length === 0) return summary(suite, before);

  const width = spec.parallel ?? 1;
  const results =
    width > 1
      ? await runFilesInParallel(suite, toRun, declared, width)
      : [{ files: toRun, ...(await runDriver(suite, toRun.map((f) => `test/${suite}/${f}`))) }];
  for (const result of results) judge(suite, result, declared);
  slowest(suite, results.map((r) => r.report));
  return summary(suite, before);
}

/** Counts what one uvu process ran (all of a suite's files, or one of them). */
function judge(suite, { files: toRun, code, signal, report }, declared) {
  const where0 = toRun.length === 1 ? `${suite}/${toRun[0]}` : suite;
  if (!report) {
    fail(`${where0}: the uvu process ended (${signal ?? `exit status ${code}`}) without a report: none of its tests counts`, toRun.reduce((a, f) => a + (declared.get(f)?.tests ?? 1), 0));
    return;
  }
  const failedBefore = total(failures);
  for (const f of toRun) {
    const path = `test/${suite}/${f}`;
    const where = `${suite}/${f}`;
    if (report.importErrors[path]) fail(`${where}: does not load: ${report.importErrors[path]}`);
    const groups = report.groups.filter((g) => g.file === path);
    const tests = groups.flatMap((g) => g.tests);
    const expected = declared.get(f)?.tests;
    if (expected !== undefined && tests.length !== expected) {
      const what = tests.length === 0 ? 'registers no test' : `registers ${tests.length} tests`;
      const lost = Math.max(expected - tests.length, 1);
      fail(`${where}: ${what}; ${MANIFEST} says ${expected}${tests.length > expected ? ` (update ${MANIFEST} if the new tests are meant)` : ''}`, lost);
    }
    for (const g of groups) {
      const label = `${where}${g.suite ? ` [${g.suite}]` : ''}`;
      for (const h of g.hookErrors) if (h.hook.startsWith('after')) fail(`${label}: ${h.hook} hook failed: ${h.message}`);
      if (!g.runCalled && g.tests.length > 0) fail(`${label}: ${g.tests.length} tests registered but the suite's run() is never called`, g.tests.length);
      /** Skips of this group by reason, reported one line per reason. */
      const skipped = new Map();
      const skipTest = (t, reason) => skipped.set(reason, [...(skipped.get(reason) ?? []), t]);
      for (const t of g.tests) {
        if (t.kind === 'only' && !partial) fail(`${label}: test.only ${quote(t)} (remove .only: it leaves the rest of its suite unrun; ${PARTIAL_HINT})`);
        if (t.state === 'passed') passed++;
        else if (t.state === 'failed') fail(`${label} ${quote(t)}: ${t.reason}`);
        else if (t.state === 'skipped') skipTest(t, t.reason);
        else if (!g.runCalled) continue; // counted above
        else if (t.state === 'registered' && g.only) skipTest(t, 'not run: a test.only in its suite');
        else if (t.state === 'registered' && g.skipReason) skipTest(t, g.skipReason);
        else {
          const hook = g.hookErrors.find((h) => h.hook.startsWith('before'));
          const why = hook ? `its ${hook.hook} hook failed: ${hook.message}` : t.state === 'running' ? 'it started but never ended' : report.execError ? `uvu stopped: ${report.execError}` : 'never run';
          fail(`${label} ${quote(t)}: did not run to the end (${why})`);
        }
      }
      for (const [reason, ts] of skipped) {
        skip(ts.length === 1 ? `${label} ${quote(ts[0])}: ${reason}` : `${label}: ${ts.length} tests (${ts.slice(0, 2).map(quote).join(', ')}${ts.length > 2 ? ', …' : ''}): ${reason}`, ts.length);
      }
    }
  }
  if (report.execError) fail(`${where0}: uvu stopped early: ${report.execError}`);
  if ((code !== 0 || signal) && total(failures) === failedBefore) fail(`${where0}: the uvu process ended with ${signal ?? `exit status ${code}`} although every test passed`);
}

const perSuite = [];
function summary(suite, before) {
  const line = `${suite}: ${passed - before.passed} passed, ${total(failures) - before.failed} failed${partial ? `, ${total(skips) - before.skipped} skipped` : ''}`;
  perSuite.push(line);
  process.stdout.write(`\n-- ${line}\n`);
}

// ---- the run -----------------------------------------------------------------

if (!step('build', 'npm', ['run', '--silent', 'build'])) fail('build: npm run build failed');
else if (!step('typecheck', 'npx', ['--no-install', 'tsc', '--noEmit'])) fail('typecheck: tsc --noEmit failed');

for (const suite of selected) await runSuite(suite);

const notSelected = ALL.filter((s) => !selected.includes(s));
process.stdout.write(`\n== summary\n${perSuite.join('\n')}\n`);
if (failures.length > 0) {
  const shown = failures.slice(0, 60);
  process.stdout.write(`failed:\n${shown.map((f) => `  ${f.what}`).join('\n')}\n`);
  if (failures.length > shown.length) process.stdout.write(`  … and ${failures.length - shown.length} more\n`);
}
if (skips.length > 0) process.stdout.write(`skipped (VXVIRT_TEST_PARTIAL=1): ${skips.map((s) => s.what).join('; ')}\n`);
const counts = `${passed} passed, ${total(failures)} failed${partial || skips.length > 0 ? `, ${total(skips)} skipped` : ''}`;
process.stdout.write(`${counts}${notSelected.length > 0 ? ` (suites run: ${selected.join(', ')}; not selected: ${notSelected.join(', ')})` : ''}\n`);
process.exitCode = failures.length > 0 ? 1 : 0;
