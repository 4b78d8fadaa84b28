// Two simulated hosts running libvirt's modular daemons (virtqemud +
// virtnetworkd + virtlogd, no libvirtd; the default on RHEL, Fedora and newer
// Debian): the core of two-hosts.test.ts. vxvirt's hook is run by virtqemud,
// define-network's libvirt network lives in virtnetworkd (reached through
// virtqemud), and a guest on that network makes virtqemud ask virtnetworkd
// for its port.
import * as assert from 'uvu/assert';
import { UNDERLAY_DEV, type Guest } from './lab.ts';
import { labSuite, vxvirt, assertDevices, waitAllPing, log } from './support.ts';

const { test, step } = labSuite('two hosts, modular daemons', 'modular', 2, { daemons: 'modular' });
const PAIR42 = ['vxbr42', 'vxlan42'];
const g: Record<string, Guest> = {};

step('no libvirtd: virtqemud and virtnetworkd answer on their own sockets; virsh reaches the network driver through virtqemud', async (lab) => {
  for (const h of lab.hosts) {
    assert.is(h.pidOf('libvirtd'), undefined, `${h.name} runs no libvirtd`);
    for (const d of ['virtqemud', 'virtnetworkd', 'virtlogd'] as const) assert.ok(h.pidOf(d), `${h.name} runs ${d}`);
    const socks = (await h.exec(['ls', '/run/libvirt'], { check: true })).stdout.split('\n');
    for (const s of ['virtqemud-sock', 'virtnetworkd-sock']) assert.ok(socks.includes(s), `${h.name}: /run/libvirt/${s} (${socks.join(' ')})`);
    assert.not.ok(socks.includes('libvirtd-sock'), `${h.name}: no libvirtd socket`);
    const nets = await h.virsh('net-list', '--all');
    assert.is(nets.code, 0, `virsh net-list on ${h.name}: ${nets.stderr}`);
  }
  const v = (await lab.host(1).virsh('version', '--daemon')).stdout;
  log(`h1: ${v.replace(/\s*\n\s*/g, ' | ').trim()}`);
});

step('define-network: point-to-point VNI 42 on both hosts; its libvirt network is defined and active in virtnetworkd', async (lab) => {
  const [h1, h2] = [lab.host(1), lab.host(2)];
  const [o1, o2] = await Promise.all([
    vxvirt(h1, 'define-network', 'demo', '--vni', '42', '--dev', UNDERLAY_DEV, '--local', h1.ip, '--remote', h2.ip),
    vxvirt(h2, 'define-network', 'demo', '--vni', '42', '--dev', UNDERLAY_DEV, '--local', h2.ip, '--remote', h1.ip),
  ]);
  log(`h1: ${o1}`);
  log(`h2: ${o2}`);
  for (const h of lab.hosts) {
    const info = (await h.exec(['virsh', '-c', 'network:///system', 'net-info', 'demo'])).stdout;
    assert.match(info, /Active:\s+yes/, `network demo is active in ${h.name}'s virtnetworkd:\n${info}`);
    assert.match(info, /Bridge:\s+vxbr42/, `network demo bridges to vxbr42 on ${h.name}:\n${info}`);
    await assertDevices(h, [], 'after define-network');
  }
  g.a = h1.guest({ name: 'guest-a', addr: '10.20.1.2/24', peers: ['10.20.1.3'], bridge: 'vxbr42', interval: 0.5, mtu: 1450, pingSize: 1422 });
  g.b = h2.guest({ name: 'guest-b', addr: '10.20.1.3/24', peers: ['10.20.1.2', '10.20.1.13'], bridge: 'vxbr42', interval: 0.5 });
  // On h2, a guest whose NIC names the libvirt network: virtqemud asks virtnetworkd for the port.
  g.n = h2.guest({ name: 'guest-n', addr: '10.20.1.13/24', peers: ['10.20.1.2'], bridge: 'vxbr42', network: 'demo', interval: 0.5 });
  await Promise.all(Object.values(g).map((x) => x.define()));
});

step('virsh start (virtqemud runs the hook) creates vxbr42+vxlan42 on both hosts; the guests ping each other across the underlay', async (lab) => {
  const [h1, h2] = [lab.host(1), lab.host(2)];
  const [ra, rb] = await Promise.all([g.a!.start(), g.b!.start()]);
  assert.is(ra.code, 0, `virsh start guest-a: ${ra.stderr}`);
  assert.is(rb.code, 0, `virsh start guest-b: ${rb.stderr}`);
  const rn = await g.n!.start();
  assert.is(rn.code, 0, `virsh start guest-n (<interface type='network'>): ${rn.stderr}`);
  log(`virsh start guest-a ${ra.ms} ms, guest-b ${rb.ms} ms, guest-n ${rn.ms} ms`);
  await assertDevices(h1, PAIR42, 'while guest-a runs');
  await assertDevices(h2, PAIR42, 'while guest-b and guest-n run (one pair for both)');
  // virtqemud, not libvirtd, called the hook.
  const calls = (await h1.exec(['grep', '-c', 'id=guest-a op=prepare subop=begin', '/var/log/libvirt/virtqemud.log'])).stdout.trim();
  assert.is(calls, '1', "virtqemud.log records one qemu hook 'prepare' call for guest-a");
  const live = (await h2.virsh('dumpxml', 'guest-n')).stdout;
  assert.match(live, /<source network='demo'[^>]*bridge='vxbr42'/, `guest-n's live NIC is on network demo / vxbr42 (virtnetworkd gave the port):\n${live}`);
  const lines = await waitAllPing([g.a!, g.b!, g.n!], (x) => x.spec.peers ?? [], { count: 3 });
  lines.forEach((l) => log(l));
  assert.is(await g.a!.eth0Mtu(), 1450, 'guest-a eth0 MTU');
  const status = JSON.parse(await vxvirt(h2, 'status', '--json')) as Array<{ name: string; domains: Array<{ name: string }>; drift: unknown[] }>;
  const demo = status.find((r) => r.name === 'demo');
  assert.equal(demo?.domains.map((d) => d.name).sort(), ['guest-b', 'guest-n'], 'h2 records guest-b and guest-n as users of demo');
  assert.equal(demo?.drift, [], 'no drift on h2');
});

step('virsh destroy: the pair stays while a guest uses it, and goes with the last guest on each host', async (lab) => {
  const [h1, h2] = [lab.host(1), lab.host(2)];
  const rn = await g.n!.destroy();
  assert.is(rn.code, 0, rn.stderr);
  await assertDevices(h2, PAIR42, 'after destroying guest-n while guest-b still runs');
  const [ra, rb] = await Promise.all([g.a!.destroy(), g.b!.destroy()]);
  assert.is(ra.code, 0, ra.stderr);
  assert.is(rb.code, 0, rb.stderr);
  await assertDevices(h1, [], 'after destroying the last guest');
  await assertDevices(h2, [], 'after destroying the last guest');
  for (const h of lab.hosts) assert.equal(await h.domains('--state-running'), [], `${h.name} runs no guest`);
  const released = (await h2.exec(['grep', '-c', 'id=guest-n op=release subop=end', '/var/log/libvirt/virtqemud.log'])).stdout.trim();
  assert.is(released, '1', "virtqemud.log records the qemu hook 'release' of guest-n");
});

test.run();
