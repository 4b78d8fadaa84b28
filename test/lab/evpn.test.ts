// BGP EVPN at fleet scale: four hosts, each running FRR (zebra + bgpd in its
// namespace, configured by `vxvirt frr-config`), a route reflector in a fifth
// namespace (`vxlab-<lab>-rr`, 192.168.8.99, configured by `vxvirt
// frr-config --reflector-for`), and one file applied by `vxvirt apply` on all
// four, with no per-host --local (frr-config and check also without it):
//   ev  VNI 42   --evpn                        guests a (h1) 10.20.1.2, b (h2) .3,
//                                              mig (h2) .5, c (h3) .4
//   uc  VNI 101  --remote h1 h2 h3 h4 (all)    eth1 of a, b, c: 10.30.1.2, .3, .4
// h4 runs no guest until mig is live-migrated to it.
// The file is what `vxvirt list-networks --json` prints for the two
// definitions made once elsewhere (a scratch config dir).
//
// What is shown: the guests ping each other over EVPN; each host's fdb on
// vxlan42 has one flood entry per other host with guests on VNI 42 and the
// remote guests' MACs as extern_learn (BGP), and nothing learned from
// traffic; ARP for a remote guest is answered by the local bridge
// (neigh_suppress: the underlay carries no ARP request for it, counted by an
// nft rule on the underlay switch, beside a positive control); a live
// migration h2 -> h4 (MAC mobility) and the pings lost across it; a host
// whose last guest stops withdraws its VTEP and MACs from the others (timed).
import * as assert from 'uvu/assert';
import { join } from 'node:path';
import { writeFileSync } from 'node:fs';
import { UNDERLAY_DEV, REPO, run, sleep, waitFor, type Guest, type Host, type Lab, type Router } from './lab.ts';
import { labSuite, vxvirt, assertDevices, log, waitAllPing } from './support.ts';
import { Frr, hostFrr, routerFrr } from './frr.ts';

const { test, step } = labSuite('BGP EVPN through FRR, one file on four hosts', 'evpn', 4);
const ASN = '65000';
const RR_IP = '192.168.8.99';
const PAIR42 = ['vxbr42', 'vxlan42'];
const g: Record<string, Guest> = {};
/** Where each guest runs now (mig moves). */
const where = new Map<string, Host>();
const hostOf = (x: Guest): Host => where.get(x.name) ?? x.host;
const frr = new Map<string, Frr>();
let rr: Router;
let rrFrr: Frr;
/** Pings to the migrating guest that may be lost across one migration. */
const MAX_LOST = 10;

interface FdbEntry {
  mac: string;
  ifname?: string;
  dst?: string;
  master?: string;
  flags?: string[];
  state?: string;
}

async function fdb(h: Host, dev = 'vxlan42'): Promise<FdbEntry[]> {
  const r = await h.exec(['bridge', '-j', 'fdb', 'show', 'dev', dev]);
  if (r.code !== 0) return [];
  return JSON.parse(r.stdout || '[]') as FdbEntry[];
}

const floodDsts = (entries: FdbEntry[]): string[] => entries.filter((e) => e.mac === '00:00:00:00:00:00' && e.dst).map((e) => e.dst!).sort();
/** The VTEP a remote MAC is reached at (its extern_learn entry with a dst), if any. */
const remoteAt = (entries: FdbEntry[], mac: string): string | undefined =>
  entries.find((e) => e.mac === mac && e.dst && e.flags?.includes('extern_learn'))?.dst;
/** Entries learned from traffic: neither permanent nor installed by FRR (extern_learn). */
const learnedByFlooding = (entries: FdbEntry[]): FdbEntry[] => entries.filter((e) => e.state !== 'permanent' && !e.flags?.includes('extern_learn'));

const hostsWith = (lab: Lab, ...names: string[]): Host[] => lab.hosts.filter((h) => names.some((n) => g[n] && hostOf(g[n]!) === h));

