#!/usr/bin/env node
// The test command (`npm test`): build, type-check, then the unit,
// integration and lab suites, each in its own uvu process. Prints one
// `N passed, N failed` line at the end and exits non-zero if anything failed.
//
//   npm test                 all suites
//   npm test -- unit         only the named suites (unit, integration, lab)
//
// The integration suite needs root (network namespaces); the lab suite needs
// root, libvirt and QEMU. Without them they are reported as skipped.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';

const root = new URL('..', import.meta.url).pathname;
const wanted = process.argv.slice(2);
const suites = ['unit', 'integration', 'lab'].filter((s) => wanted.length === 0 || wanted.includes(s));

function step(title, cmd, args) {
  process.stdout.write(`\n== ${title}\n`);
  const r = spawnSync(cmd, args, { cwd: root, stdio: 'inherit' });
  return r.status === 0;
}

function runSuite(name) {
  return new Promise((resolve) => {
    process.stdout.write(`\n== ${name} tests\n`);
    const child = spawn(process.execPath, ['--import', 'tsx', 'node_modules/uvu/bin.js', `test/${name}`, '\\.test\\.ts$'], {
      cwd: root,
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let out = '';
    child.stdout.on('data', (d) => {
      out += d;
      process.stdout.write(d);
    });
    child.on('close', (code) => {
      const num = (label) => Number((out.match(new RegExp(`${label}:\\s+(\\d+)`)) ?? [])[1] ?? 0);
      const total = num('Total');
      const passed = num('Passed');
      const skipped = num('Skipped');
      // A suite that crashed before reporting counts as one failure.
      const failed = code !== 0 && total === 0 ? 1 : Math.max(0, total - passed - skipped);
      resolve({ passed, failed, skipped });
    });
  });
}

let passed = 0;
let failed = 0;
let skipped = 0;
if (!step('build', 'npm', ['run', '--silent', 'build'])) failed++;
else if (!step('typecheck', 'npx', ['--no-install', 'tsc', '--noEmit'])) failed++;


const isRoot = process.getuid?.() === 0;
const hasLibvirt = existsSync('/usr/sbin/libvirtd') && existsSync('/usr/bin/qemu-system-x86_64');
for (const suite of suites) {
  if ((suite === 'integration' || suite === 'lab') && !isRoot) {
    process.stdout.write(`\n== ${suite} tests: skipped (they need root for network namespaces)\n`);
    skipped++;
    continue;
  }
  if (suite === 'lab' && !hasLibvirt) {
    process.stdout.write(`\n== lab tests: skipped (install libvirt-daemon-system and qemu-system-x86)\n`);
    skipped++;
    continue;
  }
  const r = await runSuite(suite);
  passed += r.passed;
  failed += r.failed;
  skipped += r.skipped;
}

process.stdout.write(`\n${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ''}\n`);
process.exitCode = failed > 0 ? 1 : 0;
