import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { FileConflictError } from '../../src/errors.ts';
import { lstatSync, mkdirSync, mkdtempSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { changeHooks, isRestartNote, planInstall, planUninstall, type Entry, type HooksDir, type Step } from '../../src/hook-install.ts';

const HOOK = '/opt/vxvirt/hooks/qemu';
const OLD = '/srv/vxvirt-old/hooks/qemu';
const D = '/etc/libvirt/hooks';
const MAIN = `${D}/qemu`;
const DROPIN_DIR = `${D}/qemu.d`;
const DROPIN = `${D}/qemu.d/vxvirt`;

const absent: Entry = { kind: 'absent' };
const current: Entry = { kind: 'vxvirt', link: HOOK, current: true };
const older: Entry = { kind: 'vxvirt', link: OLD, current: false };
const copy: Entry = { kind: 'vxvirt', current: false };
const foreign: Entry = { kind: 'other', what: 'a file' };
const dangling: Entry = { kind: 'other', what: 'a symlink to /gone/qemu, which does not exist' };

const dir = (over: Partial<HooksDir> = {}): HooksDir => ({ dir: D, exists: true, main: absent, dropInDir: 'absent', dropIn: absent, ...over });
const ops = (steps: Step[]) => steps.map((s) => `${s.op} ${s.path}`);
const restarts = (messages: string[]) => messages.some((m) => /systemctl restart virtqemud/.test(m)) && messages.some((m) => /systemctl restart libvirtd/.test(m));

test('install: where the link goes and what else changes, by what is there', () => {
  const cases: Array<[string, Partial<HooksDir>, string[], RegExp]> = [
    ['empty directory', {}, [`link ${MAIN}`], /^installed \/etc\/libvirt\/hooks\/qemu -> \/opt\/vxvirt\/hooks\/qemu$/],
    ['no directory yet', { exists: false }, [`mkdir ${D}`, `link ${MAIN}`], /^installed /],
    ['another hook as qemu', { main: foreign }, [`mkdir ${DROPIN_DIR}`, `link ${DROPIN}`], /^installed \/etc\/libvirt\/hooks\/qemu\.d\/vxvirt -> /],
    ['another hook, qemu.d exists', { main: foreign, dropInDir: 'directory' }, [`link ${DROPIN}`], /^installed .*qemu\.d\/vxvirt/],
    ['a dangling symlink as qemu: not ours to replace', { main: dangling }, [`mkdir ${DROPIN_DIR}`, `link ${DROPIN}`], /^installed .*qemu\.d\/vxvirt/],
    ['an older checkout linked as qemu', { main: older }, [`relink ${MAIN}`], /^replaced \/etc\/libvirt\/hooks\/qemu \(a link to \/srv\/vxvirt-old\/hooks\/qemu\) by a link to \/opt\/vxvirt/],
    ['a copy of the hook as qemu', { main: copy }, [`relink ${MAIN}`], /^replaced .*qemu \(a copy of vxvirt's hook\)/],
    ['an older checkout in qemu.d stays in qemu.d', { main: foreign, dropInDir: 'directory', dropIn: older }, [`relink ${DROPIN}`], /^replaced .*qemu\.d\/vxvirt/],
    ['ours as qemu and in qemu.d: one goes', { main: current, dropInDir: 'directory', dropIn: older }, [`remove ${DROPIN}`, `rmdir-if-empty ${DROPIN_DIR}`], /already installed/],
    ['ours in qemu.d, an older one as qemu: that one goes', { main: older, dropInDir: 'directory', dropIn: current }, [`remove ${MAIN}`], /already installed: .*qemu\.d\/vxvirt/],
  ];
  for (const [name, state, steps, first] of cases) {
    const plan = planInstall(dir(state), HOOK);
    assert.equal(ops(plan.steps), steps, name);
    assert.match(plan.messages[0] ?? '', first, name);
    assert.ok(restarts(plan.messages), `${name}: says how to restart libvirt`);
  }
});

test('install: nothing to do when this checkout is linked, and no restart asked for', () => {
  for (const state of [{ main: current }, { main: foreign, dropInDir: 'directory' as const, dropIn: current }]) {
    const plan = planInstall(dir(state), HOOK);
    assert.equal(plan.steps, []);
    assert.match(plan.messages[0] ?? '', /^vxvirt's hook is already installed: /);
    assert.not.ok(restarts(plan.messages));
  }
});

test('install beside another hook says so, and that libvirt >= 6.5 runs it after', () => {
  const plan = planInstall(dir({ main: foreign }), HOOK);
  assert.ok(plan.messages.some((m) => m === `${MAIN} is another hook (a file): left as it is; libvirt >= 6.5 runs ${DROPIN} after it, with the same arguments and stdin`));
});

test('install never replaces anything that is not vxvirt\'s', () => {
  for (const state of [{ main: foreign }, { main: dangling }, { main: { kind: 'other', what: 'a directory' } as Entry }]) {
    const plan = planInstall(dir(state), HOOK);
    assert.not.ok(plan.steps.some((s) => s.path === MAIN), JSON.stringify(state));
  }
  const conflicts: Array<[Partial<HooksDir>, RegExp]> = [
    [{ main: foreign, dropInDir: 'directory', dropIn: foreign }, /qemu\.d\/vxvirt is a file, not vxvirt's hook: remove it/],
    [{ main: foreign, dropInDir: 'other' }, /qemu\.d is not a directory, and .*qemu is another hook \(a file\)/],
  ];
  for (const [state, pattern] of conflicts) {
    try {
      planInstall(dir(state), HOOK);
      assert.unreachable(JSON.stringify(state));
    } catch (err) {
      assert.instance(err, FileConflictError);
      assert.is((err as FileConflictError).exitCode, 7);
      assert.match((err as Error).message, pattern);
    }
  }
});

test("uninstall removes vxvirt's links (any checkout) and copies, nothing else", () => {
  const cases: Array<[string, Partial<HooksDir>, string[]]> = [
    ['ours as qemu', { main: current }, [`remove ${MAIN}`]],
    ['an older checkout as qemu', { main: older }, [`remove ${MAIN}`]],
    ['a copy as qemu', { main: copy }, [`remove ${MAIN}`]],
    ['ours in qemu.d beside another hook', { main: foreign, dropInDir: 'directory', dropIn: current }, [`remove ${DROPIN}`, `rmdir-if-empty ${DROPIN_DIR}`]],
    ['both', { main: older, dropInDir: 'directory', dropIn: current }, [`remove ${MAIN}`, `remove ${DROPIN}`, `rmdir-if-empty ${DROPIN_DIR}`]],
    ['another hook only', { main: foreign }, []],
    ['a dangling symlink', { main: dangling }, []],
    ['nothing', { exists: false }, []],
  ];
  for (const [name, state, steps] of cases) {
    const plan = planUninstall(dir(state));
    assert.equal(ops(plan.steps), steps, name);
    if (steps.length === 0) assert.is(plan.messages[0], `vxvirt's hook is not installed in ${D}`, name);
    else assert.ok(restarts(plan.messages), name);
  }
  const kept = planUninstall(dir({ main: dangling }));
  assert.ok(kept.messages.includes(`left ${MAIN} as it is: a symlink to /gone/qemu, which does not exist, not vxvirt's hook`));
});

// ---- changeHooks: both hooks planned, then carried out, in a directory of files

function checkoutAndHooksDir(): { checkout: string; hooks: string; cleanup: () => void } {
  const root = mkdtempSync(join(tmpdir(), 'vxvirt-hooks-'));
  const checkout = join(root, 'vxvirt');
  mkdirSync(join(checkout, 'hooks'), { recursive: true });
  for (const k of ['qemu', 'network']) writeFileSync(join(checkout, 'hooks', k), '#!/bin/sh\n', { mode: 0o755 });
  return { checkout, hooks: join(root, 'etc-libvirt-hooks'), cleanup: () => rmSync(root, { recursive: true, force: true }) };
}

test('changeHooks: install links both hooks, the restart note once and last; uninstall removes both', () => {
  const t = checkoutAndHooksDir();
  try {
    const lines = changeHooks(planInstall, t.hooks, t.checkout);
    assert.is(readlinkSync(join(t.hooks, 'qemu')), join(t.checkout, 'hooks', 'qemu'));
    assert.is(readlinkSync(join(t.hooks, 'network')), join(t.checkout, 'hooks', 'network'));
    assert.equal(lines.slice(0, 2), [`installed ${t.hooks}/qemu -> ${t.checkout}/hooks/qemu`, `installed ${t.hooks}/network -> ${t.checkout}/hooks/network`]);
    const notes = lines.filter(isRestartNote);
    assert.ok(notes.length > 0 && new Set(notes).size === notes.length, 'each restart line once');
    assert.ok(lines.slice(lines.length - notes.length).every(isRestartNote), 'the restart note last');
    changeHooks((d) => planUninstall(d), t.hooks, t.checkout);
    for (const k of ['qemu', 'network']) assert.throws(() => lstatSync(join(t.hooks, k)), /ENOENT/);
  } finally {
    t.cleanup();
  }
});

test('changeHooks: a conflict with the network hook installs neither', () => {
  const t = checkoutAndHooksDir();
  try {
    mkdirSync(t.hooks);
    writeFileSync(join(t.hooks, 'network'), '#!/bin/sh\n# another hook\n');
    writeFileSync(join(t.hooks, 'network.d'), 'not a directory');
    assert.throws(() => changeHooks(planInstall, t.hooks, t.checkout), (err: Error) => err instanceof FileConflictError && /network\.d is not a directory/.test(err.message));
    assert.throws(() => lstatSync(join(t.hooks, 'qemu')), /ENOENT/, 'the qemu hook was not installed either');
  } finally {
    t.cleanup();
  }
});

test.run();
