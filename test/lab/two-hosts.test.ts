// Two simulated hosts, one lab: point-to-point VNI 42 (the README tutorial),
// then the device lifecycle, libvirtd restarts (hook `reconnect`), ACPI
// shutdown, and a start that must fail. The tests run in order and share
// state: each one leaves the lab as the next one expects.
import * as assert from 'uvu/assert';
import { UNDERLAY_DEV, waitFor, alive, sleep, type Guest } from './lab.ts';
import { labSuite, vxvirt, assertDevices, waitAllPing, log, addrOf } from './support.ts';

const { test, step } = labSuite('two hosts', 'two', 2);
const PAIR42 = ['vxbr42', 'vxlan42'];
const g: Record<string, Guest> = {};

step('define-network: point-to-point VNI 42 on both hosts, and a network whose underlay device is missing', async (lab) => {
  const [h1, h2] = [lab.host(1), lab.host(2)];
  const [o1, o2] = await Promise.all([
    (async () => [
      await vxvirt(h1, 'define-network', 'demo', '--vni', '42', '--dev', UNDERLAY_DEV, '--local', h1.ip, '--remote', h2.ip),
      // Accepted with a warning: the device may appear later.
      await vxvirt(h1, 'define-network', 'broken', '--vni', '44', '--dev', 'nosuchdev0', '--local', h1.ip, '--remote', h2.ip),
    ])(),
    vxvirt(h2, 'define-network', 'demo', '--vni', '42', '--dev', UNDERLAY_DEV, '--local', h2.ip, '--remote', h1.ip),
  ]);
  o1.forEach((l) => log(`h1: ${l}`));
  log(`h2: ${o2}`);
  const stored = await h1.exec(['cat', '/etc/vxvirt/networks/demo.json'], { check: true });
  const def = JSON.parse(stored.stdout) as Record<string, unknown>;
  assert.is(def.vni, 42);
  assert.is(def.dev, UNDERLAY_DEV);
  // Defining creates nothing yet: the pair appears when a guest needs it.
  await assertDevices(h1, [], 'after define-network');
  await assertDevices(h2, [], 'after define-network');

  // guest-a uses the overlay MTU (1500 - 50) with full-size pings: 1422 bytes of
  // ICMP payload + 28 = 1450-byte packets, whose VXLAN frames fill the underlay.
  g.a = h1.guest({ name: 'guest-a', addr: '10.20.1.2/24', peers: ['10.20.1.3'], bridge: 'vxbr42', interval: 0.5, mtu: 1450, pingSize: 1422 });
  g.b = h2.guest({ name: 'guest-b', addr: '10.20.1.3/24', peers: ['10.20.1.2', '10.20.1.12'], bridge: 'vxbr42', interval: 0.5 });
  g.a2 = h1.guest({ name: 'guest-a2', addr: '10.20.1.12/24', peers: ['10.20.1.3'], bridge: 'vxbr42', interval: 0.5 });
  // On h2, a second guest whose NIC names the libvirt network define-network made.
  g.n = h2.guest({ name: 'guest-n', addr: '10.20.1.13/24', peers: ['10.20.1.2'], bridge: 'vxbr42', network: 'demo', interval: 0.5 });
  g.bad = h1.guest({ name: 'guest-bad', addr: '10.20.4.2/24', bridge: 'vxbr44' });
  await Promise.all(Object.values(g).map((x) => x.define()));
});

