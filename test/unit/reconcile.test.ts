// planReconcile: facts in, actions out. One table row per situation a host
// can be left in; each row lists every line the plan prints, so an extra or
// a missing action fails the row.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { validateDefinition, type NetworkDefinition } from '../../src/network-definition.ts';
import { resolveForHost } from '../../src/host-address.ts';
import { desiredVxlan, ownerGroup, type Link } from '../../src/plan.ts';
import { activeDomainFacts, libvirtNetworkDrift, planLibvirtNetworks, planReconcile, type ActiveDomainFacts, type LibvirtNetworkView, type ReconcileFacts } from '../../src/reconcile.ts';
import type { RecordedDomain } from '../../src/store.ts';
import type { Users } from '../../src/users.ts';

const tut = validateDefinition({ name: 'tut', vni: 42, dev: 'ens47f1', remotes: ['192.168.8.101'] });
const mc = validateDefinition({ name: 'mc', vni: 43, dev: 'ens47f1', group: '239.1.1.1' });
const peers = validateDefinition({ name: 'peers', vni: 44, dev: 'ens47f1', local: '192.168.8.100', remotes: ['192.168.8.101', '192.168.8.102'] });
const lost = validateDefinition({ name: 'lost', vni: 45, dev: 'ens99', remotes: ['192.168.8.101'] });

const NOW = new Date('2026-01-01T00:10:00Z');
const OLD = '2026-01-01T00:00:00.000Z'; // 600 s before NOW
const FRESH = '2026-01-01T00:09:30.000Z'; // 30 s before NOW
const A = '00000000-0000-4000-8000-00000000000a';
const B = '00000000-0000-4000-8000-00000000000b';

const underlay: Link = { name: 'ens47f1', kind: 'veth', group: 0, mtu: 1500, up: true };
/** This host's address on the underlay: definitions without --local send from it. */
const addresses = [{ dev: 'ens47f1', address: '192.168.8.100', scope: 'global' }];

/** The pair vxvirt makes for `def`, as the kernel reports it; `change` edits it. */
function pair(def: NetworkDefinition, change: { bridge?: Partial<Link>; vxlan?: Partial<Link> | null } = {}): Link[] {
  const alias = `vxvirt:${def.name}`;
  const g = ownerGroup(def.vni);
  const links: Link[] = [{ name: `vxbr${def.vni}`, kind: 'bridge', group: g, mtu: 1450, up: true, alias, ...change.bridge }];
  if (change.vxlan !== null) {
    links.push({ name: `vxlan${def.vni}`, kind: 'vxlan', group: g, mtu: 1450, up: true, master: `vxbr${def.vni}`, alias, vxlan: desiredVxlan(resolveForHost(def, addresses)), ...change.vxlan });
  }
  return links;
}
const tap = (name: string, master: string): Link => ({ name, kind: 'tun', group: 0, mtu: 1450, up: true, master });
const user = (name: string, since: string) => ({ name, since });
const record = (key: string, name: string, ...defs: NetworkDefinition[]): RecordedDomain => ({ key, record: { name, networks: defs.map((d) => ({ name: d.name, vni: d.vni })) } });
const running = (uuid: string, name: string, ...bridges: string[]): ActiveDomainFacts => ({ uuid, name, bridges, networks: [] });

interface Given {
  defs?: NetworkDefinition[];
  broken?: string[];
  users?: Record<string, Users>;
  domains?: RecordedDomain[];
  releasing?: RecordedDomain[];
  links?: Link[];
  fdb?: Record<string, string[]>;
  /** Active domains; undefined = libvirt unreachable. */
  libvirt?: ActiveDomainFacts[];
  /** When libvirt was asked (default NOW). */
  asOf?: string;
}

