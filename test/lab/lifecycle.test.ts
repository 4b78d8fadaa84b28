// The other ways a guest's NIC is plugged and unplugged, on one lab of two
// hosts: hot-plug and unplug with plain virsh (libvirt's network hook
// port-created / port-deleted, no qemu hook), one guest with two NICs on two
// VNIs (one through the libvirt network, one on vxbrN), save / restore and
// managedsave / start, and a host reboot (libvirtd started on an empty /run
// with an autostarted guest). Each checks the devices, the users state and
// pings across the underlay. h2 runs one guest, `peer`, with a NIC on each
// VNI (10.20.1.3 on VNI 42, 10.30.1.3 on VNI 43), that only answers.
//
// The tests run in order and share state: each leaves the lab as the next expects.
import { readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import * as assert from 'uvu/assert';
import { UNDERLAY_DEV, alive, waitFor, type Guest, type Host } from './lab.ts';
import { labSuite, vxvirt, assertDevices, log } from './support.ts';

const { test, step } = labSuite('plug and unplug paths', 'plug', 2);
const PAIR42 = ['vxbr42', 'vxlan42'];
const PAIR43 = ['vxbr43', 'vxlan43'];
const P42 = '10.20.1.3';
const P43 = '10.30.1.3';
const g: Record<string, Guest> = {};
const HOTPLUG_MAC = '52:54:00:aa:00:01';
const HOTPLUG_MAC2 = '52:54:00:aa:00:02';

// ---- helpers -------------------------------------------------------------------

interface UserEntry {
  name: string;
  macs?: string[];
}

/** The users of a network on a host: domain name -> its known NICs ('unknown' when vxvirt cannot name them). */
async function users(h: Host, network: string): Promise<Record<string, string[] | 'unknown'>> {
  const r = await h.exec(['cat', `/run/vxvirt/users/${network}.json`]);
  if (r.code !== 0) return {};
  const parsed = JSON.parse(r.stdout) as { users: Record<string, UserEntry> };
  return Object.fromEntries(Object.values(parsed.users).map((u) => [u.name, u.macs ?? 'unknown']));
}

/** Every state file of the host (domains/, releasing/, users/). */
async function stateFiles(h: Host): Promise<string[]> {
  const r = await h.exec(['sh', '-c', 'cd /run/vxvirt 2>/dev/null && find . -name "*.json" | sort']);
  return r.stdout.split('\n').filter(Boolean);
}

async function recordedNetworks(h: Host, g: Guest): Promise<string[]> {
  const r = await h.exec(['cat', `/run/vxvirt/domains/${g.uuid}.json`]);
  if (r.code !== 0) return [];
  return (JSON.parse(r.stdout) as { networks: Array<{ name: string }> }).networks.map((n) => n.name).sort();
}

/** Ping results of a guest's console: the highest round seen, and answers after a round. */
function rounds(g: Guest, peer: string): Array<{ round: number; ok: boolean }> {
  return g
    .lines()
    .map((l) => /^VXLAB ping (\S+) (ok|fail) round=(\d+)/.exec(l))
    .filter((m): m is RegExpExecArray => m !== null && m[1] === peer)
    .map((m) => ({ round: Number(m[3]), ok: m[2] === 'ok' }));
}
const lastRound = (g: Guest): number => Math.max(0, ...g.lines().map((l) => Number(/round=(\d+)/.exec(l)?.[1] ?? 0)));

/**
 * Wait for `count` answers from `peer` in rounds after `after` (round numbers
 * survive a save/restore, console offsets may not: QEMU reopens the file).
 */
async function waitAnswers(g: Guest, peer: string, after: number, count = 2, timeoutMs = 60_000): Promise<number> {
  return waitFor(`${g.name} to get ${count} answers from ${peer} after round ${after}`, () => {
    const n = rounds(g, peer).filter((r) => r.round > after && r.ok).length;
    return n >= count ? n : undefined;
  }, { timeoutMs, intervalMs: 250 });
}

/** Failed pings to `peer` in rounds after `after`. */
const lost = (g: Guest, peer: string, after: number): number => rounds(g, peer).filter((r) => r.round > after && !r.ok).length;

async function virshOk(h: Host, ...args: string[]): Promise<void> {
  const r = await h.virsh(...args);
  assert.is(r.code, 0, `virsh ${args.join(' ')} on ${h.name}: ${(r.stderr || r.stdout).trim()}`);
}

/** The tap of a guest's NIC with this MAC, and the bridge it is a port of. */
async function tapOf(h: Host, g: Guest, mac: string): Promise<{ tap: string; master: string } | undefined> {
  const rows = (await h.virsh('domiflist', g.name)).stdout.split('\n').map((l) => l.trim().split(/\s+/));
  const tap = rows.find((r) => r[4] === mac)?.[0];
  if (!tap) return undefined;
  const link = JSON.parse((await h.exec(['ip', '-j', 'link', 'show', 'dev', tap], { check: true })).stdout) as Array<{ master?: string }>;
  return { tap, master: link[0]?.master ?? '' };
}

const networkNic = (network: string, mac: string) =>
  `<interface type='network'><mac address='${mac}'/><source network='${network}'/><model type='virtio'/></interface>`;

// ---- the scenarios ---------------------------------------------------------------

step('define-network net42 (VNI 42) and net43 (VNI 43) on both hosts, and on h1 a network whose underlay is missing; the peer guest on h2', async (lab) => {
  const [h1, h2] = [lab.host(1), lab.host(2)];
  for (const [h, other] of [
    [h1, h2],
    [h2, h1],
  ] as const) {
    await vxvirt(h, 'define-network', 'net42', '--vni', '42', '--dev', UNDERLAY_DEV, '--local', h.ip, '--remote', other.ip);
    await vxvirt(h, 'define-network', 'net43', '--vni', '43', '--dev', UNDERLAY_DEV, '--local', h.ip, '--remote', other.ip);
  }
  await vxvirt(h1, 'define-network', 'broken', '--vni', '44', '--dev', 'nosuchdev0', '--local', h1.ip, '--remote', h2.ip);
  for (const h of lab.hosts) {
    const r = await h.exec(['readlink', '-f', '/etc/libvirt/hooks/network']);
    assert.match(r.stdout.trim(), /\/hooks\/network$/, `network hook installed on ${h.name}`);
  }
  g.peer = h2.guest({ name: 'peer', addr: `${P42}/24`, bridge: 'vxbr42', second: { addr: `${P43}/24`, bridge: 'vxbr43' }, interval: 0.5 });
  // h1: `two` has eth0 through the libvirt network net42 and eth1 on vxbr43 directly.
  g.two = h1.guest({ name: 'two', addr: '10.20.1.2/24', network: 'net42', bridge: 'vxbr42', second: { addr: '10.30.1.2/24', bridge: 'vxbr43' }, peers: [P42, P43], interval: 0.5 });
  // `hp` starts with eth0 on vxbr42; NICs are hot-plugged into it (eth1 gets 10.30.1.4).
  g.hp = h1.guest({ name: 'hp', addr: '10.20.1.4/24', bridge: 'vxbr42', second: { addr: '10.30.1.4/24' }, peers: [P42, P43], interval: 0.5 });
  // `plain` runs on net43 and gets a type='bridge' NIC on vxbr42 hot-plugged: no hook runs for that.
  g.plain = h1.guest({ name: 'plain', addr: '10.30.1.5/24', network: 'net43', bridge: 'vxbr43', interval: 0.5 });
  await Promise.all(Object.values(g).map((x) => x.define()));
  // hp's second NIC is not in its definition: it is hot-plugged later.
  await g.peer!.startOrThrow();
  await assertDevices(h2, [...PAIR42, ...PAIR43], 'with peer running');
});

step('two NICs on two VNIs in one guest (one via the libvirt network, one on vxbr43): both pairs made at start, pings on both, both removed at stop', async (lab) => {
  const h1 = lab.host(1);
  await assertDevices(h1, [], 'before two starts');
  await g.two!.startOrThrow();
  await assertDevices(h1, [...PAIR42, ...PAIR43], 'with two running');
  assert.equal(await users(h1, 'net42'), { two: [g.two!.mac] }, 'net42 users: two, by its eth0');
  assert.equal(await users(h1, 'net43'), { two: [g.two!.mac1] }, 'net43 users: two, by its eth1');
  assert.equal(await recordedNetworks(h1, g.two!), ['net42', 'net43']);
  assert.is((await tapOf(h1, g.two!, g.two!.mac))?.master, 'vxbr42', 'eth0 tap on vxbr42');
  assert.is((await tapOf(h1, g.two!, g.two!.mac1))?.master, 'vxbr43', 'eth1 tap on vxbr43');
  const port = await waitFor('libvirt to call the network hook for two', async () => {
    const n = (await h1.exec(['grep', '-c', 'id=net42 op=port-created', '/var/log/libvirt/libvirtd.log'])).stdout.trim();
    return Number(n) >= 1 ? n : undefined;
  }, { timeoutMs: 10_000 });
  await waitAnswers(g.two!, P42, 0, 3);
  await waitAnswers(g.two!, P43, 0, 3);
  log(`two: 3 answers each from ${P42} (eth0, net42) and ${P43} (eth1, vxbr43); network hook port-created calls for net42: ${port}`);
  await virshOk(h1, 'destroy', 'two');
  await assertDevices(h1, [], 'after two was destroyed');
  assert.equal(await stateFiles(h1), [], 'no state left after two stopped');
});

step('hot-plug with plain virsh: attach-interface on net43 creates vxbr43+vxlan43 and records hp; detach-interface releases it; eth0 on VNI 42 loses no ping', async (lab) => {
  const h1 = lab.host(1);
  await g.hp!.startOrThrow();
  await assertDevices(h1, PAIR42, 'with hp running (eth0 on vxbr42)');
  assert.equal(await users(h1, 'net42'), { hp: [g.hp!.mac] });
  await waitAnswers(g.hp!, P42, 0, 2);
  const r0 = lastRound(g.hp!);
  const t = Date.now();
  await virshOk(h1, 'attach-interface', 'hp', 'network', 'net43', '--model', 'virtio', '--mac', HOTPLUG_MAC, '--live');
  const plugMs = Date.now() - t;
  await assertDevices(h1, [...PAIR42, ...PAIR43], 'after the hot-plug on net43');
  assert.equal(await users(h1, 'net43'), { hp: [HOTPLUG_MAC] }, 'net43 users after the hot-plug');
  assert.equal(await recordedNetworks(h1, g.hp!), ['net42', 'net43']);
  assert.is((await tapOf(h1, g.hp!, HOTPLUG_MAC))?.master, 'vxbr43');
  await g.hp!.waitLine(/^VXLAB eth1 /, { timeoutMs: 30_000 });
  const r1 = lastRound(g.hp!);
  await waitAnswers(g.hp!, P43, r1, 3);
  log(`attach-interface hp network net43: ${plugMs} ms; eth1 10.30.1.4 -> ${P43}: 3 answers`);

  const r2 = lastRound(g.hp!);
  await virshOk(h1, 'detach-interface', 'hp', 'bridge', '--mac', HOTPLUG_MAC, '--live');
  await waitFor('hp to lose its hot-plugged NIC', async () => ((await tapOf(h1, g.hp!, HOTPLUG_MAC)) ? undefined : true), { timeoutMs: 20_000 });
  await assertDevices(h1, PAIR42, 'after the unplug: vxbr43 goes, vxbr42 stays for eth0');
  assert.equal(await users(h1, 'net43'), {}, 'net43 has no users after the unplug');
  assert.equal(await users(h1, 'net42'), { hp: [g.hp!.mac] }, 'net42 keeps hp');
  assert.equal(await recordedNetworks(h1, g.hp!), ['net42'], "net43 left hp's record");
  const r3 = lastRound(g.hp!);
  await waitAnswers(g.hp!, P42, r3, 2);
  const lost42 = lost(g.hp!, P42, r0);
  assert.is(lost42, 0, `hp's pings on eth0 (VNI 42) lost during plug and unplug`);
  log(`detach-interface: vxbr43+vxlan43 removed, hp still a user of net42; pings to ${P42} lost over both: ${lost42} (rounds ${r0}..${lastRound(g.hp!)}); to ${P43} after the unplug: ${lost(g.hp!, P43, r2)} failed`);
});

step('hot-plug a second NIC on VNI 42 (attach-device, net42) and unplug it: hp stays a user through its eth0, the pair stays; eth0 loses no ping', async (lab) => {
  const h1 = lab.host(1);
  const r0 = lastRound(g.hp!);
  const file = join(lab.host(1).dir, 'guests', 'hp-nic2.xml');
  const { writeFileSync } = await import('node:fs');
  writeFileSync(file, networkNic('net42', HOTPLUG_MAC2));
  await virshOk(h1, 'attach-device', 'hp', file, '--live');
  assert.equal(await users(h1, 'net42'), { hp: [g.hp!.mac, HOTPLUG_MAC2].sort() }, 'both NICs of hp on net42');
  assert.is((await tapOf(h1, g.hp!, HOTPLUG_MAC2))?.master, 'vxbr42');
  await virshOk(h1, 'detach-interface', 'hp', 'bridge', '--mac', HOTPLUG_MAC2, '--live');
  await waitFor('hp to lose its second NIC', async () => ((await tapOf(h1, g.hp!, HOTPLUG_MAC2)) ? undefined : true), { timeoutMs: 20_000 });
  await assertDevices(h1, PAIR42, 'after unplugging one of two NICs on VNI 42');
  assert.equal(await users(h1, 'net42'), { hp: [g.hp!.mac] }, 'hp still a user of net42, by eth0');
  const r1 = lastRound(g.hp!);
  await waitAnswers(g.hp!, P42, r1, 2);
  assert.is(lost(g.hp!, P42, r0), 0, 'pings lost on eth0');
  log(`attach-device + detach of a second NIC on net42: hp kept, pair kept, 0 pings lost to ${P42} (rounds ${r0}..${lastRound(g.hp!)})`);
});

step('a hot-plug that must fail (network "broken" has no underlay device): attach-interface fails with the hook reason, nothing left, the guest runs on', async (lab) => {
  const h1 = lab.host(1);
  const r = await h1.virsh('attach-interface', 'hp', 'network', 'broken', '--model', 'virtio', '--live');
  const msg = (r.stderr + r.stdout).trim();
  log(`attach-interface hp network broken: exit ${r.code}: ${msg.replace(/\s*\n\s*/g, ' | ')}`);
  assert.is.not(r.code, 0, 'the hot-plug must fail');
  assert.match(msg, /vxvirt:.*nosuchdev0/, 'the reason names the missing device');
  assert.is(await g.hp!.state(), 'running');
  await assertDevices(h1, PAIR42, 'after the failed hot-plug');
  assert.equal(await users(h1, 'broken'), {});
  assert.equal(await recordedNetworks(h1, g.hp!), ['net42']);
});

step("type='bridge' hot-plug onto vxbr42 runs no hook: status shows the drift, check warns naming the guest, reconcile records it; its stop then releases it", async (lab) => {
  const h1 = lab.host(1);
  await g.plain!.startOrThrow();
  await assertDevices(h1, [...PAIR42, ...PAIR43], 'with hp (VNI 42) and plain (VNI 43)');
  await virshOk(h1, 'attach-interface', 'plain', 'bridge', 'vxbr42', '--model', 'virtio', '--mac', HOTPLUG_MAC2, '--live');
  assert.is((await tapOf(h1, g.plain!, HOTPLUG_MAC2))?.master, 'vxbr42');
  assert.equal(await users(h1, 'net42'), { hp: [g.hp!.mac] }, 'no hook ran: plain is not a user of net42');
  const status = await h1.vxvirt('status');
  assert.match(status.stdout, /net42: .*plain.* not recorded/, `status shows plain as drift:\n${status.stdout}`);
  const check = await h1.vxvirt('check');
  const warn = check.stdout.split('\n').find((l) => /^WARN/.test(l) && l.includes('plain'));
  assert.ok(warn && /vxvirt reconcile/.test(check.stdout), `check warns about plain and says vxvirt reconcile:\n${check.stdout}`);
  log(`status: ${status.stdout.split('\n').find((l) => l.includes('plain') && l.includes('not recorded'))?.trim()}`);
  log(`check: ${warn}`);
  const rec = await vxvirt(h1, 'reconcile');
  log(`reconcile: ${rec.replace(/\n/g, ' | ')}`);
  assert.equal(Object.keys(await users(h1, 'net42')).sort(), ['hp', 'plain'], 'reconcile recorded plain on net42');
  assert.equal(await recordedNetworks(h1, g.plain!), ['net42', 'net43']);
  const after = await h1.vxvirt('status');
  assert.not.match(after.stdout, /not recorded/, `no drift left:\n${after.stdout}`);
  // hp goes first: vxbr42 must stay for plain, recorded now.
  await virshOk(h1, 'destroy', 'hp');
  await assertDevices(h1, [...PAIR42, ...PAIR43], 'after hp stopped: plain uses both');
  await virshOk(h1, 'destroy', 'plain');
  await assertDevices(h1, [], 'after plain stopped');
  assert.equal(await stateFiles(h1), [], 'no state left');
});

step('hot-plug then stop: hp with a NIC hot-plugged on net43 (and one unplugged before) is destroyed; both pairs and all state go', async (lab) => {
  const h1 = lab.host(1);
  await g.hp!.startOrThrow();
  await g.hp!.waitLine(/^VXLAB eth0 /, { timeoutMs: 60_000 });
  await virshOk(h1, 'attach-interface', 'hp', 'network', 'net42', '--model', 'virtio', '--mac', HOTPLUG_MAC2, '--live');
  await g.hp!.waitLine(/^VXLAB eth1 /, { timeoutMs: 30_000 });
  await virshOk(h1, 'detach-interface', 'hp', 'bridge', '--mac', HOTPLUG_MAC2, '--live');
  // The guest has let go of it (libvirt may return before): the next NIC is eth1 again.
  await waitFor('hp to lose its NIC on net42', async () => ((await tapOf(h1, g.hp!, HOTPLUG_MAC2)) ? undefined : true), { timeoutMs: 20_000 });
  assert.equal(await users(h1, 'net42'), { hp: [g.hp!.mac] });
  const mark = g.hp!.mark();
  await virshOk(h1, 'attach-interface', 'hp', 'network', 'net43', '--model', 'virtio', '--mac', HOTPLUG_MAC, '--live');
  await assertDevices(h1, [...PAIR42, ...PAIR43], 'hp with eth0 on vxbr42 and a hot-plugged NIC on net43');
  await g.hp!.waitLine(new RegExp(`^VXLAB eth1 .*mac ${HOTPLUG_MAC}`), { since: mark, timeoutMs: 30_000 });
  await waitAnswers(g.hp!, P43, lastRound(g.hp!), 2);
  await virshOk(h1, 'destroy', 'hp');
  await assertDevices(h1, [], 'after hp stopped');
  assert.equal(await stateFiles(h1), [], 'no state left');
});

for (const how of ['save/restore', 'managedsave/start'] as const) {
  step(`${how}: the pairs go with the saved guest and come back with it; records right throughout; pings after the restore`, async (lab) => {
    const h1 = lab.host(1);
    if ((await g.two!.state()) !== 'running') await g.two!.startOrThrow();
    await waitAnswers(g.two!, P42, 0, 2);
    await waitAnswers(g.two!, P43, 0, 2);
    const before = lastRound(g.two!);
    const file = join(h1.dir, 'var-lib-libvirt', 'images', 'two.save');
    rmSync(file, { force: true });
    const t = Date.now();
    if (how === 'save/restore') await virshOk(h1, 'save', 'two', file);
    else await virshOk(h1, 'managedsave', 'two');
    const saveMs = Date.now() - t;
    assert.is(await g.two!.state(), 'shut off');
    await assertDevices(h1, [], 'while two is saved');
    assert.equal(await stateFiles(h1), [], 'no users while two is saved');
    const t2 = Date.now();
    if (how === 'save/restore') await virshOk(h1, 'restore', file);
    else await virshOk(h1, 'start', 'two');
    const restoreMs = Date.now() - t2;
    assert.is(await g.two!.state(), 'running');
    await assertDevices(h1, [...PAIR42, ...PAIR43], 'after the restore');
    assert.equal(await users(h1, 'net42'), { two: [g.two!.mac] });
    assert.equal(await users(h1, 'net43'), { two: [g.two!.mac1] });
    assert.equal(await recordedNetworks(h1, g.two!), ['net42', 'net43']);
    const a42 = await waitAnswers(g.two!, P42, before, 3);
    const a43 = await waitAnswers(g.two!, P43, before, 3);
    log(`${how}: save ${saveMs} ms, restore ${restoreMs} ms; after it (rounds > ${before}) ${a42} answers from ${P42}, ${a43} from ${P43}; failed: ${lost(g.two!, P42, before)} / ${lost(g.two!, P43, before)}`);
    if (how === 'save/restore') rmSync(file, { force: true });
  });
}

step('host reboot: libvirtd started on an empty /run brings the autostarted guest back with its pairs; the guest that was not autostarted leaves nothing', async (lab) => {
  const h1 = lab.host(1);
  await virshOk(h1, 'autostart', 'two');
  if ((await g.two!.state()) !== 'running') await g.two!.startOrThrow();
  await g.plain!.startOrThrow(); // not autostarted
  await assertDevices(h1, [...PAIR42, ...PAIR43], 'before the reboot');
  // Power off: libvirtd and virtlogd stop, QEMUs die, every device the kernel had goes, /run is empty.
  const qemus = [h1.qemuPid('two'), h1.qemuPid('plain')].filter((p): p is number => p !== undefined);
  assert.is(qemus.length, 2, 'both guests have a QEMU');
  await h1.stopLibvirtd('SIGKILL');
  for (const p of qemus) process.kill(p, 'SIGKILL');
  const virtlogd = h1.pidOf('virtlogd');
  if (virtlogd) process.kill(virtlogd, 'SIGKILL');
  await waitFor('QEMUs and virtlogd to exit', () => [...qemus, ...(virtlogd ? [virtlogd] : [])].every((p) => !alive(p)) || undefined, { timeoutMs: 15_000, intervalMs: 50 });
  for (const dev of await h1.links()) if (/^(vx(br|lan)\d+|vnet\d+)$/.test(dev)) await h1.exec(['ip', 'link', 'del', dev]);
  // The console file goes too, so that all it holds afterwards is the new boot's (QEMU does not always append to it).
  rmSync(g.two!.serialPath, { force: true });
  const since = 0;
  const run = join(h1.dir, 'run');
  const wiped = readdirSync(run).filter((e) => e !== 'vxvirt-lab' && e !== 'lock');
  for (const e of wiped) rmSync(join(run, e), { recursive: true, force: true });
  await assertDevices(h1, [], 'after the power-off');
  const t = Date.now();
  await h1.startDaemons();
  await g.two!.waitState('running', 60_000);
  await waitFor('the pairs to be back', async () => ((await h1.vxDevices()).length === 4 ? true : undefined), { timeoutMs: 30_000 });
  await assertDevices(h1, [...PAIR42, ...PAIR43], 'after the reboot');
  assert.is(await g.plain!.state(), 'shut off', 'plain was not autostarted');
  assert.equal(Object.keys(await users(h1, 'net42')), ['two']);
  assert.equal(Object.keys(await users(h1, 'net43')), ['two']);
  assert.equal(await stateFiles(h1), [`./domains/${g.two!.uuid}.json`, './users/net42.json', './users/net43.json'].sort(), 'only two is recorded');
  await g.two!.waitLine(/^VXLAB boot /, { since, timeoutMs: 120_000 });
  const booted = Date.now() - t;
  const a42 = await g.two!.waitPingOk(P42, { since, count: 3, timeoutMs: 90_000 });
  const a43 = await g.two!.waitPingOk(P43, { since, count: 3, timeoutMs: 90_000 });
  log(`reboot: wiped ${h1.dir}/run (${wiped.join(' ')}); libvirtd autostarted two with vxbr42+vxbr43, its new boot on the console after ${booted} ms; plain shut off; two after its new boot: ${P42} ${a42.ok} ok / ${a42.fail} fail, ${P43} ${a43.ok} ok / ${a43.fail} fail`);
  await virshOk(h1, 'autostart', '--disable', 'two');
  await virshOk(h1, 'destroy', 'two');
  await assertDevices(h1, [], 'after two stopped');
  assert.equal(await stateFiles(h1), []);
});

test.run();
