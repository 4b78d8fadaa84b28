import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { validateDefinition, type DefinitionInput } from '../../src/network-definition.ts';
import { planRedefine, refusalMessage, vniMessage } from '../../src/redefine.ts';

const P1 = '192.168.8.101';
const P2 = '192.168.8.102';
const P3 = '192.168.8.103';
const base: DefinitionInput = { name: 'net', vni: 42, dev: 'ens47f1', local: '192.168.8.100', remotes: [P1, P2] };
const def = (extra: Partial<DefinitionInput> = {}) => validateDefinition({ ...base, ...extra });

interface Row {
  what: string;
  from?: Partial<DefinitionInput>;
  to: Partial<DefinitionInput>;
  /** The options planRedefine reports as changed, in order. */
  changes: string[];
  /** The ones that need a new device. */
  refused: string[];
  added?: string[];
  removed?: string[];
  vni?: boolean;
}

const rows: Row[] = [
  { what: 'nothing', to: {}, changes: [], refused: [] },
  { what: 'a unicast peer added', to: { remotes: [P1, P2, P3] }, changes: ['--remote'], refused: [], added: [P3] },
  { what: 'a unicast peer replaced', to: { remotes: [P1, P3] }, changes: ['--remote'], refused: [], added: [P3], removed: [P2] },
  { what: 'every unicast peer replaced', to: { remotes: [P3, '192.168.8.104'] }, changes: ['--remote'], refused: [], added: [P3, '192.168.8.104'], removed: [P1, P2] },
  { what: 'unicast peers reordered: the file changes, the device does not', to: { remotes: [P2, P1] }, changes: ['--remote'], refused: [] },
  { what: 'an explicit MTU', to: { mtu: 1400 }, changes: ['--mtu'], refused: [] },
  { what: 'back to the automatic MTU', from: { mtu: 1400 }, to: { mtu: undefined }, changes: ['--mtu'], refused: [] },
  { what: 'peers and MTU at once', to: { remotes: [P1, P3], mtu: 1400 }, changes: ['--remote', '--mtu'], refused: [], added: [P3], removed: [P2] },
  { what: 'unicast -> point-to-point', to: { remotes: [P1] }, changes: ['flooding mode'], refused: ['flooding mode'] },
  { what: 'point-to-point -> unicast', from: { remotes: [P1] }, to: { remotes: [P1, P2] }, changes: ['flooding mode'], refused: ['flooding mode'] },
  { what: 'point-to-point remote', from: { remotes: [P1] }, to: { remotes: [P2] }, changes: ['--remote'], refused: ['--remote'] },
  { what: 'unicast -> multicast', to: { remotes: undefined, group: '239.1.1.1' }, changes: ['flooding mode'], refused: ['flooding mode'] },
  { what: 'multicast group', from: { remotes: undefined, group: '239.1.1.1' }, to: { remotes: undefined, group: '239.1.1.2' }, changes: ['--group'], refused: ['--group'] },
  { what: 'VNI', to: { vni: 43 }, changes: ['--vni'], refused: ['--vni'], vni: true },
  { what: 'dstport', to: { dstport: 8472 }, changes: ['--dstport'], refused: ['--dstport'] },
  { what: 'underlay device', to: { dev: 'ens1' }, changes: ['--dev'], refused: ['--dev'] },
  { what: 'local address dropped', to: { local: undefined }, changes: ['--local'], refused: ['--local'] },
  { what: 'ttl', to: { ttl: 4 }, changes: ['--ttl'], refused: ['--ttl'] },
  { what: 'learning off', to: { learning: false }, changes: ['--learning'], refused: ['--learning'] },
  {
    what: 'peers with a fixed attribute: the peers are in place, the port is not',
    to: { remotes: [P1, P3], dstport: 8472 },
    changes: ['--remote', '--dstport'],
    refused: ['--dstport'],
    added: [P3],
    removed: [P2],
  },
];

for (const row of rows) {
  test(`planRedefine: ${row.what}`, () => {
    const plan = planRedefine(def(row.from), def({ ...row.from, ...row.to }));
    assert.equal(plan.changes.map((c) => c.what), row.changes);
    assert.equal(plan.refused.map((r) => r.what), row.refused);
    assert.equal(plan.added, row.added ?? []);
    assert.equal(plan.removed, row.removed ?? []);
    assert.is(plan.vni !== undefined, row.vni ?? false);
    for (const r of plan.refused) assert.ok(r.why.length > 0, `${r.what} says why`);
  });
}

test('changes carry both values as the command line spells them', () => {
  const plan = planRedefine(def({ mtu: 1400 }), def({ remotes: [P1], learning: false }));
  assert.equal(
    plan.changes.map((c) => `${c.what} ${c.from} -> ${c.to}`),
    [`flooding mode unicast (${P1},${P2}) -> point-to-point (${P1})`, '--mtu 1400 -> auto', '--learning on -> off'],
  );
});

test('the refusal is one line naming each field, why, and what to do', () => {
  const plan = planRedefine(def(), def({ local: undefined, dstport: 8472, remotes: [P1] }));
  const msg = refusalMessage('net', plan.refused, 'by vm-a, vm-b');
  assert.not.match(msg, /\n/);
  assert.match(msg, /^network net is in use \(by vm-a, vm-b\) and these changes need a new vxlan device: /);
  // Fields refused for the same reason share it.
  assert.match(msg, /--local 192\.168\.8\.100 -> none, --dstport 4789 -> 8472 \(fixed when the kernel creates the vxlan device\)/);
  assert.match(msg, /flooding mode unicast \(.*\) -> point-to-point \(192\.168\.8\.101\) \(one --remote is an attribute of the vxlan device/);
  assert.match(msg, /stop the guests, or use define-network --replace when nothing uses it$/);
  const vni = planRedefine(def(), def({ vni: 43 })).vni!;
  assert.match(vniMessage('net', vni), /^network net: --vni 42 -> 43 .*vxbr42 -> vxbr43.*use define-network --replace/);
});

test('different networks are not a redefinition', () => {
  assert.throws(() => planRedefine(def(), def({ name: 'other' })), /different networks/);
});

test.run();