function facts(g: Given): ReconcileFacts {
  return {
    defs: g.defs ?? [tut, mc, peers],
    broken: (g.broken ?? []).map((name) => ({ name, message: `${name}.json: not valid JSON` })),
    users: new Map(Object.entries(g.users ?? {})),
    domains: g.domains ?? [],
    releasing: g.releasing ?? [],
    observed: {
      links: new Map([underlay, ...(g.links ?? [])].map((l) => [l.name, l])),
      floodDsts: new Map(Object.entries(g.fdb ?? { vxlan44: ['192.168.8.101', '192.168.8.102'] })),
      addresses,
    },
    libvirt: g.libvirt ? { reachable: true, asOf: new Date(g.asOf ?? NOW.toISOString()), domains: g.libvirt } : { reachable: false, reason: 'test' },
    now: NOW,
    graceSeconds: 120,
  };
}

interface Row {
  name: string;
  given: Given;
  lines: string[];
  left?: RegExp[];
}

const usedTut = { tut: { [A]: user('a', OLD) } };

const rows: Row[] = [
  { name: 'nothing anywhere', given: { links: [] }, lines: [] },
  {
    name: 'in sync: a user and its matching pair',
    given: { users: usedTut, domains: [record(A, 'a', tut)], links: [...pair(tut), tap('vnet0', 'vxbr42')] },
    lines: [],
  },
  {
    name: 'vxlan deleted',
    given: { users: usedTut, domains: [record(A, 'a', tut)], links: [...pair(tut, { vxlan: null }), tap('vnet0', 'vxbr42')] },
    lines: ['repaired vxlan42 (network tut): missing -> created'],
  },
  {
    name: 'wrong MTU',
    given: { users: usedTut, domains: [record(A, 'a', tut)], links: [...pair(tut, { vxlan: { mtu: 1500 } }), tap('vnet0', 'vxbr42')] },
    lines: ['repaired vxlan42 (network tut): mtu 1500 -> 1450'],
  },
  {
    name: 'vxlan detached from the bridge',
    given: { users: usedTut, domains: [record(A, 'a', tut)], links: [...pair(tut, { vxlan: { master: undefined } }), tap('vnet0', 'vxbr42')] },
    lines: ['repaired vxlan42 (network tut): not a port of any bridge -> port of vxbr42'],
  },
  {
    name: 'bridge down',
    given: { users: usedTut, domains: [record(A, 'a', tut)], links: [...pair(tut, { bridge: { up: false } }), tap('vnet0', 'vxbr42')] },
    lines: ['repaired vxbr42 (network tut): down -> up'],
  },
  {
    name: 'a unicast flood entry deleted, a stray one added',
    given: {
      users: { peers: { [A]: user('a', OLD) } },
      domains: [record(A, 'a', peers)],
      links: [...pair(peers), tap('vnet0', 'vxbr44')],
      fdb: { vxlan44: ['192.168.8.101', '192.168.8.199'] },
    },
    lines: ['repaired vxlan44 (network peers): no flood entry for 192.168.8.102 -> added, flood entry for 192.168.8.199 -> removed'],
  },
  {
    name: 'vxlan re-pointed elsewhere: replaced, naming the attribute',
    given: { users: usedTut, domains: [record(A, 'a', tut)], links: [...pair(tut, { vxlan: { vxlan: { ...desiredVxlan(resolveForHost(tut, addresses)), remote: '192.168.8.199' } } }), tap('vnet0', 'vxbr42')] },
    lines: ['repaired vxlan42 (network tut): remote 192.168.8.199 -> 192.168.8.101 (replaced)'],
  },
  {
    name: 'a pair nobody uses (state lost in a reboot)',
    given: { links: [...pair(tut), ...pair(mc)] },
    lines: ['removed vxbr43+vxlan43 (network mc): no users', 'removed vxbr42+vxlan42 (network tut): no users'],
  },
  {
    name: 'an unused bridge with a port vxvirt does not know stays',
    given: { links: [...pair(tut), tap('vnet9', 'vxbr42')] },
    lines: [],
    left: [/^left vxbr42\+vxlan42 \(network tut\) in place: no users, but bridge vxbr42 still has ports vnet9/],
  },
  {
    name: 'devices of a network no longer defined: found by their group',
    given: { defs: [tut], links: pair(mc) },
    lines: ['removed vxbr43+vxlan43 (network mc, VNI 43, not defined): no users'],
  },
  {
    name: 'an orphan half pair without alias (killed right after creation)',
    given: { defs: [tut], links: pair(mc, { bridge: { alias: undefined }, vxlan: null }) },
    lines: ['removed vxbr43 (VNI 43, not defined): no users'],
  },
  {
    name: 'devices that are not vxvirt\'s are never touched',
    given: { defs: [tut], links: [{ name: 'vxbr42', kind: 'bridge', group: 0, mtu: 1500, up: true }, { name: 'vxbr50', kind: 'bridge', group: 0, mtu: 1500, up: true }] },
    lines: [],
  },
  {
    name: 'a broken definition is reported, and devices that may be its own are left',
    given: { defs: [tut], broken: ['bad'], users: { bad: { [A]: user('a', OLD) } }, links: [...pair(mc, { bridge: { alias: 'vxvirt:bad' }, vxlan: { alias: 'vxvirt:bad' } }), ...pair(peers, { bridge: { alias: undefined }, vxlan: { alias: undefined } })] },
    lines: [],
    left: [
      /^left network bad alone: bad\.json: not valid JSON$/,
      /^left vxbr43\+vxlan43 \(network bad, VNI 43, not defined\) alone: the definition of bad cannot be read$/,
      /^left vxbr44\+vxlan44 \(VNI 44, not defined\) alone: they may belong to bad/,
    ],
  },
  {
    name: 'a network whose underlay is gone cannot be repaired: said, not fatal',
    given: { defs: [tut, lost], users: { ...usedTut, lost: { [A]: user('a', OLD) } }, domains: [record(A, 'a', tut, lost)], links: [...pair(tut, { bridge: { up: false } }), tap('vnet0', 'vxbr42')], libvirt: [running(A, 'a', 'vxbr42')] },
    lines: ['repaired vxbr42 (network tut): down -> up'],
    left: [/^cannot repair network lost, used by a: network lost: underlay device ens99 does not exist/],
  },
  // libvirt answers
  {
    name: 'libvirt: a user whose domain is not running is dropped, with its record and its unused pair',
    given: { users: usedTut, domains: [record(A, 'a', tut)], links: pair(tut), libvirt: [] },
    lines: ['dropped user a from tut: domain is not running (libvirt)', 'dropped the record of a on tut: domain is not running (libvirt)', 'removed vxbr42+vxlan42 (network tut): no users'],
  },
  {
    name: 'libvirt: a user recorded after libvirt was asked is kept (it may have just started)',
    given: { users: { tut: { [A]: user('a', FRESH) } }, domains: [record(A, 'a', tut)], links: pair(tut), libvirt: [], asOf: OLD },
    lines: [],
  },
  {
    name: 'libvirt: a running domain keeps its users even with no tap on the bridge',
    given: { users: usedTut, domains: [record(A, 'a', tut)], links: pair(tut), libvirt: [running(A, 'a', 'vxbr42')] },
    lines: [],
  },
  {
    name: 'libvirt: a running domain recorded on a network it is not a user of becomes one; its pair is made',
    given: { domains: [record(A, 'a', tut)], links: [], libvirt: [running(A, 'a')] },
    lines: ['added user a to tut: the domain is running (libvirt) and recorded on tut', 'repaired vxbr42 (network tut): missing -> created', 'repaired vxlan42 (network tut): missing -> created'],
  },
  {
    name: 'libvirt: a domain running on vxbr42 that nothing records (state lost) is recorded again',
    given: { links: [...pair(tut), tap('vnet0', 'vxbr42')], libvirt: [running(A, 'a', 'vxbr42', 'virbr0')] },
    lines: [
      'recorded a on tut: the domain is running on vxbr42 (libvirt) but was not recorded',
      'added user a to tut: the domain is running on vxbr42 (libvirt) but was not recorded',
    ],
  },
  {
    name: 'libvirt: the record of a stopped domain that never became a user goes',
    given: { domains: [record(B, 'b', tut, mc)], links: [], libvirt: [] },
    lines: ['dropped the record of b on tut: domain is not running (libvirt)', 'dropped the record of b on mc: domain is not running (libvirt)'],
  },
  {
    name: 'libvirt: an upper-case UUID in the XML matches libvirt\'s lower-case one',
    given: { users: { tut: { [A.toUpperCase()]: user('a', OLD) } }, domains: [record(A.toUpperCase(), 'a', tut)], links: [...pair(tut), tap('vnet0', 'vxbr42')], libvirt: [running(A, 'a', 'vxbr42')] },
    lines: [],
  },
  // libvirt unreachable
  {
    name: 'no libvirt: an old user on a bridge without ports is dropped, saying why',
    given: { users: usedTut, domains: [record(A, 'a', tut)], links: pair(tut) },
    lines: [
      'dropped user a from tut: vxbr42 has no port but the vxlan and it was recorded 600 s ago (libvirt unreachable)',
      'dropped the record of a on tut: vxbr42 has no port but the vxlan and it was recorded 600 s ago (libvirt unreachable)',
      'removed vxbr42+vxlan42 (network tut): no users',
    ],
  },
  {
    name: 'no libvirt: a user within the grace period is kept (its tap is not attached yet)',
    given: { users: { tut: { [A]: user('a', FRESH) } }, domains: [record(A, 'a', tut)], links: pair(tut) },
    lines: [],
  },
  {
    name: 'no libvirt: an old user of a bridge with a port is kept',
    given: { users: usedTut, domains: [record(A, 'a', tut)], links: [...pair(tut), tap('vnet0', 'vxbr42')] },
    lines: [],
  },
  {
    name: 'no libvirt: a user whose pair is gone and who has no port is dropped, nothing is made',
    given: { users: usedTut, domains: [record(A, 'a', tut)], links: [] },
    lines: ['dropped user a from tut: vxbr42 has no port but the vxlan and it was recorded 600 s ago (libvirt unreachable)', 'dropped the record of a on tut: vxbr42 has no port but the vxlan and it was recorded 600 s ago (libvirt unreachable)'],
  },
  {
    name: 'no libvirt: a record without its user (a start cut short) and no port on the bridge goes',
    given: { users: { tut: { [B]: user('b', FRESH) } }, domains: [record(A, 'a', tut), record(B, 'b', tut)], links: pair(tut) },
    lines: ['dropped the record of a on tut: not a user of it, and vxbr42 has no port but the vxlan'],
  },
  {
    name: 'no libvirt: a record without its user and with ports on the bridge cannot be judged',
    given: { users: { tut: { [B]: user('b', OLD) } }, domains: [record(A, 'a', tut), record(B, 'b', tut)], links: [...pair(tut), tap('vnet0', 'vxbr42')] },
    lines: [],
    left: [/^a is recorded on tut but not a user of it, and vxbr42 has ports vnet0: cannot tell whether it runs \(libvirt unreachable\)$/],
  },
  // state the hook left
  {
    name: 'a release cut short is finished, and the pair it leaves unused goes',
    given: { users: usedTut, releasing: [record(A, 'a', tut)], links: pair(tut), libvirt: [] },
    lines: ['finished the release of a that was cut short: no longer a user of tut', 'removed vxbr42+vxlan42 (network tut): no users'],
  },
  {
    name: 'a release cut short after the users were updated only ends',
    given: { users: { tut: { [B]: user('b', OLD) } }, domains: [record(B, 'b', tut)], releasing: [record(A, 'a', tut)], links: [...pair(tut), tap('vnet1', 'vxbr42')] },
    lines: ['finished the release of a that was cut short'],
  },
  {
    name: 'a user without a record of the network gets one, so its release removes it',
    given: { users: usedTut, links: [...pair(tut), tap('vnet0', 'vxbr42')] },
    lines: ['recorded a on tut: a user of tut without a record of it, which its release needs'],
  },
  {
    name: 'users of a network no longer defined keep its devices',
    given: { defs: [tut], users: { mc: { [A]: user('a', OLD) } }, domains: [record(A, 'a', mc)], links: [...pair(mc), tap('vnet0', 'vxbr43')] },
    lines: [],
    left: [/^left vxbr43\+vxlan43 \(network mc, VNI 43, not defined\) in place: used by a$/],
  },
];

