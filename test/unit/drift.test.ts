import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { networkDrift, orphanPairs, ownedVni, unrecordedGuests } from '../../src/drift.ts';
import { validateDefinition } from '../../src/network-definition.ts';
import { resolveForHost } from '../../src/host-address.ts';
import { desiredVxlan, ownerGroup, type Link, type Observed } from '../../src/plan.ts';

const tut = validateDefinition({ name: 'tut', vni: 42, dev: 'ens47f1', remotes: ['192.168.8.101'] });
const underlay: Link = { name: 'ens47f1', kind: 'veth', group: 0, mtu: 1500, up: true };
/** This host's address on the underlay: the definition has no --local, the device sends from it. */
const addresses = [{ dev: 'ens47f1', address: '192.168.8.100', scope: 'global' }];
const G = ownerGroup(42);
const bridge = (extra: Partial<Link> = {}): Link => ({ name: 'vxbr42', kind: 'bridge', group: G, mtu: 1450, up: true, alias: 'vxvirt:tut', ...extra });
const vxlan = (extra: Partial<Link> = {}): Link => ({ name: 'vxlan42', kind: 'vxlan', group: G, mtu: 1450, up: true, master: 'vxbr42', alias: 'vxvirt:tut', vxlan: desiredVxlan(resolveForHost(tut, addresses)), ...extra });
const observed = (...links: Link[]): Observed => ({ links: new Map([underlay, ...links].map((l) => [l.name, l])), floodDsts: new Map(), addresses });
const used = { 'uuid-a': { name: 'a', since: '2026-01-01T00:00:00Z' } };

test('in sync: no drift, with or without users', () => {
  assert.equal(networkDrift(tut, used, observed(bridge(), vxlan())), []);
  assert.equal(networkDrift(tut, {}, observed()), []);
});

test('devices nobody uses', () => {
  assert.equal(networkDrift(tut, {}, observed(bridge(), vxlan())), [{ kind: 'unused', devices: ['vxbr42', 'vxlan42'], detail: 'vxbr42+vxlan42 exist but no domain uses them' }]);
});

test('users whose devices are missing', () => {
  assert.equal(networkDrift(tut, used, observed(bridge())), [{ kind: 'missing', devices: ['vxlan42'], detail: 'vxlan42 is missing, used by a' }]);
});

test('each difference from the definition, per device', () => {
  const d = networkDrift(tut, used, observed(bridge({ up: false }), vxlan({ mtu: 1400, master: undefined, alias: undefined })));
  assert.equal(d.map((x) => [x.kind, x.detail]), [
    ['device', 'vxbr42: down -> up'],
    ['device', 'vxlan42: mtu 1400 -> 1450, not a port of any bridge -> port of vxbr42, alias (none) -> vxvirt:tut'],
  ]);
  const other = networkDrift(tut, used, observed(bridge(), vxlan({ vxlan: { ...desiredVxlan(resolveForHost(tut, addresses)), port: 8472, learning: false } })));
  assert.equal(other.map((x) => x.detail), ['vxlan42: port 8472 -> 4789, learning false -> true (replaced)']);
  const wrongKind = networkDrift(tut, used, observed(bridge(), { name: 'vxlan42', kind: 'veth', group: G, mtu: 1450, up: true }));
  assert.equal(wrongKind.map((x) => x.detail), ['vxlan42: a veth, not a vxlan -> replaced']);
});

test('a network that cannot be made is an error, not a crash', () => {
  const d = networkDrift(tut, used, { links: new Map(), floodDsts: new Map() });
  assert.equal(d.map((x) => x.kind), ['error']);
  assert.match(d[0]!.detail, /underlay device ens47f1 does not exist/);
});

test('orphans: vxvirt groups without a definition, named by alias; foreign devices are not', () => {
  const o = observed(
    bridge({ name: 'vxbr43', group: ownerGroup(43), alias: 'vxvirt:old' }),
    vxlan({ name: 'vxlan43', group: ownerGroup(43), alias: undefined, master: 'vxbr43' }),
    { name: 'vnet0', kind: 'tun', group: 0, mtu: 1450, up: true, master: 'vxbr43' },
    bridge(),
    { name: 'vxbr50', kind: 'bridge', group: 0, mtu: 1500, up: true },
    { name: 'grp', kind: 'bridge', group: 7, mtu: 1500, up: true },
  );
  assert.equal(orphanPairs([tut], o), [{ vni: 43, name: 'old', devices: ['vxbr43', 'vxlan43'], ports: ['vnet0'] }]);
  assert.equal([ownedVni(bridge()), ownedVni(underlay), ownedVni({ ...underlay, group: ownerGroup(0) })], [42, undefined, undefined]);
});

test('running guests on a vxvirt network that are not its users: by bridge or by libvirt network, each once', () => {
  const mc = validateDefinition({ name: 'mc', vni: 43, dev: 'ens47f1', group: '239.1.1.1' });
  const users: Record<string, Record<string, { name: string; since: string }>> = { tut: { 'UUID-A': { name: 'a', since: '' } } };
  const active = [
    // Recorded (the key's case does not matter), on vxbr42.
    { uuid: 'uuid-a', name: 'a', bridges: ['vxbr42'], networks: [] },
    // A type='bridge' hot-plug onto vxbr42 and a NIC on the libvirt network mc: neither recorded.
    { uuid: 'uuid-p', name: 'plain', bridges: ['virbr0', 'vxbr42', 'vxbr42'], networks: ['mc'] },
    // Not on a vxvirt network.
    { uuid: 'uuid-o', name: 'other', bridges: ['virbr0'], networks: ['default'] },
  ];
  assert.equal(unrecordedGuests([tut, mc], (n) => users[n] ?? {}, active), [
    { network: 'mc', bridge: 'vxbr43', domain: 'plain', uuid: 'uuid-p' },
    { network: 'tut', bridge: 'vxbr42', domain: 'plain', uuid: 'uuid-p' },
  ]);
});

test.run();