step('point-to-point: virsh start creates vxbr42+vxlan42 on both hosts; 10.20.1.2 <-> 10.20.1.3 ping across the underlay', async (lab) => {
  const [h1, h2] = [lab.host(1), lab.host(2)];
  const t = Date.now();
  const [ra, rb] = await Promise.all([g.a!.start(), g.b!.start()]);
  assert.is(ra.code, 0, `virsh start guest-a: ${ra.stderr}`);
  assert.is(rb.code, 0, `virsh start guest-b: ${rb.stderr}`);
  log(`virsh start guest-a ${ra.ms} ms, guest-b ${rb.ms} ms`);
  await assertDevices(h1, PAIR42, 'while guest-a runs');
  await assertDevices(h2, PAIR42, 'while guest-b runs');
  // The lifecycle tests need a second guest on each host; boot them now, with the others.
  const [r2, rn] = await Promise.all([g.a2!.start(), g.n!.start()]);
  assert.is(r2.code, 0, `virsh start guest-a2: ${r2.stderr}`);
  assert.is(rn.code, 0, `virsh start guest-n (<interface type='network'>): ${rn.stderr}`);
  await assertDevices(h1, PAIR42, 'with guest-a and guest-a2 (one pair for both)');
  await assertDevices(h2, PAIR42, 'with guest-b and guest-n (one pair for both)');
  const vx = await h1.linkDetails('vxlan42');
  log(`h1 vxlan42: ${vx.replace(/\s+/g, ' ').trim()}`);
  for (const want of ['vxlan id 42', `remote ${h2.ip}`, `local ${h1.ip}`, `dev ${UNDERLAY_DEV}`, 'dstport 4789', 'master vxbr42']) {
    assert.ok(vx.includes(want), `h1 vxlan42 should show "${want}":\n${vx}`);
  }
  const br = (await h1.exec(['bridge', 'link', 'show'])).stdout;
  assert.match(br, /master vxbr42/, 'the guest tap is a port of vxbr42');
  const lines = await waitAllPing([g.a!, g.b!], (x) => (x === g.b ? ['10.20.1.2'] : ['10.20.1.3']), { count: 3 });
  lines.forEach((l) => log(l));
  const mtu = (await h1.exec(['cat', '/sys/class/net/vxbr42/mtu'])).stdout.trim();
  assert.is(mtu, '1450', 'vxbr42 MTU = underlay 1500 - 50');
  assert.is(await g.a!.eth0Mtu(), 1450, 'guest-a eth0 MTU (vx.mtu=1450)');
  log(`3 answers each way ${Date.now() - t} ms after virsh start; vxbr42 MTU ${mtu}; guest-a eth0 MTU 1450 pinging with 1422-byte payloads, guest-b eth0 MTU ${await g.b!.eth0Mtu()}`);
});

step('lifecycle: two guests on h1 share the pair, which survives the first guest being destroyed', async (lab) => {
  const h1 = lab.host(1);
  await assertDevices(h1, PAIR42, 'with two guests');
  await g.a2!.waitPingOk('10.20.1.3', { count: 1 });
  // guest-n (h2, libvirt network NIC) pings guest-a: let it succeed before guest-a goes.
  await g.n!.waitPingOk('10.20.1.2', { count: 2 });
  const r = await g.a!.destroy();
  assert.is(r.code, 0, r.stderr);
  await assertDevices(h1, PAIR42, 'after destroying guest-a while guest-a2 still runs');
  const since = g.a2!.mark();
  const s = await g.a2!.waitPingOk('10.20.1.3', { since, count: 2 });
  log(`guest-a2 -> 10.20.1.3 after guest-a was destroyed: ${s.ok} ok / ${s.fail} fail`);
});

for (const signal of ['SIGTERM', 'SIGKILL'] as const) {
  step(`libvirtd restart (${signal} by PID, start again): the hook's reconnect keeps guest and pair`, async (lab) => {
    const h1 = lab.host(1);
    const before = await h1.vxDevices();
    const old = await h1.stopLibvirtd(signal);
    await assertDevices(h1, PAIR42, 'while libvirtd is down');
    const t = Date.now();
    const pid = await h1.startLibvirtd();
    assert.is.not(pid, old);
    // libvirtd logs each hook call (util.hook at debug level, see lab.ts); it
    // reconnects to running guests in a thread of its own, so wait for it.
    const want = signal === 'SIGTERM' ? '1' : '2';
    const calls = await waitFor('libvirtd to call the hook with reconnect for guest-a2', async () => {
      const n = (await h1.exec(['grep', '-c', 'id=guest-a2 op=reconnect subop=begin', '/var/log/libvirt/libvirtd.log'])).stdout.trim();
      return n === want ? n : undefined;
    }, { timeoutMs: 20_000 });
    assert.equal(await h1.domains('--state-running'), ['guest-a2'], 'running guests after restart');
    assert.equal(await h1.vxDevices(), before, 'devices after restart');
    log(`libvirtd ${old} -> ${pid} in ${Date.now() - t} ms; guest-a2 still running; devices [${before.join(' ')}] unchanged; hook reconnect calls so far: ${calls}`);
    const since = g.a2!.mark();
    await g.a2!.waitPingOk('10.20.1.3', { since, count: 2 });
  });
}

