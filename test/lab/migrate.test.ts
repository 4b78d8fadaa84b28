// Live migration (`virsh migrate --live`) between simulated hosts, with a
// guest on another host pinging the migrating one all along.
//
// Network demo, VNI 42, unicast peers: each of h1, h2, h3 floods to the other
// two (so h2 takes part whether or not it runs a guest). Guests:
//   mig   10.20.1.2   starts on h1, migrated h1 -> h2 -> h1 -> h2
//   keep  10.20.1.12  on h1 (keeps h1's pair during the first migrations)
//   ping  10.20.1.4   on h3, pings mig every 0.2 s (busybox ping -W 1: a lost
//                     answer is one failed round)
//   net   10.20.1.22  on h1, NIC on the libvirt network demo; migrated h1 -> h3
// Per libvirt's hooks documentation, a migration runs the destination's qemu
// hook with `migrate begin` (vxvirt prints nothing: the XML is kept), then
// `prepare begin` and `start begin` before QEMU is spawned there, and the
// source's `stopped end` and `release end` once the guest has left. So the
// destination must have the pair and record the guest before it lands, and
// the source must let go of the guest (and of the pair, if it was the last).
// A migration aborted after the destination prepared (memory copied at
// 1 MiB/s, `virsh domjobabort`) must leave the destination as it was.
import * as assert from 'uvu/assert';
import { readFileSync } from 'node:fs';
import { UNDERLAY_DEV, waitFor, type Guest, type Host } from './lab.ts';
import { labSuite, vxvirt, assertDevices, log } from './support.ts';

const { test, step } = labSuite('live migration', 'migrate', 3);
const PAIR42 = ['vxbr42', 'vxlan42'];
const MIG = '10.20.1.2';
/** Pings to the migrating guest that may fail across one migration (the guest pauses while its last pages and state move). */
const MAX_LOST = 5;
const g: Record<string, Guest> = {};
const lostPerMigration: number[] = [];

interface StatusRow {
  name: string;
  domains: Array<{ name: string }>;
  drift: Array<{ detail: string }>;
}

/** The domains `vxvirt status` records as users of network demo on `h`; asserts no drift. */
async function usersOfDemo(h: Host): Promise<string[]> {
  const rows = JSON.parse(await vxvirt(h, 'status', '--json')) as StatusRow[];
  const demo = rows.find((r) => r.name === 'demo');
  assert.ok(demo, `${h.name}: vxvirt status lists network demo`);
  assert.equal(demo!.drift.map((d) => d.detail), [], `${h.name}: no drift on network demo`);
  return demo!.domains.map((d) => d.name).sort();
}

/** The qemu hook calls libvirt logged for `domain` on `h` (util.hook debug lines), in order. */
function hookCalls(h: Host, domain: string): string[] {
  const text = readFileSync(h.logFile, 'utf8');
  return [...text.matchAll(new RegExp(`id=${domain} op=(\\S+) subop=(\\S+)`, 'g'))].map((m) => `${m[1]} ${m[2]}`);
}

/** The tap devices that are ports of vxbr42 on `h`. */
async function portsOfVxbr42(h: Host): Promise<string[]> {
  const out = (await h.exec(['bridge', 'link', 'show', 'master', 'vxbr42'])).stdout;
  return [...out.matchAll(/^\d+:\s+([^:@\s]+)/gm)].map((m) => m[1]!).filter((p) => p.startsWith('vnet'));
}

/**
 * `virsh migrate --live NAME` from `from` to `to`; checks the hook calls on
 * both sides, the pair and the records. Returns virsh's time and the calls.
 */
