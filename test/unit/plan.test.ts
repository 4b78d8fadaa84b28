import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { DefinitionError, DeviceConflictError } from '../../src/errors.ts';
import { validateDefinition, type DefinitionInput } from '../../src/network-definition.ts';
import {
  desiredVxlan,
  ownerGroup,
  planEnsure,
  planTeardown,
  renderBridgeBatch,
  renderIpBatch,
  type Link,
  type Observed,
} from '../../src/plan.ts';

const def = (extra: Partial<DefinitionInput> = {}) =>
  validateDefinition({ name: 'tut', vni: 42, dev: 'ens47f1', local: '192.168.8.100', remotes: ['192.168.8.101'], ...extra });

const underlay: Link = { name: 'ens47f1', kind: 'veth', group: 0, mtu: 1500, up: true };
const observed = (...links: Link[]): Observed => ({
  links: new Map([underlay, ...links].map((l) => [l.name, l])),
  floodDsts: new Map(),
  addresses: [{ dev: 'ens47f1', address: '192.168.8.100', scope: 'global' }],
});
const G = ownerGroup(42);
const goodBridge = (): Link => ({ name: 'vxbr42', kind: 'bridge', group: G, mtu: 1450, up: true, alias: 'vxvirt:tut' });
const goodVxlan = (): Link => ({
  name: 'vxlan42',
  kind: 'vxlan',
  group: G,
  mtu: 1450,
  up: true,
  master: 'vxbr42',
  alias: 'vxvirt:tut',
  vxlan: desiredVxlan(def()),
});

test('from nothing: the whole pair as one ip batch, in a safe order', () => {
  const steps = planEnsure(def(), observed());
  assert.equal(renderIpBatch(steps), [
    `link add vxbr42 group ${G} mtu 1450 type bridge`,
    `link add vxlan42 group ${G} mtu 1450 type vxlan id 42 dstport 4789 local 192.168.8.100 remote 192.168.8.101 dev ens47f1 learning`,
    'link set dev vxlan42 master vxbr42',
    'link set dev vxbr42 alias vxvirt:tut addrgenmode none',
    'link set dev vxlan42 alias vxvirt:tut addrgenmode none',
    'link set dev vxlan42 up',
    'link set dev vxbr42 up',
  ]);
  assert.equal(renderBridgeBatch(steps), []);
});

test('multicast, ttl and no learning reach the vxlan line; without --local, the underlay\'s address is the source', () => {
  const steps = planEnsure(def({ remotes: undefined, local: undefined, group: '239.1.1.1', ttl: 5, learning: false, dstport: 8472 }), observed());
  assert.is(
    renderIpBatch(steps)[1],
    `link add vxlan42 group ${G} mtu 1450 type vxlan id 42 dstport 8472 local 192.168.8.100 group 239.1.1.1 dev ens47f1 ttl 5 nolearning`,
  );
});

test('unicast peers: no remote on the device, one flood entry per peer', () => {
  const d = def({ remotes: ['192.168.8.101', '192.168.8.102'] });
  const steps = planEnsure(d, observed());
  assert.not.match(renderIpBatch(steps)[1] ?? '', /remote/);
  assert.equal(renderBridgeBatch(steps), [
    'fdb append 00:00:00:00:00:00 dev vxlan42 dst 192.168.8.101 self permanent',
    'fdb append 00:00:00:00:00:00 dev vxlan42 dst 192.168.8.102 self permanent',
  ]);
  // An existing device with a stale peer and a missing one:
  const vx = { ...goodVxlan(), vxlan: desiredVxlan(d) };
  const obs = observed(goodBridge(), vx);
  obs.floodDsts.set('vxlan42', ['192.168.8.101', '192.168.8.109']);
  assert.equal(renderBridgeBatch(planEnsure(d, obs)), [
    'fdb append 00:00:00:00:00:00 dev vxlan42 dst 192.168.8.102 self permanent',
    'fdb del 00:00:00:00:00:00 dev vxlan42 dst 192.168.8.109 self',
  ]);
});

