// install-hook and uninstall-hook on real hooks directories: what they link,
// what they leave alone (byte for byte), and that the link they make runs.
import { chmodSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { bridgeNic, domainXml, portHookData, repo, sh, TestHost, type Result } from '../support/netns.ts';

const it = suite<{ tmp: string; dir: string }>('install-hook');
it.before.each((ctx) => {
  ctx.tmp = mkdtempSync(join(tmpdir(), 'vxvirt-hooks-'));
  ctx.dir = join(ctx.tmp, 'hooks');
});
it.after.each(({ tmp }) => rmSync(tmp, { recursive: true, force: true }));

const HOOK = join(repo, 'hooks/qemu');
const NETWORK_HOOK = join(repo, 'hooks/network');
const FOREIGN = '#!/bin/sh\n# an operator\'s own hook\nlogger -t qemu-hook "$@"\nexit 0\n';

/** The CLI as root runs it, with a umask that would make directories 0700. */
const vxvirt = (cmd: string, dir: string): Result =>
  sh('sh', ['-c', `umask 077; exec "$0" "$@"`, process.execPath, join(repo, 'dist/cli.js'), cmd, '--hooks-dir', dir]);
const ok = (r: Result): string => {
  assert.is(r.status, 0, r.stderr);
  assert.is(r.stderr, '');
  return r.stdout;
};
const mode = (path: string) => lstatSync(path).mode & 0o7777;
const foreignHook = (dir: string): string => {
  mkdirSync(dir, { recursive: true });
  const path = join(dir, 'qemu');
  writeFileSync(path, FOREIGN, { mode: 0o755 });
  return path;
};

it('an empty directory gets the link as qemu, and a second install changes nothing', ({ dir }) => {
  mkdirSync(dir);
  const out = ok(vxvirt('install-hook', dir));
  assert.match(out, new RegExp(`^installed ${dir}/qemu -> ${HOOK}\n`));
  assert.match(out, /only when its daemon starts[\s\S]*systemctl restart libvirtd[\s\S]*systemctl restart virtqemud/);
  assert.is(readlinkSync(join(dir, 'qemu')), HOOK);
  const inode = lstatSync(join(dir, 'qemu')).ino;
  const again = ok(vxvirt('install-hook', dir));
  assert.is(again, `vxvirt's hook is already installed: ${dir}/qemu -> ${HOOK}\nvxvirt's network hook is already installed: ${dir}/network -> ${NETWORK_HOOK}\n`);
  assert.is(lstatSync(join(dir, 'qemu')).ino, inode, 'the link was not even replaced');
  assert.equal(readdirSync(dir).sort(), ['network', 'qemu'], 'no temporary files');
});

it('a missing directory is made 0755 whatever the umask', ({ dir }) => {
  ok(vxvirt('install-hook', dir));
  assert.is(mode(dir), 0o755);
  assert.is(readlinkSync(join(dir, 'qemu')), HOOK);
});

it("another hook as qemu stays byte for byte; vxvirt's goes to qemu.d/vxvirt (0755), twice is once", ({ dir }) => {
  const qemu = foreignHook(dir);
  const before = lstatSync(qemu);
  const out = ok(vxvirt('install-hook', dir));
  assert.match(out, new RegExp(`^installed ${dir}/qemu.d/vxvirt -> ${HOOK}\n`));
  assert.match(out, new RegExp(`${dir}/qemu is another hook \\(a file\\): left as it is; libvirt >= 6.5 runs ${dir}/qemu.d/vxvirt after it`));
  assert.is(readlinkSync(join(dir, 'qemu.d/vxvirt')), HOOK);
  assert.is(mode(join(dir, 'qemu.d')), 0o755);
  assert.match(ok(vxvirt('install-hook', dir)), /^vxvirt's hook is already installed: .*qemu\.d\/vxvirt/);
  assert.equal(readdirSync(join(dir, 'qemu.d')), ['vxvirt']);

  const removed = ok(vxvirt('uninstall-hook', dir));
  assert.ok(removed.startsWith(`left ${dir}/qemu as it is: a file, not vxvirt's hook\nremoved ${dir}/qemu.d/vxvirt (a link to ${HOOK})\n`), removed);
  assert.not.ok(existsSync(join(dir, 'qemu.d')), 'the emptied qemu.d is gone');
  assert.is(readFileSync(qemu, 'utf8'), FOREIGN);
  const after = lstatSync(qemu);
  assert.equal([after.ino, after.mode, after.mtimeMs], [before.ino, before.mode, before.mtimeMs]);
});

it('uninstall keeps a qemu.d that holds other hooks', ({ dir }) => {
  foreignHook(dir);
  ok(vxvirt('install-hook', dir));
  writeFileSync(join(dir, 'qemu.d', 'other'), FOREIGN, { mode: 0o755 });
  ok(vxvirt('uninstall-hook', dir));
  assert.equal(readdirSync(join(dir, 'qemu.d')), ['other']);
});

it('uninstall removes our qemu link; with nothing of ours it says so and exits 0', ({ dir }) => {
  mkdirSync(dir);
  ok(vxvirt('install-hook', dir));
  assert.match(ok(vxvirt('uninstall-hook', dir)), new RegExp(`^removed ${dir}/qemu \\(a link to ${HOOK}\\)\n[\\s\\S]*systemctl restart`));
  assert.equal(readdirSync(dir), []);
  assert.is(ok(vxvirt('uninstall-hook', dir)), `vxvirt's hook is not installed in ${dir}\nvxvirt's network hook is not installed in ${dir}\n`);
});

it('a dangling symlink as qemu is not ours to judge: it stays, through install and uninstall', ({ dir }) => {
  mkdirSync(dir);
  symlinkSync('/nonexistent/vxvirt/hooks/qemu', join(dir, 'qemu'));
  const out = ok(vxvirt('install-hook', dir));
  assert.match(out, /qemu is another hook \(a symlink to \/nonexistent\/vxvirt\/hooks\/qemu, which does not exist\): left as it is/);
  assert.is(readlinkSync(join(dir, 'qemu.d/vxvirt')), HOOK);
  ok(vxvirt('uninstall-hook', dir));
  assert.is(readlinkSync(join(dir, 'qemu')), '/nonexistent/vxvirt/hooks/qemu');
  assert.not.ok(existsSync(join(dir, 'qemu.d')));
});

it("a copy of vxvirt's hook (which cannot find its checkout) is replaced by the link", ({ dir }) => {
  mkdirSync(dir);
  writeFileSync(join(dir, 'qemu'), readFileSync(HOOK), { mode: 0o755 });
  assert.match(ok(vxvirt('install-hook', dir)), /^replaced .*\/qemu \(a copy of vxvirt's hook\) by a link to /);
  assert.is(readlinkSync(join(dir, 'qemu')), HOOK);
  assert.equal(readdirSync(dir).sort(), ['network', 'qemu']);
});

it('a file of someone else named qemu.d/vxvirt is a conflict: status 7, nothing touched', ({ dir }) => {
  const qemu = foreignHook(dir);
  mkdirSync(join(dir, 'qemu.d'));
  writeFileSync(join(dir, 'qemu.d', 'vxvirt'), FOREIGN, { mode: 0o700 });
  chmodSync(join(dir, 'qemu.d'), 0o750);
  const r = vxvirt('install-hook', dir);
  assert.is(r.status, 7, r.stderr);
  assert.is(r.stderr, `vxvirt: ${dir}/qemu.d/vxvirt is a file, not vxvirt's hook: remove it, then run install-hook again\n`);
  assert.is(readFileSync(join(dir, 'qemu.d', 'vxvirt'), 'utf8'), FOREIGN);
  assert.is(readFileSync(qemu, 'utf8'), FOREIGN);
  assert.is(mode(join(dir, 'qemu.d')), 0o750);
  assert.is(vxvirt('uninstall-hook', dir).status, 0);
  assert.is(readFileSync(join(dir, 'qemu.d', 'vxvirt'), 'utf8'), FOREIGN);
});

it("the network hook: linked as network beside qemu; another network hook stays byte for byte and vxvirt's goes to network.d/vxvirt; the restart note comes once, last", ({ dir }) => {
  mkdirSync(dir);
  const network = join(dir, 'network');
  writeFileSync(network, FOREIGN, { mode: 0o755 });
  const out = ok(vxvirt('install-hook', dir));
  const lines = out.trimEnd().split('\n');
  assert.is(lines[0], `installed ${dir}/qemu -> ${HOOK}`);
  assert.is(lines[1], `installed ${dir}/network.d/vxvirt -> ${NETWORK_HOOK}`);
  assert.match(lines[2] ?? '', new RegExp(`^${dir}/network is another hook \\(a file\\): left as it is; libvirt >= 6.5 runs ${dir}/network.d/vxvirt after it`));
  assert.is(lines.filter((l) => /libvirt looks for hooks only/.test(l)).length, 1);
  assert.equal(lines.slice(-3), ['  systemctl restart libvirtd     # hosts running the monolithic libvirtd', '  systemctl restart virtqemud    # hosts running the modular daemons', '  systemctl restart virtnetworkd # hosts running the modular daemons']);
  assert.is(readlinkSync(join(dir, 'network.d', 'vxvirt')), NETWORK_HOOK);
  assert.is(mode(join(dir, 'network.d')), 0o755);
  ok(vxvirt('uninstall-hook', dir));
  assert.equal(readdirSync(dir), ['network']);
  assert.is(readFileSync(network, 'utf8'), FOREIGN);
});

it('the installed network hook runs as libvirt runs it: port-created makes the pair', ({ dir }) => {
  ok(vxvirt('install-hook', dir));
  const host = new TestHost();
  try {
    host.addUnderlay();
    assert.is(host.vxvirt('define-network', '--no-libvirt', 'tut', '--vni', '42', '--dev', 'ens47f1', '--remote', '192.168.8.101').status, 0);
    const data = portHookData('tut', 'vxbr42', 'vm1', '00000000-0000-4000-8000-000000000001', '52:54:00:00:00:01');
    const r = host.exec(join(dir, 'network'), ['tut', 'port-created', 'begin', '-'], data);
    assert.is(r.status, 0, r.stderr);
    assert.is(host.link('vxlan42')?.master, 'vxbr42');
  } finally {
    host.destroy();
  }
});

it('installed in qemu.d, the link runs as libvirt runs it: prepare makes the pair', ({ dir }) => {
  foreignHook(dir);
  ok(vxvirt('install-hook', dir));
  const host = new TestHost();
  try {
    host.addUnderlay();
    assert.is(host.vxvirt('define-network', '--no-libvirt', 'tut', '--vni', '42', '--dev', 'ens47f1', '--remote', '192.168.8.101').status, 0);
    const xml = domainXml('vm1', '00000000-0000-4000-8000-000000000001', bridgeNic('vxbr42'));
    const r = host.exec(join(dir, 'qemu.d', 'vxvirt'), ['vm1', 'prepare', 'begin', '-'], xml);
    assert.is(r.status, 0, r.stderr);
    assert.is(host.link('vxlan42')?.master, 'vxbr42');
  } finally {
    host.destroy();
  }
});

it.run();
