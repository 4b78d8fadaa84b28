// Three simulated hosts, unicast peers on VNI 101, and a peer list changed
// under running guests with `vxvirt set-peers`:
//   h1 floods to h2 and to 192.168.8.200 (a host that is not up); h2 and h3
//   flood to the other two. Guests: uc-h1 10.20.101.2 pings uc-h2 10.20.101.3
//   every 0.2 s; uc-h1b 10.20.101.12 pings uc-h3 10.20.101.4, which h1 does
//   not flood to, so its ARP requests never reach h3.
//   `vxvirt set-peers uc --remote h2 --remote h3` on h1 replaces
//   192.168.8.200 with h3 while everything runs.
// The network has --no-learning: every frame to a remote guest then goes
// through the all-zero flood entries (no learned entry per MAC), so the pings
// to uc-h2 depend on h1's entry for h2 all the time, and a change that
// dropped it, even briefly, or replaced the device, would lose some.
import * as assert from 'uvu/assert';
import { UNDERLAY_DEV, type Guest, type Host } from './lab.ts';
import { labSuite, vxvirt, assertDevices, log } from './support.ts';

const { test, step } = labSuite('unicast peers changed under running guests', 'peers', 3);
const ABSENT = '192.168.8.200';
const PAIR = ['vxbr101', 'vxlan101'];
const g: Record<string, Guest> = {};

const floodDsts = async (h: Host): Promise<string[]> => {
  const fdb = JSON.parse((await h.exec(['bridge', '-j', 'fdb', 'show', 'dev', 'vxlan101'], { check: true })).stdout) as Array<{ mac: string; dst?: string }>;
  return fdb.filter((e) => e.mac === '00:00:00:00:00:00').map((e) => e.dst ?? '').sort();
};
const ifindex = async (h: Host, dev: string): Promise<number> =>
  (JSON.parse((await h.exec(['ip', '-j', 'link', 'show', 'dev', dev], { check: true })).stdout) as Array<{ ifindex: number }>)[0]!.ifindex;

step('define-network uc (VNI 101, unicast, --no-learning): h1 -> h2 and an absent host, h2 and h3 -> the other two', async (lab) => {
  const [h1, h2, h3] = [lab.host(1), lab.host(2), lab.host(3)] as [Host, Host, Host];
  const define = (h: Host, peers: string[]) =>
    vxvirt(h, 'define-network', 'uc', '--vni', '101', '--dev', UNDERLAY_DEV, '--local', h.ip, '--no-learning', ...peers.flatMap((p) => ['--remote', p]));
  const out = await Promise.all([define(h1, [h2.ip, ABSENT]), define(h2, [h1.ip, h3.ip]), define(h3, [h1.ip, h2.ip])]);
  out.forEach((l, i) => log(`h${i + 1}: ${l}`));
  g.h1 = h1.guest({ name: 'uc-h1', addr: '10.20.101.2/24', peers: ['10.20.101.3'], bridge: 'vxbr101', interval: 0.2 });
  g.h1b = h1.guest({ name: 'uc-h1b', addr: '10.20.101.12/24', peers: ['10.20.101.4'], bridge: 'vxbr101', interval: 0.5 });
  g.h2 = h2.guest({ name: 'uc-h2', addr: '10.20.101.3/24', bridge: 'vxbr101' });
  g.h3 = h3.guest({ name: 'uc-h3', addr: '10.20.101.4/24', bridge: 'vxbr101' });
  await Promise.all(Object.values(g).map((x) => x.define()));
});

step('guests start; h1 reaches h2 but not h3, which is not among its peers', async (lab) => {
  const results = await Promise.all(Object.values(g).map((x) => x.start()));
  results.forEach((r, i) => assert.is(r.code, 0, `virsh start ${Object.values(g)[i]!.name}: ${r.stderr}`));
  for (const h of lab.hosts) await assertDevices(h, PAIR, 'with a guest on VNI 101');
  assert.equal(await floodDsts(lab.host(1)), [lab.host(2).ip, ABSENT].sort());
  const s = await g.h1!.waitPingOk('10.20.101.3', { count: 3, timeoutMs: 90_000 });
  log(`uc-h1 -> uc-h2: ${s.ok} ok / ${s.fail} fail (boot included)`);
  const f = await g.h1b!.waitPingFail('10.20.101.4', { count: 3, timeoutMs: 90_000 });
  log(`uc-h1b -> uc-h3 (h3 not a peer of h1): ${f.ok} ok / ${f.fail} fail`);
});