for (const row of rows) {
  test(row.name, () => {
    const plan = planReconcile(facts(row.given));
    assert.equal(plan.actions.flatMap((a) => a.lines), row.lines);
    const left = row.left ?? [];
    assert.is(plan.left.length, left.length, `left: ${JSON.stringify(plan.left)}`);
    left.forEach((re, i) => assert.match(plan.left[i]!, re));
  });
}

test('actions come in the order that keeps the hook\'s invariants: records, users, devices', () => {
  const plan = planReconcile(facts({ users: usedTut, releasing: [record(B, 'b', mc)], links: [...pair(mc), tap('vnet0', 'vxbr42')], libvirt: [running(A, 'a', 'vxbr42')] }));
  assert.equal(plan.actions.map((a) => a.kind), ['finish-release', 'add-record', 'repair', 'remove']);
});

test('the libvirt note is there only when users were judged without libvirt', () => {
  assert.equal(planReconcile(facts({ links: pair(tut) })).notes, []);
  assert.match(planReconcile(facts({ users: usedTut, links: pair(tut) })).notes.join(), /libvirt is unreachable \(test\): a user counts as gone only when recorded over 120 s ago/);
  assert.equal(planReconcile(facts({ users: usedTut, links: pair(tut), libvirt: [] })).notes, []);
});

