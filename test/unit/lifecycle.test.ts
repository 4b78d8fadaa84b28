import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { DeviceConflictError } from '../../src/errors.ts';
import { ensureForDomain, reconcileHost, reconnectDomain, releaseDomain, type ReconcileOptions } from '../../src/lifecycle.ts';
import { validateDefinition } from '../../src/network-definition.ts';
import { ownerGroup } from '../../src/plan.ts';
import { FakeHost } from '../support/fake-kernel.ts';

const tut = validateDefinition({ name: 'tut', vni: 42, dev: 'ens47f1', remotes: ['192.168.8.101'] });
const mc = validateDefinition({ name: 'mc', vni: 43, dev: 'ens47f1', group: '239.1.1.1' });
const broken = validateDefinition({ name: 'broken', vni: 44, dev: 'nosuchdev', remotes: ['192.168.8.101'] });
const defs = [tut, mc, broken];
const A = { key: 'uuid-a', name: 'a' };
const B = { key: 'uuid-b', name: 'b' };

const host = () => new FakeHost().addUnderlay('ens47f1');

test('prepare creates the pair and records the domain; release removes both', async () => {
  const h = host();
  await ensureForDomain(A, [tut], h.effects());
  assert.equal(h.names(), ['ens47f1', 'vxbr42', 'vxlan42']);
  assert.is(h.links.get('vxlan42')?.master, 'vxbr42');
  assert.ok(h.links.get('vxbr42')?.up && h.links.get('vxlan42')?.up);
  assert.equal(Object.keys(h.users.get('tut') ?? {}), ['uuid-a']);
  assert.equal(await releaseDomain(A.key, h.effects()), ['tut']);
  assert.equal(h.names(), ['ens47f1']);
  assert.is(h.users.size, 0);
});

test('double prepare, double release and release without prepare are harmless', async () => {
  const h = host();
  await ensureForDomain(A, [tut], h.effects());
  const applies = h.applied.length;
  await ensureForDomain(A, [tut], h.effects());
  assert.is(h.applied.length, applies, 'second prepare changes nothing');
  await releaseDomain(A.key, h.effects());
  await releaseDomain(A.key, h.effects());
  await releaseDomain('never-prepared', h.effects());
  assert.equal(h.names(), ['ens47f1']);
});

test('two domains share a VNI: the pair survives the first release', async () => {
  const h = host();
  await ensureForDomain(A, [tut], h.effects());
  await ensureForDomain(B, [tut, mc], h.effects());
  await releaseDomain(A.key, h.effects());
  assert.equal(h.names(), ['ens47f1', 'vxbr42', 'vxbr43', 'vxlan42', 'vxlan43']);
  await releaseDomain(B.key, h.effects());
  assert.equal(h.names(), ['ens47f1']);
});

test("the Neutron race: A's release cannot delete the bridge B's prepare just ensured", async () => {
  const h = host();
  await ensureForDomain(A, [tut], h.effects());
  // Both hooks run at once; whichever order the lock gives them, B stays served.
  await Promise.all([releaseDomain(A.key, h.effects()), ensureForDomain(B, [tut], h.effects())]);
  assert.equal(h.names(), ['ens47f1', 'vxbr42', 'vxlan42']);
  const h2 = host();
  await ensureForDomain(A, [tut], h2.effects());
  await Promise.all([ensureForDomain(B, [tut], h2.effects()), releaseDomain(A.key, h2.effects())]);
  assert.equal(h2.names(), ['ens47f1', 'vxbr42', 'vxlan42']);
});

test('a failing network rolls back the ones ensured before it', async () => {
  const h = host();
  try {
    await ensureForDomain(A, [tut, broken], h.effects());
    assert.unreachable();
  } catch (err) {
    assert.match((err as Error).message, /network broken: underlay device nosuchdev does not exist/);
  }
  assert.equal(h.names(), ['ens47f1']);
  assert.is(h.users.size, 0);
});

test('rollback keeps what another domain still uses', async () => {
  const h = host();
  await ensureForDomain(B, [tut], h.effects());
  await ensureForDomain(A, [tut, broken], h.effects()).catch(() => undefined);
  assert.equal(h.names(), ['ens47f1', 'vxbr42', 'vxlan42']);
  assert.equal(Object.keys(h.users.get('tut') ?? {}), ['uuid-b']);
});

