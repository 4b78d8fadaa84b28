// libvirt's network hook run exactly as libvirt runs it (hooks/network
// through a symlink, libvirt's environment, <hookData> on stdin), together
// with the qemu hook, against real devices in private network namespaces:
// hot-plug and unplug with plain virsh, and the orders libvirt runs both
// hooks in at start, stop and libvirtd restart.
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { bridgeNic, domainXml, macNetworkNic, portHookData, TestHost } from '../support/netns.ts';

const UUID = '00000000-0000-4000-8000-0000000000a1';
const M0 = '52:54:00:00:a1:00';
const M1 = '52:54:00:00:a1:01';
const M2 = '52:54:00:00:a1:02';

interface Ctx {
  host: TestHost;
}
const it = suite<Ctx>('network hook');

it.before.each((ctx) => {
  ctx.host = new TestHost('nh');
  ctx.host.addUnderlay();
  for (const [name, vni] of [
    ['net42', '42'],
    ['net43', '43'],
  ] as const) {
    const r = ctx.host.vxvirt('define-network', '--no-libvirt', name, '--vni', vni, '--dev', 'ens47f1', '--local', '192.168.8.100', '--remote', '192.168.8.101');
    assert.is(r.status, 0, r.stderr);
  }
});
it.after.each((ctx) => ctx.host.destroy());

function ok(r: { status: number; stderr: string; stdout: string }, what: string): void {
  assert.is(r.status, 0, `${what}: exit ${r.status}, stderr: ${r.stderr}`);
  assert.is(r.stdout, '', `${what}: the hook prints nothing on stdout`);
}

const port = (host: TestHost, op: 'port-created' | 'port-deleted', network: string, vni: number, mac: string, owner = 'vm-a', uuid = UUID) =>
  host.networkHook(network, op, 'begin', portHookData(network, `vxbr${vni}`, owner, uuid, mac));

const vxDevices = (host: TestHost): string[] => host.linkNames().filter((n) => /^vx(br|lan)\d+$/.test(n));

function users(host: TestHost, network: string): Record<string, string[] | 'unknown'> {
  const r = host.exec('cat', [join(host.env.VXVIRT_STATE_DIR, 'users', `${network}.json`)]);
  if (r.status !== 0) return {};
  const parsed = JSON.parse(r.stdout) as { users: Record<string, { name: string; macs?: string[] }> };
  return Object.fromEntries(Object.values(parsed.users).map((u) => [u.name, u.macs ?? 'unknown']));
}

function stateFiles(host: TestHost): string[] {
  const out: string[] = [];
  for (const sub of ['users', 'domains', 'releasing']) {
    try {
      for (const f of readdirSync(join(host.env.VXVIRT_STATE_DIR, sub))) out.push(`${sub}/${f}`);
    } catch {
      // not made yet
    }
  }
  return out.sort();
}

it('hot-plug with plain virsh: port-created makes the pair and records the domain; port-deleted removes both', ({ host }) => {
  const xml = domainXml('vm-a', UUID, bridgeNic('vxbr42', M0));
  ok(host.hook('vm-a', 'prepare', 'begin', xml), 'prepare');
  assert.equal(vxDevices(host), ['vxbr42', 'vxlan42']);
  ok(port(host, 'port-created', 'net43', 43, M1), 'port-created (hot-plug)');
  assert.equal(vxDevices(host), ['vxbr42', 'vxbr43', 'vxlan42', 'vxlan43']);
  assert.is(host.link('vxlan43')?.master, 'vxbr43');
  assert.is(host.link('vxbr43')?.ifalias, 'vxvirt:net43');
  assert.equal(users(host, 'net43'), { 'vm-a': [M1] });
  ok(port(host, 'port-deleted', 'net43', 43, M1), 'port-deleted (unplug)');
  assert.equal(vxDevices(host), ['vxbr42', 'vxlan42']);
  assert.equal(users(host, 'net43'), {});
  assert.equal(stateFiles(host), [`domains/${UUID}.json`, 'users/net42.json']);
  ok(host.hook('vm-a', 'release', 'end', xml), 'release');
  assert.equal(vxDevices(host), []);
  assert.equal(stateFiles(host), []);
});

it('a guest with only a hot-plugged NIC: its record goes with the unplug, and its release has nothing left to do', ({ host }) => {
  const xml = domainXml('vm-a', UUID, bridgeNic('br-plain', M0));
  ok(host.hook('vm-a', 'prepare', 'begin', xml), 'prepare (no vxvirt NIC)');
  ok(port(host, 'port-created', 'net42', 42, M1), 'port-created');
  assert.equal(stateFiles(host), [`domains/${UUID}.json`, 'users/net42.json']);
  ok(port(host, 'port-deleted', 'net42', 42, M1), 'port-deleted');
  assert.equal(stateFiles(host), []);
  assert.equal(vxDevices(host), []);
  ok(host.hook('vm-a', 'release', 'end', xml), 'release');
});