async function moveGuest(name: string, from: Host, to: Host): Promise<{ ms: number; dest: string[]; src: string[] }> {
  const destCalls = hookCalls(to, name).length;
  const srcCalls = hookCalls(from, name).length;
  const r = await from.virsh('migrate', '--live', name, `qemu+tcp://${to.ip}/system`);
  assert.is(r.code, 0, `virsh migrate --live ${name} ${from.name} -> ${to.name}: ${r.stderr}`);
  assert.ok((await to.domains('--state-running')).includes(name), `${name} runs on ${to.name} after the migration`);
  assert.not.ok((await from.domains('--state-running')).includes(name), `${name} no longer runs on ${from.name}`);

  // Destination: migrate, then prepare (the pair, the record) and start, before QEMU is spawned.
  const dest = hookCalls(to, name).slice(destCalls);
  assert.equal(dest.slice(0, 3), ['migrate begin', 'prepare begin', 'start begin'], `hook calls on ${to.name}: ${dest.join(', ')}`);
  await assertDevices(to, PAIR42, `on ${to.name}, where ${name} now runs`);
  assert.ok((await usersOfDemo(to)).includes(name), `${to.name} records ${name} as a user of demo`);
  const tap = (await to.virsh('domiflist', name)).stdout.split('\n').map((l) => l.trim().split(/\s+/)[0]).find((x) => x && /^vnet/.test(x));
  assert.ok(tap && (await portsOfVxbr42(to)).includes(tap), `${name}'s tap ${tap} is a port of vxbr42 on ${to.name}`);
  // Source: the guest is released once it has left.
  const src = hookCalls(from, name).slice(srcCalls);
  assert.ok(src.includes('release end'), `hook calls on ${from.name}: ${src.join(', ')}`);
  assert.not.ok((await usersOfDemo(from)).includes(name), `${from.name} no longer records ${name}`);
  log(`${name} ${from.name} -> ${to.name}: virsh migrate ${r.ms} ms; hook on ${to.name}: ${dest.join(', ')}; on ${from.name}: ${src.join(', ')}`);
  return { ms: r.ms, dest, src };
}

/** Migrate mig from `from` to `to` while ping pings it; asserts and returns the pings lost. */
async function migrate(from: Host, to: Host): Promise<number> {
  const ping = g.ping!;
  const since = ping.mark();
  await ping.waitPingOk(MIG, { since, count: 5 }); // pinging steadily before
  await moveGuest('mig', from, to);
  const after = ping.mark();
  await ping.waitPingOk(MIG, { since: after, count: 10 });
  const s = ping.pingStats(MIG, since);
  log(`  ping 10.20.1.4 -> ${MIG} from 5 answers before to 10 after: ${s.fail} lost, ${s.ok} answered`);
  lostPerMigration.push(s.fail);
  assert.ok(s.fail <= MAX_LOST, `pings lost across the migration ${from.name} -> ${to.name}: ${s.fail} (at most ${MAX_LOST})`);
  return s.fail;
}

step('define-network demo (VNI 42, unicast, each host floods to the other two) on h1, h2, h3; guests start; ping reaches mig', async (lab) => {
  const [h1, h2, h3] = [lab.host(1), lab.host(2), lab.host(3)];
  const define = (h: Host) =>
    vxvirt(h, 'define-network', 'demo', '--vni', '42', '--dev', UNDERLAY_DEV, '--local', h.ip, ...lab.hosts.filter((o) => o !== h).flatMap((o) => ['--remote', o.ip]));
  (await Promise.all(lab.hosts.map(define))).forEach((l, i) => log(`h${i + 1}: ${l}`));
  g.mig = h1.guest({ name: 'mig', addr: `${MIG}/24`, peers: ['10.20.1.4'], bridge: 'vxbr42', interval: 0.5 });
  g.keep = h1.guest({ name: 'keep', addr: '10.20.1.12/24', bridge: 'vxbr42', interval: 1 });
  g.ping = h3.guest({ name: 'ping', addr: '10.20.1.4/24', peers: [MIG], bridge: 'vxbr42', interval: 0.2 });
  // A NIC on the libvirt network define-network made: <interface type='network'><source network='demo'/>.
  g.net = h1.guest({ name: 'net', addr: '10.20.1.22/24', peers: ['10.20.1.4'], bridge: 'vxbr42', network: 'demo', interval: 0.5 });
  await Promise.all(Object.values(g).map((x) => x.define()));
  const results = await Promise.all(Object.values(g).map((x) => x.start()));
  results.forEach((r, i) => assert.is(r.code, 0, `virsh start ${Object.values(g)[i]!.name}: ${r.stderr}`));
  await assertDevices(h1, PAIR42, 'with mig, keep and net');
  await assertDevices(h2, [], 'with no guest');
  await assertDevices(h3, PAIR42, 'with ping');
  assert.equal(await usersOfDemo(h1), ['keep', 'mig', 'net']);
  const s = await g.ping!.waitPingOk(MIG, { count: 3, timeoutMs: 120_000 });
  log(`ping -> mig on h1: ${s.ok} ok / ${s.fail} fail (boot included)`);
  assert.is(new Set(lab.hosts.map((h) => h.uuid)).size, 3, 'each host has its own host UUID');
  const caps = (await h1.virsh('capabilities')).stdout;
  assert.match(caps, new RegExp(`<uuid>${h1.uuid}</uuid>`), "h1's libvirt reports the host UUID the lab gave it");
});

