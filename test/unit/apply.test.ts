// vxvirt apply's pure part: the file read and validated whole, and the plan
// made from the host's definitions and what uses them (redefine's rules).
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { describeStep, parseNetworkFile, planApply, type Usage } from '../../src/apply.ts';
import { DefinitionError } from '../../src/errors.ts';
import { validateDefinition, type DefinitionInput } from '../../src/network-definition.ts';

const fleet = ['192.168.8.100', '192.168.8.101', '192.168.8.102'];
const def = (name: string, vni: number, extra: Partial<DefinitionInput> = {}) =>
  validateDefinition({ name, vni, dev: 'eth1', remotes: fleet, libvirt: false, ...extra });
const file = (...entries: unknown[]): string => JSON.stringify(entries);
const none = new Map<string, Usage>();
const usedBy = (name: string, ...users: string[]) => new Map<string, Usage>([[name, { users, devices: ['vxbr42', 'vxlan42'] }]]);

function refusedLine(text: string): string {
  try {
    parseNetworkFile(text, 'fleet.json');
  } catch (err) {
    assert.instance(err, DefinitionError);
    assert.not.match((err as Error).message, /\n/);
    return (err as Error).message;
  }
  throw new Error('the file was accepted');
}

test('the format list-networks --json prints is read back (nulls and derived fields alike)', () => {
  const printed = [{ name: 't1', vni: 42, mode: 'unicast', dev: 'eth1', local: null, remotes: fleet, group: null, dstport: 4789, mtu: null, ttl: null, learning: true, libvirt: false, bridge: 'vxbr42', vxlan: 'vxlan42' }];
  assert.equal(parseNetworkFile(JSON.stringify(printed), 'f'), [def('t1', 42)]);
});