test('a hand-made bridge of the same name is refused and survives release', async () => {
  const h = host();
  h.links.set('vxbr42', { name: 'vxbr42', kind: 'bridge', group: 0, mtu: 1500, up: true });
  try {
    await ensureForDomain(A, [tut], h.effects());
    assert.unreachable();
  } catch (err) {
    assert.instance(err, DeviceConflictError);
  }
  assert.equal(h.names(), ['ens47f1', 'vxbr42'], 'no vxlan42 was made');
  await releaseDomain(A.key, h.effects());
  assert.ok(h.links.has('vxbr42'));
});

test('a device created by someone else between read and create is re-read, not fatal', async () => {
  const h = host();
  let raced = false;
  h.beforeApply = () => {
    if (raced) return;
    raced = true;
    // Another vxvirt-created bridge appears (e.g. an earlier run finishing).
    h.links.set('vxbr42', { name: 'vxbr42', kind: 'bridge', group: ownerGroup(42), mtu: 1450, up: false });
  };
  await ensureForDomain(A, [tut], h.effects());
  assert.equal(h.names(), ['ens47f1', 'vxbr42', 'vxlan42']);
  assert.ok(h.links.get('vxbr42')?.up);
});

test('a release killed after it began is finished by the next hook run under the lock', async () => {
  const h = host();
  await ensureForDomain(A, [tut], h.effects());
  // What a release killed right after moving the record to releasing/ leaves:
  h.lockHeld = true;
  h.effects().beginRelease(A.key);
  h.lockHeld = false;
  assert.equal(h.names(), ['ens47f1', 'vxbr42', 'vxlan42']);
  await ensureForDomain(B, [mc], h.effects());
  assert.equal(h.names(), ['ens47f1', 'vxbr43', 'vxlan43'], "B's prepare finished A's release first");
  assert.is(h.users.has('tut'), false);
  assert.is(h.releasing.size, 0);
});

test('a prepare killed before it recorded the user leaves nothing the next release of that domain misses', async () => {
  const h = host();
  // Killed after the record and the pair, before users/: the record names the network.
  h.lockHeld = true;
  h.effects().writeDomainRecord(A.key, { name: 'a', networks: [{ name: 'tut', vni: 42 }] });
  h.lockHeld = false;
  h.links.set('vxbr42', { name: 'vxbr42', kind: 'bridge', group: ownerGroup(42), mtu: 1450, up: true });
  await releaseDomain(A.key, h.effects());
  assert.equal(h.names(), ['ens47f1']);
  assert.is(h.domains.size, 0);
});

test('reads stay scoped to the devices of the networks involved', async () => {
  const h = host();
  for (let i = 0; i < 50; i++) h.links.set(`tap${i}`, { name: `tap${i}`, kind: 'tun', group: 0, mtu: 1500, up: true });
  await ensureForDomain(A, [tut], h.effects());
  await releaseDomain(A.key, h.effects());
  for (const q of h.queried) for (const name of q) assert.ok(['ens47f1', 'vxbr42', 'vxlan42'].includes(name), `read ${name}`);
});

test('every change is logged once, with domain and network', async () => {
  const h = host();
  await ensureForDomain(A, [tut], h.effects());
  await ensureForDomain(A, [tut], h.effects());
  await releaseDomain(A.key, h.effects());
  assert.equal(
    h.changes.map((c) => `${c.action} ${c.network} ${c.domain ?? '-'} ${((c.devices as string[] | undefined) ?? []).join('+')}`),
    ['created tut a vxbr42+vxlan42', 'user-added tut a ', 'user-removed tut a ', 'deleted tut a vxbr42+vxlan42'],
  );
});

test('a persistent apply failure is reported with the network name', async () => {
  const h = host();
  h.failOn = (s) => (s.op === 'add-vxlan' ? 'RTNETLINK answers: Operation not supported' : undefined);
  try {
    await ensureForDomain(A, [tut], h.effects());
    assert.unreachable();
  } catch (err) {
    assert.match((err as Error).message, /^network tut: RTNETLINK answers: Operation not supported/);
  }
  assert.equal(h.names(), ['ens47f1'], 'the bridge made before the failure is gone');
});

