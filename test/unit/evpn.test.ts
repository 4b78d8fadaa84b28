// The evpn flooding mode: its definition, the devices it plans, the drift
// status reports and what redefine refuses. Pure logic; the real devices are
// checked in test/integration/evpn.test.ts.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { networkDrift } from '../../src/drift.ts';
import { DefinitionError } from '../../src/errors.ts';
import { floodingMode, overlayMtu, parseStoredDefinition, serializeDefinition, validateDefinition, type DefinitionInput } from '../../src/network-definition.ts';
import { desiredVxlan, ownerGroup, planEnsure, renderBridgeBatch, renderIpBatch, type Link, type Observed } from '../../src/plan.ts';
import { planRedefine } from '../../src/redefine.ts';

const base: DefinitionInput = { name: 'ev', vni: 42, dev: 'ens47f1', local: '192.168.8.100', evpn: true };
const evpn = (extra: Partial<DefinitionInput> = {}) => validateDefinition({ ...base, ...extra });

function rejects(input: DefinitionInput, pattern: RegExp): void {
  try {
    validateDefinition(input);
  } catch (err) {
    assert.instance(err, DefinitionError);
    assert.match((err as Error).message, pattern);
    assert.not.match((err as Error).message, /\n/, 'one line');
    return;
  }
  assert.unreachable(`accepted ${JSON.stringify(input)}`);
}

test('an evpn definition: no peers, no group, no learning; stored with evpn true, others without the key', () => {
  const def = evpn();
  assert.equal(def, { name: 'ev', vni: 42, dev: 'ens47f1', remotes: [], dstport: 4789, learning: false, evpn: true, local: '192.168.8.100' });
  assert.is(floodingMode(def), 'evpn');
  assert.equal(parseStoredDefinition(serializeDefinition(def), 'ev.json'), def);
  const p2p = validateDefinition({ name: 'p', vni: 43, dev: 'eth0', remotes: ['10.0.0.2'], evpn: false });
  assert.not.ok('evpn' in p2p);
  assert.not.match(serializeDefinition(p2p), /evpn/);
  // --local is optional, and the MTU rule is the family's.
  assert.is(floodingMode(evpn({ local: undefined })), 'evpn');
  assert.is(overlayMtu(evpn(), 1500), 1450);
  assert.is(overlayMtu(evpn({ local: 'fd00::1' }), 1500), 1430);
});

test('--evpn with --remote, --group or --learning is refused naming the conflict', () => {
  rejects({ ...base, remotes: ['192.168.8.101'] }, /^--remote "192\.168\.8\.101": cannot be combined with --evpn: the peers of an EVPN network come from BGP/);
  rejects({ ...base, remotes: ['192.168.8.101', '192.168.8.102'] }, /^--remote "192\.168\.8\.101,192\.168\.8\.102": cannot be combined with --evpn/);
  rejects({ ...base, group: '239.1.1.1' }, /^--group "239\.1\.1\.1": cannot be combined with --evpn/);
  rejects({ ...base, learning: true }, /^--learning true: an EVPN network never learns/);
  rejects({ ...base, evpn: 'yes' }, /^--evpn "yes": must be true or false/);
  // Without any mode, the message names --evpn among the choices.
  rejects({ name: 'x', vni: 1, dev: 'eth0' }, /--evpn \(BGP EVPN through FRR\)/);
});

const underlay: Link = { name: 'ens47f1', kind: 'veth', group: 0, mtu: 1500, up: true };
const G = ownerGroup(42);
const observed = (...links: Link[]): Observed => ({ links: new Map([underlay, ...links].map((l) => [l.name, l])), floodDsts: new Map() });
const goodBridge = (extra: Partial<Link> = {}): Link => ({
  name: 'vxbr42',
  kind: 'bridge',
  group: G,
  mtu: 1450,
  up: true,
  alias: 'vxvirt:ev',
  neigh: { arpAccept: 1, acceptUntrackedNa: 1 },
  ...extra,
});
const goodVxlan = (extra: Partial<Link> = {}): Link => ({
  name: 'vxlan42',
  kind: 'vxlan',
  group: G,
  mtu: 1450,
  up: true,
  master: 'vxbr42',
  alias: 'vxvirt:ev',
  vxlan: desiredVxlan(evpn()),
  bridgePort: { learning: false, neighSuppress: true },
  ...extra,
});