test('a matching pair needs nothing (idempotent)', () => {
  assert.equal(planEnsure(def(), observed(goodBridge(), goodVxlan())), []);
});

test('our pair half-made or drifted is repaired', () => {
  // Killed after the bridge was created:
  const half = planEnsure(def(), observed({ ...goodBridge(), up: false, alias: undefined }));
  assert.equal(
    half.map((s) => s.op),
    ['add-vxlan', 'set-master', 'prepare-port', 'prepare-port', 'up', 'up'],
  );
  // Wrong remote: the vxlan is replaced (most vxlan attributes are fixed at creation).
  const drifted = { ...goodVxlan(), vxlan: { ...desiredVxlan(def()), remote: '192.168.8.199' } };
  const steps = planEnsure(def(), observed(goodBridge(), drifted));
  assert.equal(renderIpBatch(steps).slice(0, 2), [
    'link del dev vxlan42',
    `link add vxlan42 group ${G} mtu 1450 type vxlan id 42 dstport 4789 local 192.168.8.100 remote 192.168.8.101 dev ens47f1 learning`,
  ]);
  // Wrong MTU and detached from the bridge:
  const loose = { ...goodVxlan(), mtu: 1400, master: undefined };
  assert.equal(renderIpBatch(planEnsure(def(), observed(goodBridge(), loose))), [
    'link set dev vxlan42 mtu 1450',
    'link set dev vxlan42 master vxbr42',
  ]);
});

test('a device of the same name that vxvirt did not create is a conflict naming it', () => {
  const handMade: Link = { name: 'vxbr42', kind: 'bridge', group: 0, mtu: 1500, up: true };
  assert.throws(
    () => planEnsure(def(), observed(handMade)),
    (e: unknown) => e instanceof DeviceConflictError && /device vxbr42 already exists and was not created by vxvirt/.test((e as Error).message),
  );
  const otherVxlan: Link = { ...goodVxlan(), group: 0 };
  assert.throws(() => planEnsure(def(), observed(goodBridge(), otherVxlan)), /device vxlan42 already exists/);
});

test('a missing underlay or an impossible MTU plans nothing', () => {
  const none: Observed = { links: new Map(), floodDsts: new Map() };
  assert.throws(
    () => planEnsure(def(), none),
    (e: unknown) => e instanceof DefinitionError && /underlay device ens47f1 does not exist/.test((e as Error).message),
  );
  assert.throws(() => planEnsure(def({ mtu: 1480 }), observed()), /--mtu 1480 is larger than 1450/);
  // Jumbo underlay, IPv6:
  const v6 = def({ local: 'fd00::1', remotes: ['fd00::2'] });
  const jumbo = { links: new Map([['ens47f1', { ...underlay, mtu: 9000 }]]), floodDsts: new Map() };
  assert.match(renderIpBatch(planEnsure(v6, jumbo))[0] ?? '', /mtu 8930/);
});

test('teardown: one group delete, only of our devices', () => {
  assert.equal(renderIpBatch(planTeardown(42, observed(goodBridge(), goodVxlan())).steps), [`link del group ${G}`]);
  assert.equal(planTeardown(42, observed()).steps, []);
  const handMade: Link = { name: 'vxbr42', kind: 'bridge', group: 0, mtu: 1500, up: true };
  assert.equal(planTeardown(42, observed(handMade)).steps, []);
});

test('teardown keeps a bridge that still has a guest port', () => {
  const tap: Link = { name: 'vnet0', kind: 'tun', group: 0, mtu: 1450, up: true, master: 'vxbr42' };
  const plan = planTeardown(42, observed(goodBridge(), goodVxlan(), tap));
  assert.equal(plan.steps, []);
  assert.match(plan.kept ?? '', /vxbr42 still has ports vnet0/);
});

test.run();
