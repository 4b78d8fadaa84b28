// Where the host says no: the kernel's limit on multicast groups, met through
// the hook exactly as libvirt runs it, on real devices in a private network
// namespace whose own limit the test lowers (the sysctls are per namespace).
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { bridgeNic, domainXml, TestHost } from '../support/netns.ts';

interface Ctx {
  host: TestHost;
}
const it = suite<Ctx>('host limits');

it.before.each((ctx) => {
  ctx.host = new TestHost('lim');
  ctx.host.addUnderlay();
});
it.after.each((ctx) => ctx.host.destroy());

const uuid = (n: number): string => `00000000-0000-4000-8000-${String(n).padStart(12, '0')}`;
const guest = (n: number, vni: number): string => domainXml(`vm${n}`, uuid(n), bridgeNic(`vxbr${vni}`, `52:54:00:00:01:${String(n).padStart(2, '0')}`));

function done(r: { status: number; stderr: string }, what: string): void {
  assert.is(r.status, 0, `${what}: exit ${r.status}, stderr: ${r.stderr}`);
}

function sysctl(host: TestHost, name: string, value: number): void {
  done(host.exec('sysctl', ['-q', '-w', `${name}=${value}`]), `sysctl ${name}=${value}`);
  assert.is(host.exec('cat', [`/proc/sys/${name.replace(/\./g, '/')}`]).stdout.trim(), String(value), `${name} in the test's namespace`);
}

function define(host: TestHost, name: string, vni: number, group: string): void {
  done(host.vxvirt('define-network', '--no-libvirt', name, '--vni', String(vni), '--dev', 'ens47f1', '--group', group), `define ${name}`);
}

const state = (host: TestHost, ...path: string[]): string => join(host.env.VXVIRT_STATE_DIR, ...path);

function assertRunning(host: TestHost, vni: number, network: string, n: number): void {
  const vx = host.link(`vxlan${vni}`);
  assert.ok(vx?.flags.includes('UP') && host.link(`vxbr${vni}`)?.flags.includes('UP'), `vxbr${vni} + vxlan${vni} up`);
  assert.is(vx?.master, `vxbr${vni}`);
  assert.ok(existsSync(state(host, 'users', `${network}.json`)), `users of ${network} recorded`);
  assert.ok(existsSync(state(host, 'domains', `${uuid(n)}.json`)), `vm${n} recorded`);
}

it('the 3rd group over igmp_max_memberships=2: one line naming the limit, nothing half-made, the first two intact', ({ host }) => {
  sysctl(host, 'net.ipv4.igmp_max_memberships', 2);
  define(host, 'mc1', 101, '239.1.1.1');
  define(host, 'mc2', 102, '239.1.1.2');
  define(host, 'mc3', 103, '239.1.1.3');
  done(host.hook('vm1', 'prepare', 'begin', guest(1, 101)), 'prepare vm1');
  done(host.hook('vm2', 'prepare', 'begin', guest(2, 102)), 'prepare vm2');

  const r = host.hook('vm3', 'prepare', 'begin', guest(3, 103));
  assert.is(r.status, 1, `prepare vm3 fails: ${r.stderr}`);
  assert.is(r.stdout, '');
  const lines = r.stderr.split('\n').filter(Boolean);
  assert.is(lines.length, 1, `one stderr line: ${r.stderr}`);
  const line = lines[0] ?? '';
  assert.ok(line.startsWith('vxvirt: network mc3: the kernel refused to join multicast group 239.1.1.3 on ens47f1 (RTNETLINK answers: No buffer space available'), line);
  assert.ok(line.includes('net.ipv4.igmp_max_memberships = 2 '), `names the limit and its value: ${line}`);
  assert.ok(line.includes("vxvirt's VXLAN devices on UDP port 4789 have joined 2 groups;"), `counts the groups joined: ${line}`);
  assert.ok(line.includes('sysctl -w net.ipv4.igmp_max_memberships=4;') && line.includes('/etc/sysctl.d/90-vxvirt.conf'), `way out 1: ${line}`);
  assert.ok(line.includes('share one group (--group'), `way out 2: ${line}`);

  // Nothing of VNI 103 is left, and vm3 is no user of anything.
  assert.is(host.link('vxbr103'), undefined);
  assert.is(host.link('vxlan103'), undefined);
  assert.not.ok(existsSync(state(host, 'users', 'mc3.json')), 'no users record of mc3');
  assert.not.ok(existsSync(state(host, 'domains', `${uuid(3)}.json`)), 'no record of vm3');
  // The first two are untouched.
  assertRunning(host, 101, 'mc1', 1);
  assertRunning(host, 102, 'mc2', 2);
  assert.equal(host.linkNames(), ['ens47f1', 'ens47f1p', 'lo', 'vxbr101', 'vxbr102', 'vxlan101', 'vxlan102']);

  // The first way out works: with the limit raised, vm3 starts.
  sysctl(host, 'net.ipv4.igmp_max_memberships', 3);
  done(host.hook('vm3', 'prepare', 'begin', guest(3, 103)), 'prepare vm3 after raising the limit');
  assertRunning(host, 103, 'mc3', 3);
});

