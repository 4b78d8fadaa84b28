// src/libvirt/ without a libvirtd: the network XML vxvirt defines (checked
// against libvirt's schema), reading virsh's view of a network, the message
// when the bindings are missing, the bundled CLI without them, and the virsh
// calls made for networks (with a fake `virsh` on PATH). attach/detach: test/unit/attach.test.ts.
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { networkMtu } from '../../src/attach.ts';
import { DefinitionError, LibvirtError } from '../../src/errors.ts';
import { generate, listInterfaces } from '../../src/generator.ts';
import * as lv from '../../src/libvirt/index.ts';
import { loadBindings } from '../../src/libvirt/bindings.ts';
import { validateDefinition, type NetworkDefinition } from '../../src/network-definition.ts';
import { needs } from '../support/require.ts';
import { withPath } from '../support/path.ts';

const REPO = new URL('../..', import.meta.url).pathname;
const lab = validateDefinition({ name: 'lab', vni: 100, dev: 'eth0', remotes: ['10.0.0.2'] });
const lab6 = validateDefinition({ name: 'lab6', vni: 106, dev: 'eth0', remotes: ['fd00::2'] });
const tmp = mkdtempSync(join(tmpdir(), 'vxvirt-libvirt-'));
test.after(() => rmSync(tmp, { recursive: true, force: true }));
const fixture = (name: string): string => readFileSync(join(REPO, 'test/fixtures/domains', name), 'utf8');

// ---- network XML ------------------------------------------------------------

test('the libvirt network XML: forward bridge to vxbrN, vxvirt mark, UUID when known; valid for libvirt', () => {
  const xml = lv.libvirtNetworkXml(lab, 'a9ed3b3e-5a0c-4b8e-9d1f-0f6e2c7b3a10');
  assert.is(
    xml,
    `<network>
  <name>lab</name>
  <uuid>a9ed3b3e-5a0c-4b8e-9d1f-0f6e2c7b3a10</uuid>
  <metadata>
    <vxvirt:network xmlns:vxvirt='https://vxvirt.dev/xmlns/1' vni='100'/>
  </metadata>
  <forward mode='bridge'/>
  <bridge name='vxbr100'/>
</network>
`,
  );
  assert.not.ok(lv.libvirtNetworkXml(lab).includes('<uuid>'), 'no UUID: libvirt makes one');
  needs('virt-xml-validate');
  for (const [i, text] of [xml, lv.libvirtNetworkXml(lab)].entries()) {
    const file = join(tmp, `net${i}.xml`);
    writeFileSync(file, text);
    const r = spawnSync('virt-xml-validate', [file, 'network'], { encoding: 'utf8' });
    assert.is(r.status, 0, r.stdout + r.stderr);
  }
});

test("reading virsh net-dumpxml: vxvirt's mark, UUID, connections", () => {
  const ours = lv.parseNetworkXml(`<network connections='2'>
  <name>lab</name>
  <uuid>9aea6b46-26d0-491d-b8ad-719fc7caec37</uuid>
  <metadata>
    <vxvirt:network xmlns:vxvirt="https://vxvirt.dev/xmlns/1" vni="42"/>
  </metadata>
  <forward mode='bridge'/>
  <bridge name='vxbr42'/>
</network>`);
  assert.equal({ ...ours, xml: undefined }, { name: 'lab', uuid: '9aea6b46-26d0-491d-b8ad-719fc7caec37', vni: 42, ours: true, connections: 2, xml: undefined });
  const theirs = lv.parseNetworkXml(`<network><name>default</name><forward mode='nat'/><bridge name='virbr0'/></network>`);
  assert.is(theirs.ours, false);
  assert.is(theirs.connections, 0);
});

// ---- the bindings -------------------------------------------------------------

test('bindings that do not load: one line saying why', async () => {
  try {
    await loadBindings(() => Promise.reject(new Error("Cannot find package '@unraid/libvirt' imported from /usr/lib/vxvirt/dist/cli.js")));
    assert.unreachable('should fail');
  } catch (err) {
    assert.instance(err, LibvirtError);
    const e = err as LibvirtError;
    assert.is(e.exitCode, 9);
    assert.is(e.message, "the libvirt bindings @unraid/libvirt did not load: Cannot find package '@unraid/libvirt' imported from /usr/lib/vxvirt/dist/cli.js");
  }
});