test('activeDomainFacts reads the bridges and libvirt networks of the live XML', () => {
  const xml = `<domain><name>a</name><uuid>${A.toUpperCase()}</uuid><devices>
    <interface type='bridge'><source bridge='vxbr42'/></interface>
    <interface type='bridge'><source network='mc' bridge='vxbr43'/></interface>
    <interface type='user'/></devices></domain>`;
  assert.equal(activeDomainFacts(A.toUpperCase(), 'a', xml), { uuid: A, name: 'a', bridges: ['vxbr42', 'vxbr43'], networks: ['mc'] });
});

// ---- libvirt networks ------------------------------------------------------------

const lvNet = (name: string, over: Partial<LibvirtNetworkView> = {}): LibvirtNetworkView => ({ name, ours: true, vni: 42, active: true, autostart: true, connections: 0, ...over });
const withLibvirt = (def: NetworkDefinition, libvirt: boolean | undefined): NetworkDefinition => {
  const d = { ...def };
  if (libvirt === undefined) delete d.libvirt;
  else d.libvirt = libvirt;
  return d;
};
const netLines = (p: ReturnType<typeof planLibvirtNetworks>) => ({ actions: p.actions.map((a) => `${a.kind} ${a.network}: ${a.lines.join('; ')}`), left: p.left, notes: p.notes });