step('a destination without the network cannot take the guest: the migration fails, mig runs on where it was', async (lab) => {
  const [h1, h2] = [lab.host(1), lab.host(2)];
  await vxvirt(h2, 'undefine-network', 'demo');
  try {
    const since = g.ping!.mark();
    const r = await h1.virsh('migrate', '--live', 'mig', `qemu+tcp://${h2.ip}/system`);
    const msg = (r.stderr + r.stdout).trim().replace(/\s*\n\s*/g, ' | ');
    log(`virsh migrate --live mig to h2 without network demo: exit ${r.code}: ${msg}`);
    assert.is.not(r.code, 0, 'the migration must fail');
    assert.match(msg, /vxbr42/, 'the error names the missing bridge');
    assert.ok((await h1.domains('--state-running')).includes('mig'), 'mig still runs on h1');
    assert.equal(await h2.domains('--all'), [], 'nothing left on h2');
    await assertDevices(h2, [], 'after the refused migration');
    assert.equal(await usersOfDemo(h1), ['keep', 'mig', 'net'], 'h1 still records its guests');
    await g.ping!.waitPingOk(MIG, { since, count: 3 });
  } finally {
    const out = await vxvirt(h2, 'define-network', 'demo', '--vni', '42', '--dev', UNDERLAY_DEV, '--local', h2.ip, '--remote', h1.ip, '--remote', lab.host(3).ip);
    log(`h2: ${out}`);
  }
});

step('a migration aborted while memory is copied: the destination lets the guest go (no pair, no record), it runs on at the source', async (lab) => {
  const [h1, h2] = [lab.host(1), lab.host(2)];
  const before = hookCalls(h2, 'mig').length;
  const since = g.ping!.mark();
  // 1 MiB/s: the copy takes long enough to abort it once the destination is ready.
  const migration = h1.virsh('migrate', '--live', '--bandwidth', '1', 'mig', `qemu+tcp://${h2.ip}/system`);
  await waitFor("h2's hook to have prepared and started the incoming mig", () => hookCalls(h2, 'mig').slice(before).includes('start begin') || undefined, { timeoutMs: 60_000, intervalMs: 100 });
  await waitFor('the incoming mig to be listed on h2', async () => (await h2.domains('--all')).includes('mig') || undefined, { timeoutMs: 30_000, intervalMs: 100 });
  await assertDevices(h2, PAIR42, 'while mig is copied to it');
  assert.equal(await usersOfDemo(h2), ['mig'], 'h2 records the incoming mig');
  const abort = await h1.virsh('domjobabort', 'mig');
  assert.is(abort.code, 0, `virsh domjobabort mig: ${abort.stderr}`);
  const r = await migration;
  log(`virsh migrate --live --bandwidth 1 aborted after ${r.ms} ms: exit ${r.code}: ${(r.stderr + r.stdout).trim().replace(/\s*\n\s*/g, ' | ')}`);
  assert.is.not(r.code, 0, 'the aborted migration fails');
  const calls = hookCalls(h2, 'mig').slice(before);
  log(`  hook on h2: ${calls.join(', ')}`);
  assert.ok(calls.includes('release end'), `h2's hook released mig: ${calls.join(', ')}`);
  await waitFor('h2 to forget mig', async () => (await h2.domains('--all')).length === 0 || undefined, { timeoutMs: 30_000, intervalMs: 100 });
  await assertDevices(h2, [], 'after the aborted migration');
  assert.equal(await usersOfDemo(h2), [], 'h2 records nobody');
  assert.ok((await h1.domains('--state-running')).includes('mig'), 'mig runs on h1');
  assert.equal(await usersOfDemo(h1), ['keep', 'mig', 'net'], 'h1 still records its guests');
  await assertDevices(h1, PAIR42, 'where the guests run');
  const after = g.ping!.mark();
  await g.ping!.waitPingOk(MIG, { since: after, count: 3 });
  const s = g.ping!.pingStats(MIG, since);
  log(`  ping -> mig across the aborted migration: ${s.ok} ok / ${s.fail} fail`);
});