step('FRR on four hosts and a route reflector, configured by vxvirt frr-config; one file applied by vxvirt apply on all four', async (lab) => {
  // The file: two definitions made once in a scratch config dir, as list-networks --json prints them.
  const scratch = { VXVIRT_CONFIG_DIR: join(lab.dir, 'scratch-etc') };
  const h1 = lab.host(1);
  const mk = async (...args: string[]) => {
    const r = await h1.exec([process.execPath, join(REPO, 'dist', 'cli.js'), ...args], { extraEnv: scratch });
    assert.is(r.code, 0, `vxvirt ${args.join(' ')} (scratch): ${r.stderr}`);
    return r.stdout;
  };
  await mk('define-network', 'ev', '--vni', '42', '--dev', UNDERLAY_DEV, '--evpn', '--no-libvirt');
  await mk('define-network', 'uc', '--vni', '101', '--dev', UNDERLAY_DEV, '--no-libvirt', ...lab.hosts.flatMap((h) => ['--remote', h.ip]));
  const file = join(lab.dir, 'networks.json');
  writeFileSync(file, await mk('list-networks', '--json'));
  const applied = await Promise.all(lab.hosts.map((h) => vxvirt(h, 'apply', file)));
  applied.forEach((o, i) => log(`h${i + 1}: vxvirt apply: ${o.replace(/\n/g, ' | ')}`));
  const again = await vxvirt(lab.host(4), 'apply', file);
  log(`h4: vxvirt apply again: ${again}`);

  // FRR: a route reflector for the underlay's /24, and every host its client.
  rr = await lab.addRouter('rr', RR_IP);
  const rrConf = await run(['ip', 'netns', 'exec', rr.netns, process.execPath, join(REPO, 'dist', 'cli.js'), 'frr-config', '--asn', ASN, '--local', RR_IP, '--reflector-for', '192.168.8.0/24'], {
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', VXVIRT_CONFIG_DIR: join(rr.dir, 'etc'), VXVIRT_STATE_DIR: join(rr.dir, 'state') },
  });
  assert.is(rrConf.code, 0, `vxvirt frr-config --reflector-for on the route reflector: ${rrConf.stderr}`);
  rrFrr = routerFrr(rr);
  await rrFrr.start(`hostname rr\n${rrConf.stdout}`);
  await Promise.all(
    lab.hosts.map(async (h) => {
      const conf = await vxvirt(h, 'frr-config', '--asn', ASN, '--route-reflector', RR_IP);
      assert.match(conf, new RegExp(`bgp router-id ${h.ip.replace(/\./g, '\\.')}`), `${h.name}: router-id is its own underlay address`);
      const f = hostFrr(h);
      frr.set(h.name, f);
      await f.start(`hostname ${h.name}\n${conf}`);
    }),
  );
  const t = Date.now();
  const peers = await waitFor('the route reflector to have an established EVPN session with each host', async () => {
    const p = await rrFrr.establishedEvpnPeers();
    return p.length === 4 ? p : undefined;
  }, { timeoutMs: 60_000, intervalMs: 250 });
  log(`route reflector: sessions with ${peers.join(', ')} established ${Date.now() - t} ms after the last FRR started`);
  assert.equal(peers, lab.hosts.map((h) => h.ip).sort());
  for (const h of lab.hosts) await assertDevices(h, [], 'before any guest');
});