test('libvirt networks: a definition that wants one gets it made, updated or started; one without the choice recorded, or --no-libvirt, gets none', () => {
  const defs = [withLibvirt(tut, true), withLibvirt(mc, false), withLibvirt(peers, undefined)];
  assert.equal(netLines(planLibvirtNetworks(defs, [], { reachable: true, networks: [] })), {
    actions: ['define-libvirt-network tut: created libvirt network tut on vxbr42: network tut is defined with one, and libvirt has none'],
    left: [],
    notes: [],
  });
  assert.equal(netLines(planLibvirtNetworks(defs, [], { reachable: true, networks: [lvNet('tut')] })), { actions: [], left: [], notes: [] });
  assert.equal(netLines(planLibvirtNetworks(defs, [], { reachable: true, networks: [lvNet('tut', { active: false, autostart: false })] })).actions, [
    'define-libvirt-network tut: started and autostarted libvirt network tut: it was inactive and not autostarted',
  ]);
  assert.equal(netLines(planLibvirtNetworks(defs, [], { reachable: true, networks: [lvNet('tut', { vni: 7 })] })).actions, ['define-libvirt-network tut: updated libvirt network tut: vxbr7 -> vxbr42']);
  const busy = netLines(planLibvirtNetworks(defs, [], { reachable: true, networks: [lvNet('tut', { vni: 7, connections: 2 })] }));
  assert.equal(busy, {
    actions: [],
    left: ['libvirt network tut puts guests on vxbr7, not vxbr42, and has 2 guest connection(s): reconcile updates it once they are gone'],
    notes: [],
  });
  const foreign = netLines(planLibvirtNetworks(defs, [], { reachable: true, networks: [lvNet('tut', { ours: false, vni: undefined })] }));
  assert.equal(foreign.actions, []);
  assert.match(foreign.left[0]!, /^left libvirt network tut alone: vxvirt did not make it/);
});