test('a bad file is one line naming the network (or entry) and the field', () => {
  assert.match(refusedLine('{'), /^fleet\.json: not valid JSON \(/);
  assert.match(refusedLine('{"name":"t1"}'), /^fleet\.json: must hold a JSON array of networks/);
  assert.is(refusedLine(file({ name: 't1', vni: 42, dev: 'eth1', remotes: fleet, mtu: 'big' })), 'fleet.json: network t1: --mtu "big": must be an integer from 68 to 65535');
  assert.is(refusedLine(file({ name: 't1', vni: 42, dev: 'eth1', remote: fleet })), 'fleet.json: network t1: unknown field "remote" (fields: name, vni, dev, local, remotes, group, dstport, mtu, ttl, learning, evpn, libvirt, mode, bridge, vxlan)');
  assert.is(refusedLine(file({ name: 'bad name', vni: 42 })), 'fleet.json: entry 1: network name "bad name": must match [A-Za-z0-9][A-Za-z0-9_.-]{0,63}');
  assert.match(refusedLine(file({ name: 't1', vni: 42, dev: 'eth1', remotes: fleet, mode: 'multicast' })), /^fleet\.json: network t1: field "mode" "multicast" does not match the definition, which makes it "unicast"/);
  assert.is(refusedLine(file(def('t1', 42), def('t1', 43))), 'fleet.json: network t1: defined more than once');
  assert.is(refusedLine(file(def('t1', 42), def('t2', 42))), 'fleet.json: network t2: --vni 42: already used by network t1');
  assert.match(refusedLine(file({ name: 't1', vni: 42, dev: 'eth1', remotes: '192.168.8.1' })), /network t1: field "remotes" "192\.168\.8\.1": must be a list of addresses/);
});

test('what the host lacks is created (with a libvirt network unless the file says no)', () => {
  const plan = planApply([], [def('t1', 42), def('t2', 43, { libvirt: undefined })], none, { prune: false });
  assert.equal(plan.steps.map(describeStep), ['create network t1: VNI 42 on eth1', 'create network t2: VNI 43 on eth1']);
  assert.equal(plan.steps.map((s) => s.op === 'create' && s.def.libvirt), [false, true]);
  assert.equal(plan.refused, []);
});

test('the same definitions: nothing to do; a libvirt choice the file does not make is the host\'s', () => {
  const plan = planApply([def('t1', 42, { libvirt: true })], [def('t1', 42, { libvirt: undefined })], none, { prune: false });
  assert.equal(plan.steps, []);
  assert.equal(plan.unchanged, ['t1']);
});

test('peers and MTU of a network in use change in place, as redefine changes them', () => {
  const plan = planApply([def('t1', 42)], [def('t1', 42, { remotes: [...fleet, '192.168.8.103'], mtu: 1400 })], usedBy('t1', 'vm1'), { prune: false });
  assert.equal(plan.refused, []);
  assert.equal(plan.steps.map(describeStep), ['change network t1: --remote 192.168.8.100,192.168.8.101,192.168.8.102 -> 192.168.8.100,192.168.8.101,192.168.8.102,192.168.8.103, --mtu auto -> 1400 (in use by vm1: in place)']);
  const [step] = plan.steps;
  assert.ok(step?.op === 'change');
  if (step?.op === 'change') assert.equal(step.plan.added, ['192.168.8.103']);
});

test('what needs new devices is refused while in use, naming network and field; nothing else is done', () => {
  const plan = planApply([def('t1', 42), def('t2', 43)], [def('t1', 42, { dstport: 8472 }), def('t2', 43, { mtu: 1400 }), def('t3', 44)], usedBy('t1', 'vm1'), { prune: false });
  assert.equal(plan.refused, [
    'network t1 is in use (by vm1) and this change needs a new vxlan device: --dstport 4789 -> 8472 (fixed when the kernel creates the vxlan device); stop the guests, or use define-network --replace when nothing uses it',
  ]);
  // Devices present without users count as in use, as for redefine.
  const devicesOnly = planApply([def('t1', 42)], [def('t1', 42, { local: '192.168.8.109' })], new Map([['t1', { users: [], devices: ['vxlan42'] }]]), { prune: false });
  assert.match(devicesOnly.refused[0] ?? '', /^network t1 is in use \(its devices vxlan42 exist\) and this change needs a new vxlan device: --local none -> 192\.168\.8\.109/);
});

test('not in use: any change, a new VNI too', () => {
  const plan = planApply([def('t1', 42)], [def('t1', 52, { group: '239.1.1.1', remotes: undefined })], none, { prune: false });
  assert.equal(plan.refused, []);
  assert.equal(plan.steps.map((s) => s.op), ['change']);
});

test('--prune removes what the file lacks, refused while guests use it; without it they are kept', () => {
  const current = [def('t1', 42), def('old', 50), def('busy', 51)];
  const usage = new Map<string, Usage>([['busy', { users: ['vm9'], devices: [] }]]);
  const kept = planApply(current, [def('t1', 42)], usage, { prune: false });
  assert.equal([kept.steps, kept.kept, kept.refused], [[], ['old', 'busy'], []]);
  const pruned = planApply(current, [def('t1', 42)], usage, { prune: true });
  assert.equal(pruned.steps.map(describeStep), ['remove network old (VNI 50)']);
  assert.equal(pruned.refused, ['network busy is not in the file, but is used by vm9: not removed (--prune); stop them first']);
});

test('a network kept beside the file may not share a VNI with one of the file\'s', () => {
  const plan = planApply([def('old', 42)], [def('t1', 42)], none, { prune: false });
  assert.equal(plan.refused, ['network t1: --vni 42: already used by network old (not in the file: remove it, or apply with --prune)']);
  const pruned = planApply([def('old', 42)], [def('t1', 42)], none, { prune: true });
  assert.equal(pruned.refused, []);
  // The removal first: it frees the VNI the new network takes.
  assert.equal(pruned.steps.map(describeStep), ['remove network old (VNI 42)', 'create network t1: VNI 42 on eth1']);
});

test.run();