test('a refused multicast join names the limit, its value and the groups joined; tried once; rolled back; the happy path reads no sysctl', async () => {
  const h = host();
  const other = validateDefinition({ name: 'other', vni: 45, dev: 'ens47f1', group: '239.1.1.2' });
  await ensureForDomain(B, [other], h.effects());
  assert.equal(h.sysctlReads, [], 'a start that works reads no sysctl');
  assert.is(h.surveyed, 0, 'a start that works reads no other devices');

  h.sysctls.set('net.ipv4.igmp_max_memberships', 1);
  h.failOn = (s) => (s.op === 'up' && s.name === 'vxlan43' ? "RTNETLINK answers: No buffer space available (at 'ip link set dev vxlan43 up')" : undefined);
  const applies = h.applied.length;
  try {
    await ensureForDomain(A, [tut, mc], h.effects());
    assert.unreachable();
  } catch (err) {
    const message = (err as Error).message;
    assert.ok(message.startsWith("network mc: the kernel refused to join multicast group 239.1.1.1 on ens47f1 (RTNETLINK answers: No buffer space available (at 'ip link set dev vxlan43 up')): "), message);
    assert.ok(message.includes('net.ipv4.igmp_max_memberships = 1 '), message);
    assert.ok(message.includes("vxvirt's VXLAN devices on UDP port 4789 have joined 1 group;"), message);
  }
  assert.equal(h.sysctlReads, ['net.ipv4.igmp_max_memberships']);
  assert.is(h.surveyed, 1);
  const joins = h.applied.slice(applies).filter((steps) => steps.some((st) => st.op === 'up' && st.name === 'vxlan43'));
  assert.is(joins.length, 1, 'a host limit is not retried');
  assert.equal(h.names(), ['ens47f1', 'vxbr45', 'vxlan45'], "A's pairs are rolled back, B's stays");
  assert.equal([...h.users.keys()], ['other']);
  assert.is(h.domains.get(A.key), undefined);
});

test('a failed second prepare keeps the records of the first', async () => {
  const h = host();
  await ensureForDomain(A, [tut], h.effects());
  await ensureForDomain(A, [tut, broken], h.effects()).catch(() => undefined);
  assert.equal(Object.keys(h.users.get('tut') ?? {}), ['uuid-a']);
  assert.ok(h.links.has('vxbr42'), 'the pair A already used stays');
});

test('a failed reconnect records the running domain on every network and rolls nothing back', async () => {
  const h = host();
  await ensureForDomain(A, [tut], h.effects());
  try {
    await reconnectDomain(A, [tut, broken, mc], h.effects());
    assert.unreachable();
  } catch (err) {
    assert.match((err as Error).message, /^domain a keeps running, but network broken: underlay device nosuchdev does not exist/);
  }
  assert.equal([...h.users.keys()].sort(), ['broken', 'mc', 'tut']);
  assert.equal(h.names(), ['ens47f1', 'vxbr42', 'vxbr43', 'vxlan42', 'vxlan43'], 'networks after the failing one were still ensured');
  await releaseDomain(A.key, h.effects());
  assert.equal(h.names(), ['ens47f1']);
  assert.is(h.users.size, 0);
});

// ---- reconcile ---------------------------------------------------------------

const noLibvirt = (dryRun = false): ReconcileOptions => ({ dryRun, graceSeconds: 120, libvirt: { reachable: false, reason: 'test' } });
const later = (h: FakeHost, seconds: number) => (h.now = new Date(h.now.getTime() + seconds * 1000));

test('reconcile repairs drift, and a second look finds nothing: converged', async () => {
  const h = host();
  h.defs = [tut, mc];
  await ensureForDomain(A, [tut], h.effects());
  h.links.get('vxlan42')!.mtu = 1500;
  delete h.links.get('vxlan42')!.master;
  h.links.get('vxbr42')!.up = false;
  const dry = await reconcileHost(noLibvirt(true), h.effects());
  assert.equal(dry.plan.actions.flatMap((a) => a.lines), [
    'repaired vxbr42 (network tut): down -> up',
    'repaired vxlan42 (network tut): mtu 1500 -> 1450, not a port of any bridge -> port of vxbr42',
  ]);
  assert.is(dry.converged, false);
  assert.is(h.links.get('vxlan42')?.mtu, 1500, 'a dry run changes nothing');
  const r = await reconcileHost(noLibvirt(), h.effects());
  assert.is(r.converged, true);
  assert.equal(r.failed, []);
  assert.equal([h.links.get('vxlan42')?.mtu, h.links.get('vxlan42')?.master, h.links.get('vxbr42')?.up], [1450, 'vxbr42', true]);
  assert.equal(Object.keys(h.users.get('tut') ?? {}), [A.key], 'the user stays: it is within the grace period');
});