it('networks sharing one group join it once: four VNIs under a limit of 1', ({ host }) => {
  sysctl(host, 'net.ipv4.igmp_max_memberships', 1);
  for (let n = 1; n <= 4; n++) define(host, `shared${n}`, 200 + n, '239.2.2.2');
  for (let n = 1; n <= 4; n++) done(host.hook(`vm${n}`, 'prepare', 'begin', guest(n, 200 + n)), `prepare vm${n}`);
  for (let n = 1; n <= 4; n++) assertRunning(host, 200 + n, `shared${n}`, n);
  // The limit is real here: a second group is refused.
  define(host, 'other', 209, '239.2.2.3');
  const r = host.hook('vm9', 'prepare', 'begin', guest(9, 209));
  assert.is(r.status, 1, r.stderr);
  assert.ok(r.stderr.includes('net.ipv4.igmp_max_memberships = 1 ') && r.stderr.includes('have joined 1 group;'), r.stderr);
  assert.is(host.link('vxlan209'), undefined);
});

it('IPv6: a join refused for want of socket option memory names net.core.optmem_max, leaves nothing', ({ host }) => {
  // No count limits IPv6 groups: each membership takes option memory of the
  // VXLAN socket, up to net.core.optmem_max bytes. At 0 the first join fails.
  sysctl(host, 'net.core.optmem_max', 0);
  // Without --local the vxlan sends from the underlay's own IPv6 address.
  host.ip('addr', 'add', 'fd00:8::100/64', 'dev', 'ens47f1', 'nodad');
  define(host, 'v6', 106, 'ff05::6');
  const r = host.hook('vm6', 'prepare', 'begin', guest(6, 106));
  assert.is(r.status, 1, r.stderr);
  const lines = r.stderr.split('\n').filter(Boolean);
  assert.is(lines.length, 1, r.stderr);
  assert.ok(lines[0]?.startsWith('vxvirt: network v6: the kernel refused to join multicast group ff05::6 on ens47f1 (RTNETLINK answers: Cannot allocate memory'), r.stderr);
  assert.ok(r.stderr.includes('at most net.core.optmem_max = 0 bytes') && r.stderr.includes('sysctl -w net.core.optmem_max=131072;'), r.stderr);
  assert.equal(host.linkNames(), ['ens47f1', 'ens47f1p', 'lo']);
  assert.not.ok(existsSync(state(host, 'users', 'v6.json')));
  sysctl(host, 'net.core.optmem_max', 131072);
  done(host.hook('vm6', 'prepare', 'begin', guest(6, 106)), 'prepare vm6 with the memory back');
  assertRunning(host, 106, 'v6', 6);
});

it.run();
