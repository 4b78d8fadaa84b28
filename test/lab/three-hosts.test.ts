// Three simulated hosts, one lab, three networks side by side, all guests
// booted at once:
//   VNI 42  multicast group 239.1.1.1         guests 10.20.1.2 (h1) .3 (h2) .4 (h3)
//   VNI 43  multicast group 239.1.1.1 as well  guests 10.20.1.12 (h1) .13 (h3)
//   VNI 101 unicast peers (each host --remote the other two)
//                                              guests 10.20.101.2 (h1) .3 (h2) .4 (h3)
// VNI 42 and 43 share the subnet and even the multicast group: only the VNI
// keeps them apart, which is what the isolation test checks.
import * as assert from 'uvu/assert';
import { UNDERLAY_DEV, type Guest, type Host } from './lab.ts';
import { labSuite, vxvirt, assertDevices, waitAllPing, log, addrOf } from './support.ts';

const { test, step } = labSuite('three hosts', 'three', 3);
const GROUP = '239.1.1.1';
const mc42: Guest[] = [];
const mc43: Guest[] = [];
const uc101: Guest[] = [];
const all = (): Guest[] => [...mc42, ...mc43, ...uc101];
const peersIn = (set: Guest[], g: Guest): string[] => set.filter((x) => x !== g).map(addrOf);

step('define-network on every host: multicast VNI 42 and 43 (same group), unicast VNI 101 (two --remote each)', async (lab) => {
  // Hosts are independent: define on all three at once.
  const out = await Promise.all(
    lab.hosts.map(async (h) => {
      const others = lab.hosts.filter((x) => x !== h);
      const lines = [
        await vxvirt(h, 'define-network', 'mc42', '--vni', '42', '--dev', UNDERLAY_DEV, '--group', GROUP),
        await vxvirt(h, 'define-network', 'mc43', '--vni', '43', '--dev', UNDERLAY_DEV, '--group', GROUP),
        await vxvirt(h, 'define-network', 'uc101', '--vni', '101', '--dev', UNDERLAY_DEV, '--local', h.ip, ...others.flatMap((o) => ['--remote', o.ip])),
      ];
      await assertDevices(h, [], 'after define-network');
      return lines.map((l) => `${h.name}: ${l}`);
    }),
  );
  out.flat().forEach((l) => log(l));
  const [h1, h2, h3] = [lab.host(1), lab.host(2), lab.host(3)] as [Host, Host, Host];
  const isolated42 = ['10.20.1.12', '10.20.1.13'];
  const isolated43 = ['10.20.1.2', '10.20.1.3', '10.20.1.4'];
  // Each guest pings its own network's guests and the other VNI's addresses.
  [h1, h2, h3].forEach((h, i) =>
    mc42.push(h.guest({ name: `mc42-${h.name}`, addr: `10.20.1.${i + 2}/24`, peers: [...[2, 3, 4].filter((n) => n !== i + 2).map((n) => `10.20.1.${n}`), ...isolated42], bridge: 'vxbr42', interval: 0.5 })),
  );
  mc43.push(h1.guest({ name: 'mc43-h1', addr: '10.20.1.12/24', peers: ['10.20.1.13', ...isolated43], bridge: 'vxbr43', interval: 0.5 }));
  mc43.push(h3.guest({ name: 'mc43-h3', addr: '10.20.1.13/24', peers: ['10.20.1.12', ...isolated43], bridge: 'vxbr43', interval: 0.5 }));
  [h1, h2, h3].forEach((h, i) =>
    uc101.push(h.guest({ name: `uc101-${h.name}`, addr: `10.20.101.${i + 2}/24`, peers: [2, 3, 4].filter((n) => n !== i + 2).map((n) => `10.20.101.${n}`), bridge: 'vxbr101', interval: 0.5 })),
  );
  await Promise.all(all().map((g) => g.define()));
});