step('set-peers on h1 while uc-h1 pings uc-h2 every 0.2 s: no ping lost, same vxlan101, no guest restarted; then h3 is reachable', async (lab) => {
  const [h1, h2, h3] = [lab.host(1), lab.host(2), lab.host(3)] as [Host, Host, Host];
  const before = { vxlan: await ifindex(h1, 'vxlan101'), bridge: await ifindex(h1, 'vxbr101'), qemu: [h1.qemuPid('uc-h1'), h1.qemuPid('uc-h1b')] };
  assert.ok(before.qemu.every(Boolean), 'both h1 guests have a QEMU process');

  const m0 = g.h1!.mark();
  await g.h1!.waitPingOk('10.20.101.3', { since: m0, count: 5 });
  const t = Date.now();
  const out = await vxvirt(h1, 'set-peers', 'uc', '--remote', h2.ip, '--remote', h3.ip);
  const ms = Date.now() - t;
  log(`h1: vxvirt set-peers uc --remote ${h2.ip} --remote ${h3.ip} (${ms} ms):`);
  log(`  ${out}`);
  assert.is(out, `network uc: peers ${h2.ip}, ${h3.ip} (added ${h3.ip}; removed ${ABSENT}); in use (by uc-h1, uc-h1b): vxlan101 updated in place, 1 flood entry appended, 1 deleted`);
  const m1 = g.h1!.mark();
  await g.h1!.waitPingOk('10.20.101.3', { since: m1, count: 10 });
  const across = g.h1!.pingStats('10.20.101.3', m0);
  log(`uc-h1 -> uc-h2 from before set-peers to 10 answers after it: ${across.ok} ok / ${across.fail} fail`);
  assert.is(across.fail, 0, `pings lost across set-peers: ${across.ok} ok / ${across.fail} fail`);

  const m2 = g.h1b!.mark();
  const reached = await g.h1b!.waitPingOk('10.20.101.4', { since: m2, count: 2 });
  log(`uc-h1b -> uc-h3 after set-peers: ${reached.ok} ok / ${reached.fail} fail`);

  assert.equal(await floodDsts(h1), [h2.ip, h3.ip].sort());
  assert.equal(
    { vxlan: await ifindex(h1, 'vxlan101'), bridge: await ifindex(h1, 'vxbr101'), qemu: [h1.qemuPid('uc-h1'), h1.qemuPid('uc-h1b')] },
    before,
    'same devices, same QEMU processes',
  );
  // virsh lists them by domain id, that is in the order they happened to start.
  assert.equal((await h1.domains('--state-running')).sort(), ['uc-h1', 'uc-h1b']);
  const logged = (await h1.exec(['cat', '/var/log/vxvirt.log'], { check: true })).stdout.trim();
  log(`h1 /var/log/vxvirt.log: ${logged}`);
  assert.match(logged, new RegExp(`network=uc action=peers-changed command=set-peers peers=${h2.ip},${h3.ip} added=${h3.ip} removed=${ABSENT} devices=vxbr101,vxlan101 live=true$`.replace(/\./g, '\\.'), 'm'));
});

step('while guests run, a change that needs a new vxlan device is refused and changes nothing', async (lab) => {
  const h1 = lab.host(1);
  const stored = (await h1.exec(['cat', '/etc/vxvirt/networks/uc.json'], { check: true })).stdout;
  const r = await h1.vxvirt('set-peers', 'uc', '--remote', lab.host(2).ip);
  log(`h1: vxvirt set-peers uc --remote ${lab.host(2).ip}: exit ${r.code}: ${r.stderr.trim()}`);
  assert.is(r.code, 3);
  assert.match(r.stderr, /^vxvirt: network uc is in use \(by uc-h1, uc-h1b\) and this change needs a new vxlan device: flooding mode unicast/);
  assert.is((await h1.exec(['cat', '/etc/vxvirt/networks/uc.json'], { check: true })).stdout, stored);
  assert.equal(await floodDsts(h1), [lab.host(2).ip, lab.host(3).ip].sort());
});

step('teardown: virsh destroy of every guest removes every pair', async (lab) => {
  const results = await Promise.all(Object.values(g).map((x) => x.destroy()));
  results.forEach((r) => assert.is(r.code, 0, r.stderr));
  for (const h of lab.hosts) await assertDevices(h, [], 'after destroying its guests');
});

test.run();
