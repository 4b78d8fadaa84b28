// Guests over an IPv6 underlay. Each host's underlay device gets
// fd00:8::(100+N-1)/64 beside its IPv4 address, and two networks run over it:
//   VNI 46  multicast group ff05::46            guests fd00:46::2 (h1), fd00:46::3 (h2):
//                                               IPv6 inside the overlay too
//   VNI 60  point-to-point fd00:8::100 <-> ::101 guests 10.20.60.2 (h1), 10.20.60.3 (h2)
// The overlay MTU is the underlay's minus 70 over IPv6 (40 IPv6 + 8 UDP + 8
// VXLAN + 14 Ethernet): 1430. Every guest pings its peer with the largest
// payload that fits in 1430 bytes (1402 over IPv4, 1382 over IPv6) and a
// small one; the underlay joins ff05::46 while a guest uses VNI 46 and leaves
// it with the last one.
import * as assert from 'uvu/assert';
import { UNDERLAY_DEV, type Guest, type Host } from './lab.ts';
import { labSuite, vxvirt, assertDevices, waitAllPing, log } from './support.ts';

const { test, step } = labSuite('guests over an IPv6 underlay', 'ipv6', 2);
const GROUP = 'ff05::46';
const MTU = 1430;
const underlay6 = (h: Host): string => `fd00:8::${h.ip.split('.')[3]}`;
const mc: Guest[] = [];
const p2p: Guest[] = [];
const all = (): Guest[] => [...mc, ...p2p];

interface VxlanLink {
  mtu: number;
  linkinfo?: { info_data?: { id?: number; group6?: string; local6?: string; remote6?: string } };
}
const link = async (h: Host, dev: string): Promise<VxlanLink> =>
  (JSON.parse((await h.exec(['ip', '-d', '-j', 'link', 'show', 'dev', dev], { check: true })).stdout) as VxlanLink[])[0]!;
const joined = async (h: Host): Promise<boolean> => (await h.exec(['ip', '-6', 'maddr', 'show', 'dev', UNDERLAY_DEV], { check: true })).stdout.includes(GROUP);

step('IPv6 on the underlay; define-network mc6 (VNI 46, group ff05::46) and p2p6 (VNI 60, IPv6 point-to-point) on both hosts', async (lab) => {
  const [h1, h2] = [lab.host(1), lab.host(2)] as [Host, Host];
  for (const h of [h1, h2]) {
    await h.exec(['ip', '-6', 'addr', 'add', `${underlay6(h)}/64`, 'dev', UNDERLAY_DEV, 'nodad'], { check: true });
  }
  const ping = await h1.exec(['ping', '-6', '-c', '1', '-W', '5', underlay6(h2)]);
  assert.is(ping.code, 0, `h1 reaches h2 over the IPv6 underlay: ${ping.stdout}${ping.stderr}`);
  for (const [h, other] of [[h1, h2], [h2, h1]] as const) {
    log(`${h.name}: ${await vxvirt(h, 'define-network', 'mc6', '--vni', '46', '--dev', UNDERLAY_DEV, '--group', GROUP)}`);
    log(`${h.name}: ${await vxvirt(h, 'define-network', 'p2p6', '--vni', '60', '--dev', UNDERLAY_DEV, '--local', underlay6(h), '--remote', underlay6(other))}`);
  }
  mc.push(h1.guest({ name: 'mc6-h1', addr: 'fd00:46::2/64', peers: ['fd00:46::3', `fd00:46::3@${MTU - 48}`], bridge: 'vxbr46', interval: 0.5, mtu: MTU }));
  mc.push(h2.guest({ name: 'mc6-h2', addr: 'fd00:46::3/64', peers: ['fd00:46::2', `fd00:46::2@${MTU - 48}`], bridge: 'vxbr46', interval: 0.5, mtu: MTU }));
  p2p.push(h1.guest({ name: 'p2p6-h1', addr: '10.20.60.2/24', peers: ['10.20.60.3', `10.20.60.3@${MTU - 28}`], bridge: 'vxbr60', interval: 0.5, mtu: MTU }));
  p2p.push(h2.guest({ name: 'p2p6-h2', addr: '10.20.60.3/24', peers: ['10.20.60.2', `10.20.60.2@${MTU - 28}`], bridge: 'vxbr60', interval: 0.5, mtu: MTU }));
  await Promise.all(all().map((g) => g.define()));
});

step('the guests start: each host has both pairs at MTU 1430, vxlan46 on group ff05::46 (joined by the underlay), vxlan60 between the IPv6 addresses', async (lab) => {
  const results = await Promise.all(all().map((g) => g.start()));
  results.forEach((r, i) => assert.is(r.code, 0, `virsh start ${all()[i]!.name}: ${r.stderr}`));
  for (const [h, other] of [
    [lab.host(1), lab.host(2)],
    [lab.host(2), lab.host(1)],
  ] as [Host, Host][]) {
    await assertDevices(h, ['vxbr46', 'vxlan46', 'vxbr60', 'vxlan60'], 'with guests on VNI 46 and 60');
    for (const dev of ['vxbr46', 'vxlan46', 'vxbr60', 'vxlan60']) assert.is((await link(h, dev)).mtu, MTU, `${h.name}: ${dev} MTU (underlay 1500 - 70)`);
    const mcInfo = (await link(h, 'vxlan46')).linkinfo?.info_data;
    assert.is(mcInfo?.group6, GROUP, `${h.name}: vxlan46 group`);
    const p2pInfo = (await link(h, 'vxlan60')).linkinfo?.info_data;
    assert.equal([p2pInfo?.local6, p2pInfo?.remote6], [underlay6(h), underlay6(other)], `${h.name}: vxlan60 local6/remote6`);
    assert.ok(await joined(h), `${h.name}: ${UNDERLAY_DEV} has joined ${GROUP}`);
  }
});

step('full-size pings cross both networks: 1382 bytes over IPv6 and 1402 over IPv4 inside 1430', async () => {
  for (const g of all()) assert.is(await g.eth0Mtu(), MTU, `${g.name} eth0 MTU`);
  const lines = await waitAllPing(all(), (g) => g.spec.peers ?? [], { count: 2 });
  lines.forEach((l) => log(l));
});

step('virsh destroy of every guest removes both pairs, and the underlay leaves ff05::46', async (lab) => {
  const results = await Promise.all(all().map((g) => g.destroy()));
  results.forEach((r, i) => assert.is(r.code, 0, `virsh destroy ${all()[i]!.name}: ${r.stderr}`));
  for (const h of lab.hosts) {
    await assertDevices(h, [], 'after the last guest stopped');
    assert.not.ok(await joined(h), `${h.name}: ${UNDERLAY_DEV} has left ${GROUP}`);
  }
});

test.run();