it('unplugging one of two NICs on VNI 42 keeps the domain a user and the pair in place (same devices)', ({ host }) => {
  ok(host.hook('vm-a', 'prepare', 'begin', domainXml('vm-a', UUID, bridgeNic('vxbr42', M0))), 'prepare');
  const before = [host.link('vxbr42')?.ifindex, host.link('vxlan42')?.ifindex];
  ok(port(host, 'port-created', 'net42', 42, M2), 'port-created');
  assert.equal(users(host, 'net42'), { 'vm-a': [M0, M2] });
  ok(port(host, 'port-deleted', 'net42', 42, M2), 'port-deleted');
  assert.equal(users(host, 'net42'), { 'vm-a': [M0] });
  assert.equal([host.link('vxbr42')?.ifindex, host.link('vxlan42')?.ifindex], before, 'the pair was not touched');
});

it("libvirt's order at start, libvirtd restart and stop: prepare, port-created; reconnect, port-created; port-deleted, release", ({ host }) => {
  const xml = domainXml('vm-a', UUID, `${macNetworkNic('net42', M0)}\n${bridgeNic('vxbr43', M1)}`);
  ok(host.hook('vm-a', 'prepare', 'begin', xml), 'prepare');
  ok(port(host, 'port-created', 'net42', 42, M0), 'port-created at start');
  const devices = host.linkNames().map((n) => `${n}:${host.link(n)?.ifindex}`);
  assert.equal(users(host, 'net42'), { 'vm-a': [M0] });
  assert.equal(users(host, 'net43'), { 'vm-a': [M1] });
  // libvirtd restarts: the live XML shows the network NIC as type='bridge'.
  const live = xml.replace(`<interface type='network'>\n      <mac address='${M0}'/>\n      <source network='net42'/>`, `<interface type='bridge'>\n      <mac address='${M0}'/>\n      <source network='net42' portid='0f1e' bridge='vxbr42'/>`);
  ok(host.hook('vm-a', 'reconnect', 'begin', live), 'reconnect');
  ok(port(host, 'port-created', 'net42', 42, M0), 'port-created after the restart');
  assert.equal(host.linkNames().map((n) => `${n}:${host.link(n)?.ifindex}`), devices, 'nothing re-made');
  assert.equal(users(host, 'net42'), { 'vm-a': [M0] });
  ok(port(host, 'port-deleted', 'net42', 42, M0), 'port-deleted at stop');
  assert.equal(vxDevices(host), ['vxbr43', 'vxlan43']);
  ok(host.hook('vm-a', 'release', 'end', live), 'release');
  assert.equal(vxDevices(host), []);
  assert.equal(stateFiles(host), []);
});

it('port-created of a NIC prepare already recorded ends in sh without starting node; a hot-plugged one (new MAC) starts it', ({ host }) => {
  // A `node` first on PATH that writes down each start, then runs the real one.
  const bin = join(host.dir, 'bin');
  const calls = join(host.dir, 'node-calls');
  host.exec('mkdir', ['-p', bin]);
  writeFileSync(join(bin, 'node'), `#!/bin/sh\necho "$*" >> ${calls}\nexec ${process.execPath} "$@"\n`, { mode: 0o755 });
  const env = { PATH: `${bin}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin` };
  const starts = (): string[] => (existsSync(calls) ? readFileSync(calls, 'utf8').split('\n').filter(Boolean) : []);
  const xml = domainXml('vm-a', UUID, macNetworkNic('net42', M0));
  ok(host.hook('vm-a', 'prepare', 'begin', xml, env), 'prepare');
  assert.is(starts().length, 1, 'prepare starts node');
  ok(host.networkHook('net42', 'port-created', 'begin', portHookData('net42', 'vxbr42', 'vm-a', UUID, M0), env), 'port-created at start');
  assert.is(starts().length, 1, 'port-created of the recorded NIC starts no node');
  // Found by libvirt's network name as well, when the port names no vxbrN.
  ok(host.networkHook('net42', 'port-created', 'begin', portHookData('net42', 'br-other', 'vm-a', UUID, M0).replace(" bridge='br-other'", ''), env), 'port-created without a bridge');
  assert.is(starts().length, 1, 'port-created of the recorded NIC, by network name, starts no node');
  // Same MAC, another domain: not recorded for that one.
  ok(host.networkHook('net42', 'port-created', 'begin', portHookData('net42', 'vxbr42', 'vm-b', '00000000-0000-4000-8000-0000000000b2', M0), env), 'port-created of vm-b');
  assert.is(starts().length, 2, "another domain's port-created starts node");
  ok(host.networkHook('net42', 'port-created', 'begin', portHookData('net42', 'vxbr42', 'vm-a', UUID, M1), env), 'hot-plug');
  assert.is(starts().length, 3, 'a hot-plug starts node');
  assert.equal(users(host, 'net42'), { 'vm-a': [M0, M1], 'vm-b': [M0] });
});