step('guests start on h1, h2, h3; each host makes its pairs from the same file: its own local address, uc flooding to the others but not itself', async (lab) => {
  const [h1, h2, h3] = [lab.host(1), lab.host(2), lab.host(3)];
  const second = (n: number) => ({ addr: `10.30.1.${n}/24`, bridge: 'vxbr101' });
  g.a = h1.guest({ name: 'a', addr: '10.20.1.2/24', peers: ['10.20.1.3', '10.20.1.4', '10.20.1.5', '10.30.1.3'], bridge: 'vxbr42', second: second(2), interval: 0.2 });
  g.b = h2.guest({ name: 'b', addr: '10.20.1.3/24', peers: ['10.20.1.2', '10.20.1.4'], bridge: 'vxbr42', second: second(3), interval: 0.5 });
  g.c = h3.guest({ name: 'c', addr: '10.20.1.4/24', peers: ['10.20.1.2', '10.20.1.3', '10.30.1.2'], bridge: 'vxbr42', second: second(4), interval: 0.5 });
  g.mig = h2.guest({ name: 'mig', addr: '10.20.1.5/24', peers: ['10.20.1.2'], bridge: 'vxbr42', interval: 0.5 });
  await Promise.all(Object.values(g).map((x) => x.define()));
  const rs = await Promise.all(Object.values(g).map((x) => x.start()));
  rs.forEach((r, i) => assert.is(r.code, 0, `virsh start ${Object.values(g)[i]!.name}: ${r.stderr}`));
  for (const h of [h1, h2, h3]) {
    await assertDevices(h, [...PAIR42, 'vxbr101', 'vxlan101'], 'with guests on ev and uc');
    const vx = await h.linkDetails('vxlan42');
    assert.match(vx, new RegExp(`local ${h.ip.replace(/\./g, '\\.')} `), `${h.name}: vxlan42's local address is its own:\n${vx}`);
    assert.match(vx, /nolearning/, `${h.name}: vxlan42 learns nothing from traffic:\n${vx}`);
    const info = (JSON.parse((await h.exec(['ip', '-d', '-j', 'link', 'show', 'dev', 'vxlan42'], { check: true })).stdout) as Array<{ linkinfo?: { info_data?: Record<string, unknown> } }>)[0]?.linkinfo?.info_data ?? {};
    assert.equal(['remote', 'remote6', 'group', 'group6'].filter((k) => k in info), [], `${h.name}: vxlan42 has no remote and no group: ${JSON.stringify(info)}`);
    const port = JSON.parse((await h.exec(['bridge', '-d', '-j', 'link', 'show', 'dev', 'vxlan42'], { check: true })).stdout) as Array<{ learning?: boolean; neigh_suppress?: boolean }>;
    assert.is(port[0]?.learning, false, `${h.name}: vxlan42 port learning off`);
    assert.is(port[0]?.neigh_suppress, true, `${h.name}: vxlan42 port neigh_suppress on`);
    const arpAccept = (await h.exec(['cat', '/proc/sys/net/ipv4/conf/vxbr42/arp_accept'])).stdout.trim();
    assert.is(arpAccept, '1', `${h.name}: vxbr42 arp_accept`);
    const uc = await h.linkDetails('vxlan101');
    assert.match(uc, new RegExp(`local ${h.ip.replace(/\./g, '\\.')} `), `${h.name}: vxlan101's local address is its own:\n${uc}`);
    const ucFlood = floodDsts(await fdb(h, 'vxlan101'));
    assert.equal(ucFlood, lab.hosts.filter((o) => o !== h).map((o) => o.ip).sort(), `${h.name}: uc floods to the other three, not to itself`);
    log(`${h.name}: vxlan42 local ${h.ip}, nolearning, port learning off + neigh_suppress on; vxlan101 floods to ${ucFlood.join(' ')}`);
  }
  await assertDevices(lab.host(4), [], 'with no guest');
});

step('guests ping each other over EVPN; fdb: one flood entry per other host with guests, remote guests extern_learn, nothing learned by flooding; vxvirt check', async (lab) => {
  const evGuests = [g.a!, g.b!, g.c!];
  (await waitAllPing(evGuests, (x) => x.spec.peers!.filter((p) => p.startsWith('10.20.')), { count: 3, timeoutMs: 180_000 })).forEach((l) => log(l));
  await g.a!.waitPingOk('10.30.1.3', { count: 2, timeoutMs: 60_000 });
  await g.c!.waitPingOk('10.30.1.2', { count: 2, timeoutMs: 60_000 });
  log('uc (VNI 101, head-end): a -> 10.30.1.3 and c -> 10.30.1.2 answered');
  const withGuests = hostsWith(lab, 'a', 'b', 'c', 'mig');
  for (const h of withGuests) {
    const want = withGuests.filter((o) => o !== h).map((o) => o.ip).sort();
    const entries = await waitFor(`${h.name}: every remote guest's MAC as extern_learn`, async () => {
      const e = await fdb(h);
      const remote = Object.values(g).filter((x) => hostOf(x) !== h);
      return remote.every((x) => remoteAt(e, x.mac) === hostOf(x).ip) ? e : undefined;
    }, { timeoutMs: 30_000, intervalMs: 250 });
    assert.equal(floodDsts(entries), want, `${h.name}: one flood entry per other host with guests on VNI 42 (not h4)`);
    assert.equal(learnedByFlooding(entries), [], `${h.name}: nothing on vxlan42 learned from traffic`);
    const macs = Object.values(g).filter((x) => hostOf(x) !== h).map((x) => `${x.name}@${remoteAt(entries, x.mac)}`);
    log(`${h.name}: flood to ${floodDsts(entries).join(' ')}; extern_learn ${macs.join(' ')}`);
  }
  const check = await lab.host(1).vxvirt('check', '--frr-pathspace', 'h1');
  log(`h1: vxvirt check: exit ${check.code}: ${(check.stdout + check.stderr).trim().replace(/\n/g, ' | ')}`);
  assert.is(check.code, 0, 'vxvirt check on h1 (bgpd established, VNI 42 known to zebra)');
});