test('the bundled CLI without the bindings: attach goes through virsh, check says so, VXVIRT_LIBVIRT=bindings is refused', () => {
  const cli = join(REPO, 'dist/cli.js');
  needs('dist/cli.js');
  // A copy of the package without node_modules: what an install without libvirt-dev has.
  const pkg = join(tmp, 'pkg');
  mkdirSync(join(pkg, 'dist'), { recursive: true });
  mkdirSync(join(pkg, 'templates'), { recursive: true });
  writeFileSync(join(pkg, 'package.json'), '{"type":"module"}\n');
  writeFileSync(join(pkg, 'dist/cli.js'), readFileSync(cli));
  for (const t of ['interface.xml', 'network.xml']) writeFileSync(join(pkg, 'templates', t), readFileSync(join(REPO, 'templates', t)));
  mkdirSync(join(pkg, 'hooks'), { recursive: true });
  for (const h of ['qemu', 'network']) writeFileSync(join(pkg, 'hooks', h), readFileSync(join(REPO, 'hooks', h)), { mode: 0o755 });
  const cfg = join(tmp, 'cfg');
  mkdirSync(join(cfg, 'networks'), { recursive: true });
  writeFileSync(join(cfg, 'networks/lab.json'), JSON.stringify({ version: 1, ...lab }));
  // No libvirtd answers at this URI: virsh is what tells.
  const uri = `qemu:///system?socket=${join(tmp, 'no-libvirt-sock')}`;
  const env = { ...process.env, VXVIRT_CONFIG_DIR: cfg, VXVIRT_STATE_DIR: join(tmp, 'state'), LIBVIRT_DEFAULT_URI: uri, VXVIRT_LIBVIRT: '' };
  const run = (args: string[], extra: Record<string, string> = {}) =>
    spawnSync(process.execPath, [join(pkg, 'dist/cli.js'), ...args], { encoding: 'utf8', env: { ...env, ...extra } });
  const r = run(['attach', 'vm1', '--network', 'lab']);
  assert.is(r.status, 9, r.stderr);
  assert.is(r.stderr, `vxvirt: cannot connect to libvirt at ${uri}: Failed to connect socket to '${join(tmp, 'no-libvirt-sock')}': No such file or directory\n`);
  const check = JSON.parse(run(['check', '--json', '--hooks-dir', join(tmp, 'hooks')]).stdout) as Array<{ level: string; subject: string; message: string }>;
  const access = check.find((f) => f.subject === 'libvirt access');
  assert.is(access?.level, 'OK', JSON.stringify(access));
  assert.match(access!.message, /^virsh \(the bindings @unraid\/libvirt did not load: Cannot find package '@unraid\/libvirt' imported from /);
  const forced = run(['attach', 'vm1', '--network', 'lab'], { VXVIRT_LIBVIRT: 'bindings' });
  assert.is(forced.status, 9, forced.stderr);
  assert.match(forced.stderr, /^vxvirt: VXVIRT_LIBVIRT=bindings: the libvirt bindings @unraid\/libvirt did not load: Cannot find package .*: install libvirt-dev, python3, g\+\+ and make, then `npm rebuild @unraid\/libvirt`/);
  assert.is(forced.stderr.trim().split('\n').length, 1);
  const bad = run(['attach', 'vm1', '--network', 'lab'], { VXVIRT_LIBVIRT: 'qemu' });
  assert.is(bad.status, 2, bad.stderr);
  assert.is(bad.stderr, 'vxvirt: VXVIRT_LIBVIRT="qemu": must be auto, bindings or virsh\n');
  // generate needs no libvirt, and finds its template next to dist/.
  const g = spawnSync(process.execPath, [join(pkg, 'dist/cli.js'), 'generate', '--network', 'lab', '--add', '--mac', '52:54:00:00:00:aa'], {
    encoding: 'utf8',
    env,
    input: fixture('no-interfaces-tabs.xml'),
  });
  assert.is(g.status, 0, g.stderr);
  assert.match(g.stdout, /<interface type="bridge">\n\t\t\t<mac address="52:54:00:00:00:aa"\/>/);
});

// ---- networks through a fake virsh --------------------------------------------

/** A fake virsh that logs its arguments and answers from files in `dir`. */
function fakeVirsh(state: { dumpxml?: string; info?: string }): { dir: string; calls: () => string[] } {
  const dir = mkdtempSync(join(tmp, 'virsh-'));
  if (state.dumpxml !== undefined) writeFileSync(join(dir, 'dumpxml'), state.dumpxml);
  if (state.info !== undefined) writeFileSync(join(dir, 'info'), state.info);
  writeFileSync(
    join(dir, 'virsh'),
    `#!/bin/sh
echo "$*" >> ${dir}/calls
shift 3  # -q -c URI
cmd=$1; shift
[ "$1" = --network ] && shift
case "$cmd" in
  net-dumpxml) [ -f ${dir}/dumpxml ] && exec cat ${dir}/dumpxml; echo "error: failed to get network '$1'" >&2; echo "error: Network not found: no network with matching name '$1'" >&2; exit 1 ;;
  net-info) exec cat ${dir}/info ;;
  net-define) cp "$1" ${dir}/defined.xml; echo "Network defined" ;;
  *) exit 0 ;;
esac
`,
  );
  chmodSync(join(dir, 'virsh'), 0o755);
  return { dir, calls: () => readFileSync(join(dir, 'calls'), 'utf8').trim().split('\n').map((l) => l.replace(/^-q -c \S+ /, '').replace(/^(\S+) --network /, '$1 ')) };
}


const info = (active: boolean, autostart: boolean) => `Name: lab\nActive:         ${active ? 'yes' : 'no'}\nAutostart:      ${autostart ? 'yes' : 'no'}\n`;
const dump = (bridge: string, connections = 0) =>
  `<network${connections ? ` connections='${connections}'` : ''}>\n  <name>lab</name>\n  <uuid>9aea6b46-26d0-491d-b8ad-719fc7caec37</uuid>\n  <metadata>\n    <vxvirt:network xmlns:vxvirt="https://vxvirt.dev/xmlns/1" vni="100"/>\n  </metadata>\n  <forward mode='bridge'/>\n  <bridge name='${bridge}'/>\n</network>\n`;

test('defineLibvirtNetwork: new network is defined, autostarted, started', async () => {
  const v = fakeVirsh({});
  const r = await withPath(v.dir, () => lv.defineLibvirtNetwork(lab));
  assert.equal(r, { action: 'created', active: true });
  const calls = v.calls();
  assert.is(calls[0], 'net-dumpxml lab');
  assert.match(calls[1]!, /^net-define \/.*\/object\.xml$/);
  assert.equal(calls.slice(2), ['net-autostart lab', 'net-start lab']);
  assert.is(readFileSync(join(v.dir, 'defined.xml'), 'utf8'), lv.libvirtNetworkXml(lab));
});

test('defineLibvirtNetwork: unchanged network: nothing but reads', async () => {
  const v = fakeVirsh({ dumpxml: dump('vxbr100'), info: info(true, true) });
  assert.equal(await withPath(v.dir, () => lv.defineLibvirtNetwork(lab)), { action: 'unchanged', active: true });
  assert.equal(v.calls(), ['net-dumpxml lab', 'net-info lab']);
});

test('defineLibvirtNetwork: changed and unused: redefined with its UUID and restarted; in use: a note', async () => {
  const v = fakeVirsh({ dumpxml: dump('vxbr7'), info: info(true, true) });
  assert.equal(await withPath(v.dir, () => lv.defineLibvirtNetwork(lab)), { action: 'updated', active: true });
  assert.equal(v.calls().map((c) => c.split(' ')[0]), ['net-dumpxml', 'net-info', 'net-define', 'net-destroy', 'net-start']);
  assert.match(readFileSync(join(v.dir, 'defined.xml'), 'utf8'), /<uuid>9aea6b46-26d0-491d-b8ad-719fc7caec37<\/uuid>/);
  const busy = fakeVirsh({ dumpxml: dump('vxbr7', 3), info: info(true, true) });
  const r = await withPath(busy.dir, () => lv.defineLibvirtNetwork(lab));
  assert.equal(r, { action: 'updated', active: true, note: 'libvirt network lab has 3 guest connection(s): its new definition applies when it is restarted' });
  assert.not.ok(busy.calls().some((c) => c.startsWith('net-destroy')));
});

test("defineLibvirtNetwork/undefineLibvirtNetwork refuse a network vxvirt did not make", async () => {
  const v = fakeVirsh({ dumpxml: `<network><name>lab</name><forward mode='nat'/></network>`, info: info(true, true) });
  await withPath(v.dir, async () => {
    try {
      await lv.defineLibvirtNetwork(lab);
      assert.unreachable();
    } catch (err) {
      assert.instance(err, LibvirtError);
      assert.match((err as Error).message, /^libvirt already has a network lab that vxvirt did not define: choose another name, or skip the libvirt network with --no-libvirt$/);
    }
    try {
      await lv.undefineLibvirtNetwork('lab');
      assert.unreachable();
    } catch (err) {
      assert.match((err as Error).message, /^libvirt network lab was not defined by vxvirt/);
    }
  });
  assert.not.ok(v.calls().some((c) => /net-(define|destroy|undefine)/.test(c)));
});

test('undefineLibvirtNetwork: absent is fine; active is stopped first; in use is refused', async () => {
  const none = fakeVirsh({});
  assert.equal(await withPath(none.dir, () => lv.undefineLibvirtNetwork('lab')), { action: 'absent' });
  const active = fakeVirsh({ dumpxml: dump('vxbr100'), info: info(true, true) });
  assert.equal(await withPath(active.dir, () => lv.undefineLibvirtNetwork('lab')), { action: 'removed' });
  assert.equal(active.calls(), ['net-dumpxml lab', 'net-info lab', 'net-destroy lab', 'net-undefine lab']);
  const busy = fakeVirsh({ dumpxml: dump('vxbr100', 1), info: info(true, true) });
  await withPath(busy.dir, async () => {
    try {
      await lv.undefineLibvirtNetwork('lab');
      assert.unreachable();
    } catch (err) {
      assert.match((err as Error).message, /has 1 guest connection\(s\): stop or detach those guests first/);
    }
  });
});

test('virsh missing: a ToolError naming it', async () => {
  const saved = process.env.PATH;
  process.env.PATH = join(tmp, 'nothing-here');
  try {
    await lv.readLibvirtNetwork('lab');
    assert.unreachable();
  } catch (err) {
    assert.is((err as { exitCode?: number }).exitCode, 5, String(err));
    assert.match((err as Error).message, /^virsh not found on PATH/);
  } finally {
    process.env.PATH = saved;
  }
});

// ---- MTU for the CLI ------------------------------------------------------------

test('networkMtu: from the underlay; --mtu checked against it; a fallback with a warning when the underlay is absent', async () => {
  const warnings: string[] = [];
  const warn = (l: string) => warnings.push(l);
  assert.is(await networkMtu(lab, async () => 1500, warn), 1450);
  assert.is(await networkMtu(lab6, async () => 9000, warn), 8930);
  assert.is(await networkMtu({ ...lab, mtu: 1400 }, async () => 1500, warn), 1400);
  try {
    await networkMtu({ ...lab, mtu: 1480 }, async () => 1500, warn);
    assert.unreachable();
  } catch (err) {
    assert.instance(err, DefinitionError);
  }
  assert.equal(warnings, []);
  assert.is(await networkMtu(lab, async () => undefined, warn), 1450);
  assert.is(await networkMtu(lab6, async () => undefined, warn), 1430);
  assert.is(await networkMtu({ ...lab, mtu: 1300 }, async () => undefined, warn), 1300);
  assert.equal(warnings, [
    'underlay device eth0 of network lab is not on this host: using MTU 1450 (1500 minus 50 for VXLAN over IPv4)',
    'underlay device eth0 of network lab6 is not on this host: using MTU 1430 (1500 minus 70 for VXLAN over IPv6)',
    "underlay device eth0 of network lab is not on this host: using MTU 1300 (the definition's --mtu)",
  ]);
});

test.run();
