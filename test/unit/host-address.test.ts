// One definition for every host: resolveForHost, the one function the hook's
// prepare, reconcile, status and check resolve a definition with.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { DefinitionError } from '../../src/errors.ts';
import { addressesNeeded, resolveForHost, type HostAddress } from '../../src/host-address.ts';
import { floodingMode, serializeDefinition, parseStoredDefinition, validateDefinition, type DefinitionInput } from '../../src/network-definition.ts';
import { desiredVxlan, planEnsure, renderBridgeBatch, type Observed } from '../../src/plan.ts';

const def = (extra: Partial<DefinitionInput> = {}) => validateDefinition({ name: 'fleet', vni: 42, dev: 'eth1', ...extra });
const fleet = ['192.168.8.100', '192.168.8.101', '192.168.8.102'];
/** Host .101: its underlay address, a second one, a link-local IPv6 and loopback. */
const host101: HostAddress[] = [
  { dev: 'lo', address: '127.0.0.1', scope: 'host' },
  { dev: 'eth0', address: '10.0.0.5', scope: 'global' },
  { dev: 'eth1', address: '192.168.8.101', scope: 'global' },
  { dev: 'eth1', address: 'fe80::1', scope: 'link' },
];

test('without --local: the underlay address is the source, and this host leaves the peer list', () => {
  const r = resolveForHost(def({ remotes: fleet }), host101);
  assert.is(r.local, '192.168.8.101');
  assert.equal(r.remotes, ['192.168.8.100', '192.168.8.102']);
  assert.equal(r.ownRemotes, ['192.168.8.101']);
  assert.is(floodingMode(r), 'unicast');
});

test('the same definition on each host of the fleet: each its own source, the others as peers', () => {
  for (const me of fleet) {
    const r = resolveForHost(def({ remotes: fleet }), [{ dev: 'eth1', address: me, scope: 'global' }]);
    assert.is(r.local, me);
    assert.equal(r.remotes, fleet.filter((a) => a !== me));
  }
});

test('a peer list of two stays unicast on each of the two hosts (the mode is the definition\'s)', () => {
  const r = resolveForHost(def({ remotes: ['192.168.8.100', '192.168.8.101'] }), host101);
  assert.equal(r.remotes, ['192.168.8.100']);
  assert.is(floodingMode(r), 'unicast');
  const observed: Observed = { links: new Map([['eth1', { name: 'eth1', kind: 'veth', group: 0, mtu: 1500, up: true }]]), floodDsts: new Map(), addresses: host101 };
  const steps = planEnsure(def({ remotes: ['192.168.8.100', '192.168.8.101'] }), observed);
  assert.equal(renderBridgeBatch(steps), ['fdb append 00:00:00:00:00:00 dev vxlan42 dst 192.168.8.100 self permanent']);
  assert.is(desiredVxlan(r).remote, undefined);
});

test('a given --local wins; other own addresses still leave the peer list', () => {
  const r = resolveForHost(def({ local: '10.0.0.5', remotes: fleet }), host101);
  assert.is(r.local, '10.0.0.5');
  assert.equal(r.remotes, ['192.168.8.100', '192.168.8.102']);
});

test('multicast: the underlay address of the group\'s family; IPv6 skips link-local', () => {
  assert.is(resolveForHost(def({ group: '239.1.1.42' }), host101).local, '192.168.8.101');
  const v6: HostAddress[] = [
    { dev: 'eth1', address: 'fe80::1', scope: 'link' },
    { dev: 'eth1', address: 'fd00::9', scope: 'global', dadfailed: true },
    { dev: 'eth1', address: 'fd00::1', scope: 'global' },
  ];
  assert.is(resolveForHost(def({ group: 'ff05::42' }), v6).local, 'fd00::1');
});

test('no address of the family on the underlay: one line naming the device and the family', () => {
  try {
    resolveForHost(def({ remotes: ['fd00::2', 'fd00::3'] }), host101);
    assert.unreachable('resolved without an IPv6 address');
  } catch (err) {
    assert.instance(err, DefinitionError);
    assert.is((err as Error).message, 'network fleet: underlay device eth1 has no IPv6 address to send VXLAN packets from: assign one to eth1, or define the network with --local');
  }
  // An address on another device is not the underlay's.
  assert.throws(() => resolveForHost(def({ remotes: ['10.9.9.9'], dev: 'eth2' }), host101), /underlay device eth2 has no IPv4 address/);
});

test('a point-to-point remote that is this host itself is refused, naming it', () => {
  assert.throws(() => resolveForHost(def({ remotes: ['192.168.8.101'] }), host101), /--remote 192.168\.8\.101 is this host's own address \(on eth1\)/);
});

test('addresses not read: only a definition with --local resolves, unchanged', () => {
  const given = def({ local: '192.168.8.101', group: '239.1.1.42' });
  assert.is(resolveForHost(given, undefined), given);
  assert.throws(() => resolveForHost(def({ group: '239.1.1.42' }), undefined), /addresses of eth1 were not read/);
});

test('which addresses are read: the underlay family, none for --local with a group', () => {
  assert.is(addressesNeeded(def({ remotes: ['fd00::2'] })), 6);
  assert.is(addressesNeeded(def({ group: '239.1.1.42' })), 4);
  assert.is(addressesNeeded(def({ local: '192.168.8.101', group: '239.1.1.42' })), undefined);
  assert.is(addressesNeeded(def({ local: '192.168.8.101', remotes: fleet.slice(0, 1) })), 4);
});

test('stored without a local address; "auto" reads as none; older files stay valid; the resolution is never stored', () => {
  const stored = JSON.parse(serializeDefinition(resolveForHost(def({ remotes: fleet }), host101)));
  assert.is(stored.ownRemotes, undefined);
  assert.is(def({ local: 'auto', remotes: fleet }).local, undefined);
  assert.is(parseStoredDefinition(JSON.stringify({ version: 1, name: 'old', vni: 7, dev: 'eth1', local: '192.168.8.100', remotes: ['192.168.8.101'], dstport: 4789, learning: true }), 'old.json').local, '192.168.8.100');
  assert.is(parseStoredDefinition(JSON.stringify({ name: 'auto', vni: 8, dev: 'eth1', local: 'auto', remotes: fleet }), 'auto.json').local, undefined);
});

test.run();
