// A whole `vxvirt reconcile` run (src/reconcile-run.ts) and what `vxvirt
// status` gathers (src/status.ts), on a fake host and a fake libvirt.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { ensureForDomain } from '../../src/lifecycle.ts';
import { validateDefinition } from '../../src/network-definition.ts';
import { ownerGroup } from '../../src/plan.ts';
import { reconcileAll } from '../../src/reconcile-run.ts';
import { hostStatus } from '../../src/status.ts';
import { FakeHost } from '../support/fake-kernel.ts';
import { FakeLibvirt } from '../support/fake-libvirt.ts';

const tut = { ...validateDefinition({ name: 'tut', vni: 42, dev: 'ens47f1', remotes: ['192.168.8.101'] }), libvirt: true };
const A = { key: 'uuid-a', name: 'a' };
const UUID = '0c3f2f4e-5b1d-4d8e-9a52-6f0e2b7c1a11';
const running = (bridge: string) => ({
  uuid: UUID,
  name: 'vm1',
  liveXml: `<domain type='qemu'><name>vm1</name><uuid>${UUID}</uuid><devices><interface type='bridge'><mac address='52:54:00:00:00:01'/><source bridge='${bridge}'/></interface></devices></domain>`,
});

function world() {
  const host = new FakeHost().addUnderlay('ens47f1');
  host.defs = [tut];
  const lv = new FakeLibvirt();
  // libvirt's calls are logged with whether the host lock was held at the time.
  const record = lv.record();
  const logged = Object.fromEntries(
    Object.entries(record).map(([k, f]) => [k, async (...a: never[]) => ((lv.calls.push(host.lockHeld ? 'LOCK HELD' : 'unlocked'), (f as (...x: never[]) => unknown)(...a)))]),
  ) as unknown as typeof record;
  return { host, lv, record: logged };
}

test('reconcile: the missing libvirt network is made before the host lock, an unrecorded running guest recorded under it; converged', async () => {
  const w = world();
  w.lv.running = [running('vxbr42')];
  const r = await reconcileAll({ dryRun: false, graceSeconds: 120, libvirt: true }, w.host.effects(), w.record);
  assert.not.ok(w.lv.calls.includes('LOCK HELD'), 'libvirt is never asked under the host lock');
  assert.ok(w.lv.calls.includes('define network tut'));
  assert.equal(w.lv.networks.map((n) => n.name), ['tut']);
  assert.equal(r.net.plan.actions.map((a) => a.kind), ['define-libvirt-network']);
  assert.ok(r.host.plan.actions.some((a) => a.kind === 'add-user'), 'the running guest on vxbr42 is recorded');
  assert.equal(Object.keys(w.host.users.get('tut') ?? {}), [UUID]);
  assert.equal(w.host.names(), ['ens47f1', 'vxbr42', 'vxlan42'], 'and its pair repaired');
  assert.is(r.converged, true);
  assert.equal(r.notes, []);
});

test('reconcile --dry-run changes nothing and is not converged; --no-libvirt asks libvirt nothing', async () => {
  const w = world();
  const dry = await reconcileAll({ dryRun: true, graceSeconds: 120, libvirt: true }, w.host.effects(), w.record);
  assert.is(dry.converged, false);
  assert.equal(w.lv.networks, []);
  assert.equal(w.host.users.size, 0);
  w.lv.calls.length = 0;
  const off = await reconcileAll({ dryRun: false, graceSeconds: 120, libvirt: false }, w.host.effects(), w.record);
  assert.equal(w.lv.calls, []);
  assert.equal(off.libvirt, { reachable: false, reason: '--no-libvirt' });
  assert.is(off.converged, true, 'nothing on the host to do, libvirt networks left alone');
});

test('reconcile with libvirt unreachable: the host part still runs, a note says what was not checked', async () => {
  const w = world();
  w.lv.down = 'cannot connect to qemu:///system';
  // An orphan pair of an undefined network: removed without libvirt.
  w.host.links.set('vxbr50', { name: 'vxbr50', kind: 'bridge', group: ownerGroup(50), mtu: 1450, up: true });
  const r = await reconcileAll({ dryRun: false, graceSeconds: 120, libvirt: true }, w.host.effects(), w.record);
  assert.equal(r.notes, ['libvirt is unreachable (cannot connect to qemu:///system): the libvirt networks of tut were not checked']);
  assert.equal(w.host.names(), ['ens47f1']);
  assert.is(r.libvirt.reachable, false);
});

test('status: devices, users, drift and libvirt networks of each network, and orphans', async () => {
  const w = world();
  await ensureForDomain(A, [tut], w.host.effects());
  w.host.links.get('vxbr42')!.up = false;
  w.host.links.set('vxbr50', { name: 'vxbr50', kind: 'bridge', group: ownerGroup(50), mtu: 1450, up: true });
  w.lv.networks = [{ name: 'old', ours: true, vni: 60, active: true, autostart: true, connections: 0, xml: '' }];
  const st = await hostStatus(w.host.effects(), w.record);
  assert.equal(st.rows.map((r) => [r.name, r.bridge.exists && r.bridge.up, r.domains.map((d) => d.name), r.libvirtNetwork.checked && r.libvirtNetwork.exists]), [['tut', false, ['a'], false]]);
  assert.ok(st.rows[0]!.drift.length > 0, 'the bridge being down is drift');
  assert.equal(st.orphans.map((o) => [o.vni, o.name, o.devices]), [[50, null, ['vxbr50']], [60, 'old', []]]);
  assert.equal(w.host.warnings, []);
});

test('status with a broken definition and libvirt down: both named in warnings, the rest shown', async () => {
  const w = world();
  w.host.broken = [{ name: 'bad', error: new Error('/etc/vxvirt/networks/bad.json: not JSON') }];
  w.lv.down = 'cannot connect';
  const st = await hostStatus(w.host.effects(), w.record);
  assert.equal(w.host.warnings, ['skipping network bad: /etc/vxvirt/networks/bad.json: not JSON', 'libvirt networks not shown: cannot connect']);
  assert.equal(st.rows.map((r) => r.name), ['tut']);
  assert.equal(st.rows[0]!.libvirtNetwork, { wanted: true, checked: false, reason: 'cannot connect' });
});

test.run();
