// lifecycle's updateLiveNetwork (set-peers, redefine) against the in-memory kernel.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { ensureForDomain, updateLiveNetwork } from '../../src/lifecycle.ts';
import { validateDefinition } from '../../src/network-definition.ts';
import { FakeHost } from '../support/fake-kernel.ts';

const peers = (...remotes: string[]) => validateDefinition({ name: 'uni', vni: 42, dev: 'ens47f1', local: '192.168.8.100', remotes });
const A = { key: 'uuid-a', name: 'a' };

test('not in use (no users, no devices): nothing is applied', async () => {
  const h = new FakeHost().addUnderlay('ens47f1');
  assert.is(await updateLiveNetwork(peers('192.168.8.101', '192.168.8.103'), h.effects()), undefined);
  assert.equal(h.applied, []);
  assert.equal(h.names(), ['ens47f1']);
});

test('in use: only the changed peers are appended and deleted, the device stays', async () => {
  const h = new FakeHost().addUnderlay('ens47f1');
  await ensureForDomain(A, [peers('192.168.8.101', '192.168.8.102')], h.effects());
  const vxlan = h.links.get('vxlan42');
  h.applied = [];
  const steps = await updateLiveNetwork(peers('192.168.8.101', '192.168.8.103', '192.168.8.104'), h.effects());
  assert.equal(steps, [
    { op: 'flood-add', dev: 'vxlan42', dst: '192.168.8.103' },
    { op: 'flood-add', dev: 'vxlan42', dst: '192.168.8.104' },
    { op: 'flood-del', dev: 'vxlan42', dst: '192.168.8.102' },
  ]);
  assert.equal(h.applied, [steps]);
  assert.is(h.links.get('vxlan42'), vxlan, 'the same device object: not replaced');
  assert.equal(h.fdb.get('vxlan42'), ['192.168.8.101', '192.168.8.103', '192.168.8.104']);
  // Already there: nothing more.
  assert.equal(await updateLiveNetwork(peers('192.168.8.101', '192.168.8.103', '192.168.8.104'), h.effects()), []);
});

test('devices left without users (a foreign port kept them) are still updated', async () => {
  const h = new FakeHost().addUnderlay('ens47f1');
  await ensureForDomain(A, [peers('192.168.8.101', '192.168.8.102')], h.effects());
  h.users.clear();
  const steps = await updateLiveNetwork(peers('192.168.8.101', '192.168.8.103'), h.effects());
  assert.equal(steps?.map((s) => s.op), ['flood-add', 'flood-del']);
});

test('users recorded but the devices gone: they are built, as prepare would', async () => {
  const h = new FakeHost().addUnderlay('ens47f1');
  h.users.set('uni', { 'uuid-a': { name: 'a', since: '' } });
  const steps = await updateLiveNetwork(peers('192.168.8.101', '192.168.8.103'), h.effects());
  assert.ok(steps?.some((s) => s.op === 'add-vxlan'));
  assert.equal(h.names(), ['ens47f1', 'vxbr42', 'vxlan42']);
  assert.equal(h.fdb.get('vxlan42'), ['192.168.8.101', '192.168.8.103']);
});

test.run();