test('from nothing: nolearning vxlan with local and port only, port flags, then the bridge sysctls', () => {
  const steps = planEnsure(evpn(), observed());
  assert.equal(renderIpBatch(steps), [
    `link add vxbr42 group ${G} mtu 1450 type bridge`,
    `link add vxlan42 group ${G} mtu 1450 type vxlan id 42 dstport 4789 local 192.168.8.100 dev ens47f1 nolearning`,
    'link set dev vxlan42 master vxbr42',
    'link set dev vxlan42 type bridge_slave learning off neigh_suppress on',
    'link set dev vxbr42 alias vxvirt:ev addrgenmode none',
    'link set dev vxlan42 alias vxvirt:ev addrgenmode none',
    'link set dev vxlan42 up',
    'link set dev vxbr42 up',
  ]);
  assert.equal(
    steps.filter((s) => s.op === 'sysctl'),
    [
      { op: 'sysctl', device: 'vxbr42', key: 'arpAccept', value: 1, optional: false },
      { op: 'sysctl', device: 'vxbr42', key: 'acceptUntrackedNa', value: 1, optional: true },
    ],
  );
  assert.equal(renderBridgeBatch(steps), [], 'no flood entries: FRR installs them');
});

test('a matching evpn pair needs nothing; a kernel without accept_untracked_na is not drift', () => {
  assert.equal(planEnsure(evpn(), observed(goodBridge(), goodVxlan())), []);
  assert.equal(planEnsure(evpn(), observed(goodBridge({ neigh: { arpAccept: 1 } }), goodVxlan())), []);
});

test('lost port flags or arp_accept are repaired in place, and status words them as drift', () => {
  const drifted = observed(goodBridge({ neigh: { arpAccept: 0, acceptUntrackedNa: 1 } }), goodVxlan({ bridgePort: { learning: true, neighSuppress: false } }));
  const steps = planEnsure(evpn(), drifted);
  assert.equal(
    steps.map((s) => s.op),
    ['set-port', 'sysctl'],
  );
  const used = { 'uuid-a': { name: 'a', since: '2026-01-01T00:00:00Z' } };
  assert.equal(
    networkDrift(evpn(), used, drifted).map((d) => [d.kind, d.detail]),
    [
      ['device', 'vxbr42: net.ipv4.conf.vxbr42.arp_accept 0 -> 1'],
      ['device', 'vxlan42: port learning on -> off, neigh_suppress off -> on'],
    ],
  );
  // A vxlan with a remote (made by another mode) is replaced, not patched.
  const withRemote = planEnsure(evpn(), observed(goodBridge(), goodVxlan({ vxlan: { ...desiredVxlan(evpn()), remote: '192.168.8.101' } })));
  assert.equal(withRemote[0], { op: 'delete', name: 'vxlan42' });
  assert.ok(withRemote.some((s) => s.op === 'set-port'), 'the new vxlan gets its port flags');
});

test('other modes never touch port flags or sysctls', () => {
  const p2p = validateDefinition({ name: 'ev', vni: 42, dev: 'ens47f1', local: '192.168.8.100', remotes: ['192.168.8.101'] });
  const steps = planEnsure(p2p, observed());
  assert.not.ok(steps.some((s) => s.op === 'set-port' || s.op === 'sysctl'));
});

test('redefine: into or out of evpn needs a new vxlan, and says why', () => {
  const p2p = validateDefinition({ ...base, evpn: undefined, remotes: ['192.168.8.101'] });
  for (const [from, to] of [
    [p2p, evpn()],
    [evpn(), p2p],
  ] as const) {
    const plan = planRedefine(from, to);
    assert.equal(plan.refused.map((r) => r.what), ['flooding mode']);
    assert.match(plan.refused[0]!.why, /EVPN vxlan has no remote or group/);
  }
  assert.equal(planRedefine(evpn(), evpn({ mtu: 1400 })).refused, [], 'the MTU changes in place');
  assert.equal(planRedefine(evpn(), evpn({ mtu: 1400 })).changes.map((c) => c.what), ['--mtu']);
});

test.run();