it('two domains: one unplugging its NIC leaves the pair to the other', ({ host }) => {
  const B = '00000000-0000-4000-8000-0000000000b1';
  ok(host.hook('vm-b', 'prepare', 'begin', domainXml('vm-b', B, bridgeNic('vxbr42', M2))), 'prepare vm-b');
  ok(port(host, 'port-created', 'net42', 42, M1), 'port-created vm-a');
  ok(port(host, 'port-deleted', 'net42', 42, M1), 'port-deleted vm-a');
  assert.equal(users(host, 'net42'), { 'vm-b': [M2] });
  assert.equal(vxDevices(host), ['vxbr42', 'vxlan42']);
});

it('a failing port-created exits 1 with one line naming the network and device; nothing is left', ({ host }) => {
  assert.is(host.vxvirt('define-network', '--no-libvirt', 'lost', '--vni', '44', '--dev', 'ens99', '--remote', '192.168.8.101').status, 0);
  const r = port(host, 'port-created', 'lost', 44, M1);
  assert.is(r.status, 1);
  assert.is(r.stderr.trim().split('\n').length, 1, r.stderr);
  assert.match(r.stderr, /^vxvirt: network lost: underlay device ens99 does not exist on this host/);
  assert.equal(vxDevices(host), []);
  assert.equal(stateFiles(host), []);
});

it('other operations and networks that are not vxvirt\'s: exit 0, nothing printed, nothing changed', ({ host }) => {
  const data = portHookData('net42', 'vxbr42', 'vm-a', UUID, M1);
  for (const op of ['start', 'started', 'port-created-x', 'stopped', 'updated', 'bogus']) ok(host.networkHook('net42', op, 'begin', data), op);
  const foreign = portHookData('default', 'virbr0', 'vm-a', UUID, M1);
  ok(host.networkHook('default', 'port-created', 'begin', foreign), 'port-created on default');
  ok(host.networkHook('default', 'port-deleted', 'begin', foreign), 'port-deleted on default');
  // Names that are no file name: never looked up as one.
  ok(host.networkHook('../../etc/passwd', 'port-created', 'begin', portHookData('x', 'virbr0', 'vm-a', UUID, M1)), 'hostile network name');
  assert.equal(vxDevices(host), []);
  assert.equal(stateFiles(host), []);
});

it('bad hook data: port-created fails with one line, port-deleted exits 0', ({ host }) => {
  const bad = "<hookData><network><name>net42</name><bridge name='vxbr42'/></network></hookData>";
  const r = host.networkHook('net42', 'port-created', 'begin', bad);
  assert.is(r.status, 1);
  assert.match(r.stderr, /^vxvirt: network hook data has no <networkport>\n$/);
  ok(host.networkHook('net42', 'port-deleted', 'begin', "<hookData><network><name>net42</name><bridge name='vxbr42'/></network><networkport><owner><name>x"), 'port-deleted');
});

it('hostile hook data ends in bounded time with one line: port-created exits 1, port-deleted 0, nothing is made', ({ host }) => {
  const laughs = `<!DOCTYPE hookData [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]>`;
  const cases: Array<[string, string, RegExp]> = [
    ['not XML', 'port-created begin', /^vxvirt: network hook data is not well-formed/],
    ['20 MB', `<hookData><network><name>net42</name><bridge name='vxbr42'/></network><networkport>${'x'.repeat(20_000_000)}</networkport></hookData>`, /larger than 8 MiB/],
    ['a DOCTYPE with entities', `${laughs}<hookData><network><name>&b;</name><bridge name='vxbr42'/></network></hookData>`, /DOCTYPE is not supported/],
    ['bytes that are not UTF-8', `<hookData><network><name>net42\xff</name><bridge name='vxbr42'/></network></hookData>`, /not valid UTF-8|no <networkport>/],
  ];
  for (const [name, data, line] of cases) {
    for (const op of ['port-created', 'port-deleted'] as const) {
      const t = Date.now();
      const r = host.networkHook('net42', op, 'begin', data);
      const ms = Date.now() - t;
      assert.is(r.status, op === 'port-created' ? 1 : 0, `${name}, ${op}: ${r.stderr}`);
      assert.is(r.stdout, '', `${name}, ${op}: nothing on stdout`);
      assert.is(r.stderr.split('\n').filter(Boolean).length, 1, `${name}, ${op}: one line: ${r.stderr.slice(0, 300)}`);
      assert.match(r.stderr, line, `${name}, ${op}`);
      assert.ok(ms < 20_000, `${name}, ${op}: ${ms} ms`);
    }
  }
  assert.equal(vxDevices(host), []);
  assert.equal(stateFiles(host), []);
});

it.run();