test("libvirt networks: vxvirt's of a network no longer defined go, unless guests are on them or the definition cannot be read; others' are never touched", () => {
  const networks = [lvNet('gone', { vni: 50 }), lvNet('busy', { vni: 51, connections: 1 }), lvNet('broken', { vni: 52 }), lvNet('default', { ours: false, vni: undefined }), lvNet('mc', { vni: 43 })];
  assert.equal(netLines(planLibvirtNetworks([withLibvirt(mc, false)], ['broken'], { reachable: true, networks })), {
    actions: ['remove-libvirt-network gone: removed libvirt network gone (vxbr50): network gone is no longer defined'],
    left: [
      'left libvirt network broken (vxbr52) alone: the definition of broken cannot be read',
      'left libvirt network busy (vxbr51) in place: vxvirt made it for a network no longer defined, but it has 1 guest connection(s)',
    ],
    notes: [],
  });
});

test('libvirt networks: unreachable libvirt is a note only when a definition wants one', () => {
  assert.equal(netLines(planLibvirtNetworks([withLibvirt(tut, false)], [], { reachable: false, reason: 'cannot connect' })), { actions: [], left: [], notes: [] });
  assert.equal(netLines(planLibvirtNetworks([withLibvirt(tut, true), withLibvirt(mc, true)], [], { reachable: false, reason: 'cannot connect' })).notes, [
    'libvirt is unreachable (cannot connect): the libvirt networks of mc, tut were not checked',
  ]);
});

test("libvirt networks in status: what differs from the definition's wish", () => {
  assert.is(libvirtNetworkDrift(withLibvirt(tut, true), undefined), 'libvirt network tut does not exist');
  assert.is(libvirtNetworkDrift(withLibvirt(tut, true), lvNet('tut')), undefined);
  assert.is(libvirtNetworkDrift(withLibvirt(tut, true), lvNet('tut', { active: false })), 'libvirt network tut is not active');
  assert.is(libvirtNetworkDrift(withLibvirt(tut, true), lvNet('tut', { autostart: false })), 'libvirt network tut is not autostarted');
  assert.is(libvirtNetworkDrift(withLibvirt(tut, true), lvNet('tut', { ours: false })), 'libvirt network tut was not made by vxvirt');
  assert.is(libvirtNetworkDrift(withLibvirt(tut, false), lvNet('tut', { vni: 7 })), 'libvirt network tut puts guests on vxbr7, not vxbr42');
  assert.is(libvirtNetworkDrift(withLibvirt(tut, false), undefined), undefined);
  assert.is(libvirtNetworkDrift(withLibvirt(tut, undefined), undefined), undefined, 'not recorded: nothing is wanted');
});

test.run();