test('reconcile without libvirt drops an old user with no port, then its pair', async () => {
  const h = host();
  h.defs = [tut];
  await ensureForDomain(A, [tut], h.effects());
  const soon = await reconcileHost(noLibvirt(), h.effects());
  assert.equal(soon.plan.actions, [], 'within the grace period nothing is judged');
  later(h, 121);
  const r = await reconcileHost(noLibvirt(), h.effects());
  assert.equal(r.plan.actions.map((a) => a.kind), ['drop-user', 'drop-record', 'remove']);
  assert.is(r.converged, true);
  assert.equal(h.names(), ['ens47f1']);
  assert.is(h.users.size + h.domains.size, 0);
});

test('reconcile finishes a release a killed hook left, like the next hook would', async () => {
  const h = host();
  h.defs = [tut, mc];
  await ensureForDomain(A, [tut, mc], h.effects());
  await ensureForDomain(B, [mc], h.effects());
  h.lockHeld = true;
  h.effects().beginRelease(A.key);
  h.lockHeld = false;
  const r = await reconcileHost({ ...noLibvirt(), libvirt: { reachable: true, asOf: h.now, domains: [{ uuid: B.key, name: 'b', bridges: ['vxbr43'], networks: [] }] } }, h.effects());
  assert.equal(r.plan.actions.flatMap((a) => a.lines), ['finished the release of a that was cut short: no longer a user of tut, mc', 'removed vxbr42+vxlan42 (network tut): no users']);
  assert.is(r.converged, true);
  assert.equal(h.names(), ['ens47f1', 'vxbr43', 'vxlan43']);
  assert.is(h.releasing.size, 0);
});

test('one failing action does not stop the others, and the run says it has not converged', async () => {
  const h = host();
  h.defs = [tut, mc];
  await ensureForDomain(A, [tut], h.effects());
  h.links.get('vxbr42')!.up = false;
  h.links.set('vxbr43', { name: 'vxbr43', kind: 'bridge', group: ownerGroup(43), mtu: 1450, up: true });
  h.failOn = (s) => (s.op === 'up' ? 'RTNETLINK answers: Operation not permitted' : undefined);
  const r = await reconcileHost(noLibvirt(), h.effects());
  assert.equal(r.failed.map((f) => f.action.kind), ['repair']);
  assert.match(r.failed[0]!.error, /network tut: RTNETLINK answers: Operation not permitted/);
  assert.is(h.links.has('vxbr43'), false, 'the removal after the failed repair was carried out');
  assert.is(r.converged, false);
  assert.equal(r.remaining.actions.map((a) => a.kind), ['repair']);
});

test('prepare uses the definition as it is once the lock is held, not as the hook first read it', async () => {
  const h = host();
  const peers = validateDefinition({ name: 'uc', vni: 45, dev: 'ens47f1', remotes: ['192.168.8.101', '192.168.8.102'] });
  const changed = validateDefinition({ name: 'uc', vni: 45, dev: 'ens47f1', remotes: ['192.168.8.101', '192.168.8.103'] });
  h.defs = [changed]; // a set-peers ran while this prepare waited for the lock
  await ensureForDomain(A, [peers], h.effects());
  assert.equal(h.fdb.get('vxlan45'), ['192.168.8.101', '192.168.8.103']);
  h.defs = [];
  const gone = validateDefinition({ name: 'gone', vni: 46, dev: 'ens47f1', remotes: ['192.168.8.101'] });
  const fx = { ...h.effects(), rereadDefinition: () => undefined };
  try {
    await ensureForDomain(B, [gone], fx);
    assert.unreachable();
  } catch (err) {
    assert.match((err as Error).message, /network gone was undefined while the domain was starting/);
  }
  assert.not.ok(h.links.has('vxbr46'));
});

test.run();