/** An nft rule on the underlay switch counting VXLAN-carried ARP requests (broadcast) per target address. */
async function countArp(lab: Lab, targets: string[]): Promise<() => Promise<Map<string, number>>> {
  const hex = (ip: string) => `0x${ip.split('.').map((o) => Number(o).toString(16).padStart(2, '0')).join('')}`;
  // Offsets from the UDP header: 8 (UDP) + 8 (VXLAN) = the inner Ethernet frame at bit 128;
  // its type at bit 224; the ARP opcode at bit 288; the target address at bit 432.
  const rules = targets.map((t) => `  udp dport 4789 @th,128,48 0xffffffffffff @th,224,16 0x0806 @th,288,16 1 @th,432,32 ${hex(t)} counter comment "${t}"`);
  const conf = `table bridge vxlab_arp {\n chain arpcount {\n  type filter hook forward priority 0; policy accept;\n${rules.join('\n')}\n }\n}\n`;
  const r = await run(['ip', 'netns', 'exec', lab.switchNs, 'nft', '-f', '-'], { input: conf });
  assert.is(r.code, 0, `nft on the underlay switch: ${r.stderr}`);
  return async () => {
    const out = await run(['ip', 'netns', 'exec', lab.switchNs, 'nft', '-j', 'list', 'table', 'bridge', 'vxlab_arp'], { check: true });
    const counts = new Map<string, number>();
    for (const item of (JSON.parse(out.stdout) as { nftables: Array<{ rule?: { comment?: string; expr: Array<{ counter?: { packets: number } }> } }> }).nftables) {
      if (!item.rule?.comment) continue;
      counts.set(item.rule.comment, item.rule.expr.find((e) => e.counter)?.counter?.packets ?? 0);
    }
    return counts;
  };
}

step('ARP for a remote guest is answered on the local host (neigh_suppress): no ARP request for it crosses the underlay; one for an unknown address does', async (lab) => {
  const h1 = lab.host(1);
  // A stand-in on h1's vxbr42 that has never ARPed: a veth whose far end has 10.20.1.250.
  await h1.sh('ip link add arpq type veth peer name arpq-br && ip link set arpq-br master vxbr42 up && ip addr add 10.20.1.250/24 dev arpq && ip link set arpq up', { check: true });
  try {
    const neigh = (await h1.exec(['ip', 'neigh', 'show', 'dev', 'vxbr42'])).stdout;
    log(`h1: ip neigh show dev vxbr42: ${neigh.trim().replace(/\n/g, ' | ')}`);
    assert.match(neigh, /10\.20\.1\.3 .*lladdr/, `h1 knows b's IP<->MAC from BGP:\n${neigh}`);
    const read = await countArp(lab, ['10.20.1.3', '10.20.1.99']);
    // ARP for b (remote, known): the bridge answers; ping then goes unicast.
    const ping = await h1.exec(['ping', '-c', '3', '-i', '0.3', '-W', '2', '-I', 'arpq', '10.20.1.3']);
    const arp = (await h1.exec(['ip', 'neigh', 'show', '10.20.1.3', 'dev', 'arpq'])).stdout.trim();
    // ARP for nobody: flooded to every VTEP (the positive control of the counter).
    await h1.exec(['ping', '-c', '2', '-W', '1', '-I', 'arpq', '10.20.1.99']);
    await sleep(300);
    const counts = await read();
    log(`h1's stand-in pinged b (${/(\d+) packets transmitted/.exec(ping.stdout)?.[1] ?? '?'} sent); its ARP entry for b: ${arp}`);
    log(`ARP requests seen on the underlay: for b (10.20.1.3) ${counts.get('10.20.1.3')}, for 10.20.1.99 (nobody) ${counts.get('10.20.1.99')}`);
    assert.match(arp, /lladdr \S+/, 'the stand-in got an ARP answer for b');
    assert.ok((counts.get('10.20.1.99') ?? 0) >= 2, `an ARP request for an unknown address is flooded over the underlay (seen ${counts.get('10.20.1.99')})`);
    assert.is(counts.get('10.20.1.3'), 0, 'no ARP request for b crossed the underlay');
  } finally {
    await h1.exec(['ip', 'link', 'del', 'arpq']);
    await run(['ip', 'netns', 'exec', lab.switchNs, 'nft', 'delete', 'table', 'bridge', 'vxlab_arp']);
  }
});