step('lifecycle: virsh destroy of the last guest on h1 removes vxbr42+vxlan42 there (h2 keeps its pair)', async (lab) => {
  const [h1, h2] = [lab.host(1), lab.host(2)];
  const before = await h1.vxDevices();
  const r = await g.a2!.destroy();
  assert.is(r.code, 0, r.stderr);
  await assertDevices(h1, [], 'after destroying the last guest');
  await assertDevices(h2, PAIR42, 'on h2, whose guest still runs');
  log(`h1 devices before [${before.join(' ')}] after []`);
});

step('lifecycle: a guest whose QEMU dies while libvirtd is down is released when libvirtd comes back; the pair goes', async (lab) => {
  const h1 = lab.host(1);
  await g.a!.startOrThrow();
  await assertDevices(h1, PAIR42, 'after starting guest-a again');
  await h1.stopLibvirtd('SIGTERM');
  const qemu = h1.qemuPid('guest-a');
  assert.ok(qemu, 'guest-a has a QEMU process');
  process.kill(qemu!, 'SIGKILL');
  await waitFor(`QEMU ${qemu} to exit`, () => !alive(qemu!), { timeoutMs: 10_000, intervalMs: 50 });
  await assertDevices(h1, PAIR42, 'while libvirtd is down (nobody told vxvirt yet)');
  const t = Date.now();
  await h1.startLibvirtd();
  await g.a!.waitState('shut off', 30_000);
  await waitFor('h1 pair to be removed', async () => (await h1.vxDevices()).length === 0 || undefined, { timeoutMs: 20_000 });
  const calls = (await h1.exec(['grep', '-c', 'id=guest-a op=release subop=end', '/var/log/libvirt/libvirtd.log'])).stdout.trim();
  log(`QEMU ${qemu} killed while libvirtd was down; after restart guest-a is shut off and h1 has no pair (${Date.now() - t} ms); release hook calls for guest-a: ${calls}`);
});

step('lifecycle race: a guest stops while another on the same VNI starts, at several offsets; the starting guest always ends up on a live vxbr42', async (lab) => {
  const h1 = lab.host(1);
  // One guest runs; `virsh destroy` it and, `delay` ms later, `virsh start` the
  // other. destroy takes ~2 s and the hook's release runs at its end, so the
  // offsets sweep the start's prepare across the stop's release.
  let running = g.a!;
  let other = g.a2!;
  await running.startOrThrow();
  const results: string[] = [];
  for (const delay of [0, 1000, 1500, 1900]) {
    const t = Date.now();
    const [d, st] = await Promise.all([running.destroy(), sleep(delay).then(() => other.start())]);
    assert.is(d.code, 0, `virsh destroy ${running.name}: ${d.stderr}`);
    assert.is(st.code, 0, `virsh start ${other.name} ${delay} ms into the destroy of ${running.name}: ${st.stderr}`);
    await assertDevices(h1, PAIR42, `after destroying ${running.name} and starting ${other.name} ${delay} ms later`);
    const tap = (await h1.virsh('domiflist', other.name)).stdout.split('\n').map((l) => l.trim().split(/\s+/)[0]).find((x) => x && /^vnet/.test(x));
    const ports = (await h1.exec(['bridge', 'link', 'show', 'master', 'vxbr42'])).stdout;
    assert.ok(tap && ports.includes(`${tap}:`) || (tap && ports.includes(` ${tap}@`)), `${other.name}'s tap ${tap} is a port of vxbr42:\n${ports}`);
    results.push(`+${delay} ms: destroy ${d.ms} ms, start ${st.ms} ms, ${tap} on vxbr42 (${Date.now() - t} ms)`);
    [running, other] = [other, running];
  }
  results.forEach((r) => log(r));
  const r = await running.destroy();
  assert.is(r.code, 0, r.stderr);
  await assertDevices(h1, [], 'after destroying the last guest of the race');
});