step('all 8 guests start at once; each host gets exactly the pairs its guests use', async (lab) => {
  const t = Date.now();
  const results = await Promise.all(all().map((g) => g.start()));
  results.forEach((r, i) => assert.is(r.code, 0, `virsh start ${all()[i]!.name} on ${all()[i]!.host.name}: ${r.stderr}`));
  log(`8 x virsh start in ${Date.now() - t} ms`);
  await assertDevices(lab.host(1), ['vxbr42', 'vxlan42', 'vxbr43', 'vxlan43', 'vxbr101', 'vxlan101'], 'with guests on 42, 43, 101');
  await assertDevices(lab.host(2), ['vxbr42', 'vxlan42', 'vxbr101', 'vxlan101'], 'with guests on 42 and 101 (none on 43)');
  await assertDevices(lab.host(3), ['vxbr42', 'vxlan42', 'vxbr43', 'vxlan43', 'vxbr101', 'vxlan101'], 'with guests on 42, 43, 101');
  for (const h of lab.hosts) log(`${h.name}: [${(await h.vxDevices()).join(' ')}]`);
});

step(`multicast: VNI 42 over group ${GROUP}, every guest reaches every other`, async (lab) => {
  const vx = await lab.host(2).linkDetails('vxlan42');
  assert.ok(vx.includes(`group ${GROUP}`) && vx.includes(`dev ${UNDERLAY_DEV}`), `vxlan42 uses group ${GROUP} on ${UNDERLAY_DEV}:\n${vx}`);
  const maddr = (await lab.host(2).exec(['ip', 'maddr', 'show', 'dev', UNDERLAY_DEV])).stdout;
  assert.ok(maddr.includes(GROUP), `${UNDERLAY_DEV} joined ${GROUP}:\n${maddr}`);
  (await waitAllPing(mc42, (g) => peersIn(mc42, g), { count: 2 })).forEach((l) => log(l));
});

step('unicast peers: VNI 101 with two --remote per host, every guest reaches every other', async (lab) => {
  for (const h of lab.hosts) {
    const fdb = (await h.exec(['bridge', 'fdb', 'show', 'dev', 'vxlan101'])).stdout;
    for (const o of lab.hosts.filter((x) => x !== h)) {
      assert.match(fdb, new RegExp(`00:00:00:00:00:00 dst ${o.ip.replace(/\./g, '\\.')}`), `${h.name} vxlan101 floods to ${o.ip}:\n${fdb}`);
    }
  }
  (await waitAllPing(uc101, (g) => peersIn(uc101, g), { count: 2 })).forEach((l) => log(l));
});

step('isolation: VNI 42 and 43 (same subnet, same group) never reach each other; positive control on 43 succeeds', async () => {
  // Positive control first: the VNI 43 guests do reach each other.
  (await waitAllPing(mc43, (g) => peersIn(mc43, g), { count: 2 })).forEach((l) => log(l));
  // From the start of the guests' lives, not one ping across VNIs may succeed,
  // and each must have been tried at least 3 times.
  const checks: Promise<void>[] = [];
  for (const g of mc43) for (const p of mc42.map(addrOf)) checks.push(g.waitPingFail(p, { count: 3 }).then((s) => log(`${g.name} -> ${p} (VNI 42): ${s.ok} ok / ${s.fail} fail`)));
  for (const g of mc42) for (const p of mc43.map(addrOf)) checks.push(g.waitPingFail(p, { count: 3 }).then((s) => log(`${g.name} -> ${p} (VNI 43): ${s.ok} ok / ${s.fail} fail`)));
  await Promise.all(checks);
});

step('teardown: virsh destroy of every guest removes every pair on every host', async (lab) => {
  const t = Date.now();
  const results = await Promise.all(all().map((g) => g.destroy()));
  results.forEach((r, i) => assert.is(r.code, 0, `virsh destroy ${all()[i]!.name}: ${r.stderr}`));
  log(`8 x virsh destroy in ${Date.now() - t} ms`);
  for (const h of lab.hosts) await assertDevices(h, [], 'after destroying all guests');
});

test.run();