step('mig live-migrates h2 -> h4 (MAC mobility): h4 joins VNI 42 with its own local address, every host reaches mig at h4; pings lost counted', async (lab) => {
  const [h2, h4] = [lab.host(2), lab.host(4)];
  const a = g.a!;
  const since = a.mark();
  await a.waitPingOk('10.20.1.5', { since, count: 5 });
  const r = await h2.virsh('migrate', '--live', 'mig', `qemu+tcp://${h4.ip}/system`);
  assert.is(r.code, 0, `virsh migrate --live mig h2 -> h4: ${r.stderr}`);
  const migrated = Date.now();
  log(`virsh migrate --live mig h2 -> h4: ${r.ms} ms`);
  where.set('mig', h4);
  await assertDevices(h4, PAIR42, 'where mig now runs');
  const vx = await h4.linkDetails('vxlan42');
  assert.match(vx, new RegExp(`local ${h4.ip.replace(/\./g, '\\.')} `), `h4: vxlan42's local address is its own:\n${vx}`);
  const mac = g.mig!.mac;
  const at = await Promise.all(
    [lab.host(1), h2, lab.host(3)].map(async (h) => {
      const ms = await waitFor(`${h.name}: mig's MAC at h4`, async () => (remoteAt(await fdb(h), mac) === h4.ip ? Date.now() - migrated : undefined), { timeoutMs: 30_000, intervalMs: 100 });
      return `${h.name} ${ms} ms`;
    }),
  );
  log(`mig's MAC moved to h4 (extern_learn dst ${h4.ip}) after virsh returned: ${at.join(', ')}`);
  const onH2 = (JSON.parse((await h2.exec(['bridge', '-j', 'fdb', 'show', 'br', 'vxbr42'], { check: true })).stdout) as FdbEntry[]).filter((e) => e.mac === mac && e.ifname !== 'vxlan42');
  assert.equal(onH2, [], "h2 has mig's MAC on no port but vxlan42");
  for (const h of [lab.host(1), h2, lab.host(3)]) {
    assert.ok(floodDsts(await fdb(h)).includes(h4.ip), `${h.name} floods to h4 now that it has a guest on VNI 42`);
  }
  const after = a.mark();
  await a.waitPingOk('10.20.1.5', { since: after, count: 10 });
  const s = a.pingStats('10.20.1.5', since);
  log(`a (h1) -> mig, one ping every 0.2 s, from 5 answers before the migration to 10 after: ${s.fail} lost, ${s.ok} answered`);
  assert.ok(s.fail <= MAX_LOST, `pings lost across the migration: ${s.fail} (at most ${MAX_LOST})`);
});

step("c, h3's last guest on VNI 42, stops: h3 withdraws; every other host drops its flood entry for h3 and c's MAC within seconds (timed)", async (lab) => {
  const h3 = lab.host(3);
  const others = lab.hosts.filter((h) => h !== h3);
  const t = Date.now();
  const r = await g.c!.destroy();
  assert.is(r.code, 0, `virsh destroy c: ${r.stderr}`);
  const destroyed = Date.now();
  await assertDevices(h3, [], 'after its last guest stopped');
  const times = await Promise.all(
    others.map(async (h) => {
      const ms = await waitFor(`${h.name} to drop h3's flood entry and c's MAC`, async () => {
        const e = await fdb(h);
        return !floodDsts(e).includes(h3.ip) && !e.some((x) => x.mac === g.c!.mac) ? Date.now() - t : undefined;
      }, { timeoutMs: 20_000, intervalMs: 50 });
      return [h.name, ms] as const;
    }),
  );
  log(`virsh destroy c: ${destroyed - t} ms; h3's flood entry and c's MAC gone from ${times.map(([n, ms]) => `${n} ${ms} ms`).join(', ')} after the destroy began (${times.map(([n, ms]) => `${n} ${ms - (destroyed - t)}`).join(', ')} ms after virsh destroy returned)`);
  for (const [n, ms] of times) assert.ok(ms < 10_000, `${n} dropped h3 within 10 s (${ms} ms)`);
  for (const h of others) assert.equal(learnedByFlooding(await fdb(h)), [], `${h.name}: still nothing learned by flooding`);
  await g.a!.waitPingOk('10.20.1.3', { since: g.a!.mark(), count: 2 });
});

step('every guest destroyed: no pair, no flood entry left on any host; FRR stopped by PID', async (lab) => {
  const rs = await Promise.all([g.a!.destroy(), g.b!.destroy(), lab.host(4).virsh('destroy', 'mig')]);
  for (const r of rs) assert.is(r.code, 0, r.stderr);
  for (const h of lab.hosts) await assertDevices(h, [], 'with no guest');
  const stopped = [...frr.values(), rrFrr].map((f) => {
    const pids = f.pids();
    f.stopSync();
    return `${f.name} ${pids.join('+')}`;
  });
  log(`FRR stopped: ${stopped.join(', ')}`);
  for (const f of [...frr.values(), rrFrr]) assert.equal(f.pids(), [], `${f.name}: no FRR daemon left`);
});

test.run();