step('a start that must fail: network "broken" (VNI 44) has no underlay device; virsh start fails with the hook reason, nothing left behind', async (lab) => {
  const h1 = lab.host(1);
  const r = await g.bad!.start();
  const msg = (r.stderr + r.stdout).trim();
  log(`virsh start guest-bad: exit ${r.code}: ${msg.replace(/\s*\n\s*/g, ' | ')}`);
  assert.is.not(r.code, 0, 'virsh start must fail');
  assert.match(msg, /vxvirt:/, 'the error names vxvirt (the hook reason)');
  assert.match(msg, /nosuchdev0/, 'the reason names the missing device');
  assert.is(await g.bad!.state(), 'shut off');
  const links = await h1.links();
  assert.not.ok(links.some((l) => /^vx(br|lan)44$/.test(l)), `nothing of VNI 44 left: ${links.join(' ')}`);
  await assertDevices(h1, [], 'after the failed start');
});

step("libvirt network NIC: guest-n (<interface type='network'><source network='demo'/>) reaches 10.20.1.2; destroying it leaves h2's pair to guest-b", async (lab) => {
  const h2 = lab.host(2);
  const net = (await h2.virsh('net-dumpxml', 'demo')).stdout;
  assert.match(net, /<bridge name='vxbr42'/, `libvirt network demo bridges to vxbr42:\n${net}`);
  const inactive = (await h2.virsh('dumpxml', '--inactive', 'guest-n')).stdout;
  assert.match(inactive, /<interface type='network'>[\s\S]*?<source network='demo'\/>/, `guest-n is defined with a network NIC:\n${inactive}`);
  // The live XML shows what libvirt resolved the network to.
  const live = (await h2.virsh('dumpxml', 'guest-n')).stdout;
  assert.match(live, /<source network='demo'[^>]*bridge='vxbr42'/, `guest-n's live NIC is on network demo / vxbr42:\n${live}`);
  const s = g.n!.pingStats('10.20.1.2');
  assert.ok(s.ok >= 2, 'guest-n got answers from guest-a while guest-a ran');
  log(`guest-n 10.20.1.13 -> 10.20.1.2 via network demo: ${s.ok} ok while guest-a ran, ${s.fail} fail (before boot / after guest-a was destroyed)`);
  const r = await g.n!.destroy();
  assert.is(r.code, 0, r.stderr);
  await assertDevices(h2, PAIR42, 'after destroying guest-n while guest-b still runs');
});

step('lifecycle: virsh shutdown (ACPI power button, handled by busybox acpid in the guest) of the last guest on h2 removes its pair', async (lab) => {
  const h2 = lab.host(2);
  const s = g.b!.pingStats('10.20.1.2');
  log(`guest-b -> 10.20.1.2 over its life: ${s.ok} ok / ${s.fail} fail`);
  await assertDevices(h2, PAIR42, 'while guest-b runs');
  const t = Date.now();
  const r = await g.b!.shutdown();
  assert.is(r.code, 0, r.stderr);
  await g.b!.waitState('shut off', 60_000);
  await g.b!.waitLine(/acpi power button/, { timeoutMs: 1000 });
  await assertDevices(h2, [], 'after guest-b powered off');
  log(`virsh shutdown guest-b -> shut off in ${Date.now() - t} ms; h2 devices before [${PAIR42.join(' ')}] after []`);
  for (const h of lab.hosts) assert.equal(await h.domains('--state-running'), [], `${h.name} runs no guest`);
});

test.run();
