import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { DeviceConflictError } from '../../src/errors.ts';
import { ensureForDomain, reconnectDomain, releaseDomain } from '../../src/lifecycle.ts';
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
  assert.equal(await releaseDomain(A.key, defs, h.effects()), ['tut']);
  assert.equal(h.names(), ['ens47f1']);
  assert.is(h.users.size, 0);
});

test('double prepare, double release and release without prepare are harmless', async () => {
  const h = host();
  await ensureForDomain(A, [tut], h.effects());
  const applies = h.applied.length;
  await ensureForDomain(A, [tut], h.effects());
  assert.is(h.applied.length, applies, 'second prepare changes nothing');
  await releaseDomain(A.key, defs, h.effects());
  await releaseDomain(A.key, defs, h.effects());
  await releaseDomain('never-prepared', defs, h.effects());
  assert.equal(h.names(), ['ens47f1']);
});

test('two domains share a VNI: the pair survives the first release', async () => {
  const h = host();
  await ensureForDomain(A, [tut], h.effects());
  await ensureForDomain(B, [tut, mc], h.effects());
  await releaseDomain(A.key, defs, h.effects());
  assert.equal(h.names(), ['ens47f1', 'vxbr42', 'vxbr43', 'vxlan42', 'vxlan43']);
  await releaseDomain(B.key, defs, h.effects());
  assert.equal(h.names(), ['ens47f1']);
});

test("the Neutron race: A's release cannot delete the bridge B's prepare just ensured", async () => {
  const h = host();
  await ensureForDomain(A, [tut], h.effects());
  // Both hooks run at once; whichever order the lock gives them, B stays served.
  await Promise.all([releaseDomain(A.key, defs, h.effects()), ensureForDomain(B, [tut], h.effects())]);
  assert.equal(h.names(), ['ens47f1', 'vxbr42', 'vxlan42']);
  const h2 = host();
  await ensureForDomain(A, [tut], h2.effects());
  await Promise.all([ensureForDomain(B, [tut], h2.effects()), releaseDomain(A.key, defs, h2.effects())]);
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
  await releaseDomain(A.key, defs, h.effects());
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

test('leftovers of a killed run are removed by the next release', async () => {
  const h = host();
  // Pair made but the domain never recorded (killed in between):
  h.links.set('vxbr43', { name: 'vxbr43', kind: 'bridge', group: ownerGroup(43), mtu: 1450, up: true });
  await releaseDomain('someone', defs, h.effects());
  assert.equal(h.names(), ['ens47f1']);
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
  await releaseDomain(A.key, defs, h.effects());
  assert.equal(h.names(), ['ens47f1']);
  assert.is(h.users.size, 0);
});

test.run();