step("a guest on the libvirt network (<interface type='network'>) migrates h1 -> h3: h3 records it; it keeps reaching 10.20.1.4", async (lab) => {
  const [h1, h3] = [lab.host(1), lab.host(3)];
  await g.net!.waitPingOk('10.20.1.4', { count: 2 });
  await moveGuest('net', h1, h3);
  const live = (await h3.virsh('dumpxml', 'net')).stdout;
  assert.match(live, /<source network='demo'[^>]*bridge='vxbr42'/, `net's NIC on h3 is on network demo / vxbr42:\n${live}`);
  assert.equal(await usersOfDemo(h3), ['net', 'ping'], 'h3 records net and ping');
  assert.equal(await usersOfDemo(h1), ['keep', 'mig'], 'h1 records keep and mig');
  const since = g.net!.mark();
  const s = await g.net!.waitPingOk('10.20.1.4', { since, count: 3 });
  log(`net -> 10.20.1.4 after the migration: ${s.ok} ok / ${s.fail} fail`);
});

step('migrate h1 -> h2 while keep stays on h1: h2 gets the pair and records mig; h1 keeps its pair for keep', async (lab) => {
  const [h1, h2] = [lab.host(1), lab.host(2)];
  await migrate(h1, h2);
  await assertDevices(h1, PAIR42, 'where keep still runs');
  assert.equal(await usersOfDemo(h1), ['keep'], 'h1 records only keep');
  assert.equal(await usersOfDemo(h2), ['mig'], 'h2 records mig');
  const since = g.mig!.mark();
  await g.mig!.waitPingOk('10.20.1.4', { since, count: 2 });
});

step('migrate h2 -> h1 (where keep runs): h2 loses its pair with its last guest; h1 records mig again', async (lab) => {
  const [h1, h2] = [lab.host(1), lab.host(2)];
  await migrate(h2, h1);
  await assertDevices(h2, [], 'after its last guest left');
  assert.equal(await usersOfDemo(h2), [], 'h2 records nobody');
  assert.equal(await usersOfDemo(h1), ['keep', 'mig'], 'h1 records both again');
});

step('keep destroyed, migrate h1 -> h2: h1 loses its pair with its last guest; h2 has it', async (lab) => {
  const [h1, h2] = [lab.host(1), lab.host(2)];
  const r = await g.keep!.destroy();
  assert.is(r.code, 0, r.stderr);
  await assertDevices(h1, PAIR42, 'while mig still runs');
  await migrate(h1, h2);
  await assertDevices(h1, [], 'after its last guest left');
  assert.equal(await usersOfDemo(h1), [], 'h1 records nobody');
  assert.equal(await usersOfDemo(h2), ['mig'], 'h2 records mig');
  log(`pings lost per migration: ${lostPerMigration.join(', ')} (bound ${MAX_LOST}, one ping every 0.2 s)`);
});

step('virsh destroy of mig on h2, of net and ping on h3: every pair is gone, nothing recorded', async (lab) => {
  const [h2, h3] = [lab.host(2), lab.host(3)];
  const rs = await Promise.all([h2.virsh('destroy', 'mig'), h3.virsh('destroy', 'net'), g.ping!.destroy()]);
  for (const r of rs) assert.is(r.code, 0, r.stderr);
  for (const h of lab.hosts) {
    await assertDevices(h, [], 'with no guest');
    assert.equal(await usersOfDemo(h), [], `${h.name} records nobody`);
    assert.equal(await h.domains('--state-running'), [], `${h.name} runs no guest`);
  }
  // mig stays defined (shut off) on h1, where it was defined; h2 only ever ran it.
  assert.equal((await lab.host(1).domains('--all')).sort(), ['keep', 'mig', 'net']);
  assert.equal(await h2.domains('--all'), []);
  assert.equal(await h3.domains('--all'), ['ping']);
});

test.run();
