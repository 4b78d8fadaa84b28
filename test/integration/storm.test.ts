// Many guests starting and stopping at once on one host, as libvirtd runs
// them: real hook processes in parallel over six networks (point-to-point,
// multicast and unicast peers), each guest's tap plugged into its bridge
// between prepare and release. The host lock must make this safe: every
// prepare succeeds, every tap finds its bridge (with the VXLAN device on it)
// and keeps it until the guest stops, and when the last guest is gone
// nothing is left: no devices, no users, no state files.
import { spawn } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { bridgeNic, domainXml, networkNic, TestHost, type IpLink, type Result } from '../support/netns.ts';

const NETWORKS: Array<{ name: string; vni: number; flags: string[] }> = [
  { name: 'p2p-a', vni: 101, flags: ['--remote', '192.168.8.101'] },
  { name: 'p2p-b', vni: 102, flags: ['--local', '192.168.8.100', '--remote', '192.168.8.102'] },
  { name: 'mc-a', vni: 103, flags: ['--group', '239.1.1.3'] },
  { name: 'mc-b', vni: 104, flags: ['--group', '239.1.1.4', '--ttl', '4'] },
  { name: 'uc-a', vni: 105, flags: ['--local', '192.168.8.100', '--remote', '192.168.8.101', '--remote', '192.168.8.102'] },
  { name: 'uc-b', vni: 106, flags: ['--remote', '192.168.8.101', '--remote', '192.168.8.102', '--remote', '192.168.8.103'] },
];
const DOMAINS = 48;
const ROUNDS = 3;
const WORKERS = 10;
const MAX_PAUSE_MS = 40;

interface Guest {
  index: number;
  name: string;
  /** The domain XML libvirt hands to prepare (a NIC may name a libvirt network). */
  xml: string;
  /** The live XML libvirt hands to release: a network NIC then also names its bridge. */
  liveXml: string;
  vnis: number[];
}

/** Guest i is on network i mod 6; every third guest also on the next one; odd guests name the libvirt network, even ones the bridge. */
function guest(index: number): Guest {
  const nets = [NETWORKS[index % NETWORKS.length], ...(index % 3 === 0 ? [NETWORKS[(index + 1) % NETWORKS.length]] : [])].map((n) => n!);
  const mac = (k: number) => `52:54:00:00:${index.toString(16).padStart(2, '0')}:${k.toString(16).padStart(2, '0')}`;
  const byNetwork = index % 2 === 1;
  const nics = nets.map((n, k) => (byNetwork ? networkNic(n.name) : bridgeNic(`vxbr${n.vni}`, mac(k))));
  const liveNics = nets.map((n, k) =>
    byNetwork
      ? `    <interface type='bridge'>\n      <mac address='${mac(k)}'/>\n      <source network='${n.name}' portid='0000000${k}' bridge='vxbr${n.vni}'/>\n      <model type='virtio'/>\n    </interface>`
      : bridgeNic(`vxbr${n.vni}`, mac(k)),
  );
  const name = `storm-${index}`;
  const uuid = `00000000-0000-4000-8000-${String(index).padStart(12, '0')}`;
  return { index, name, xml: domainXml(name, uuid, nics.join('\n')), liveXml: domainXml(name, uuid, liveNics.join('\n')), vnis: nets.map((n) => n.vni) };
}

/** A command in the background (libvirtd plugs taps while other hooks run). */
function run(cmd: string, args: readonly string[]): Promise<Result> {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('close', (status) => resolve({ status: status ?? -1, stdout, stderr }));
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Every *.json file under `dir`, however the state directory is laid out. */
function jsonFilesUnder(dir: string): string[] {
  if (!existsSync(dir)) return [];
  const out: string[] = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, e.name);
    if (e.isDirectory()) out.push(...jsonFilesUnder(path));
    else if (e.name.endsWith('.json')) out.push(path);
  }
  return out;
}

interface Tally {
  prepares: number;
  attaches: number;
  releases: number;
  failures: string[];
}

/** One start/stop of a guest as libvirt drives it: prepare, plug taps, run a while, unplug, release. */
async function cycle(host: TestHost, g: Guest, round: number, tally: Tally): Promise<void> {
  const fail = (what: string, r: Result) => tally.failures.push(`${g.name} round ${round}: ${what}: exit ${r.status}: ${(r.stderr || r.stdout).trim()}`);
  const prepared = await host.hookAsync(g.name, 'prepare', 'begin', g.xml);
  tally.prepares++;
  if (prepared.status !== 0 || prepared.stderr !== '') fail('prepare', prepared);

  // libvirt creates a tap per NIC and enslaves it to the bridge: that fails if the bridge is gone.
  const taps: string[] = [];
  for (const [k, vni] of g.vnis.entries()) {
    const tap = `st${g.index}n${k}`;
    const add = await run('ip', ['-n', host.ns, 'link', 'add', tap, 'type', 'veth', 'peer', 'name', `${tap}p`]);
    if (add.status !== 0) {
      fail(`create ${tap}`, add);
      continue;
    }
    taps.push(tap);
    const plug = await run('ip', ['-n', host.ns, 'link', 'set', tap, 'master', `vxbr${vni}`, 'up']);
    tally.attaches++;
    if (plug.status !== 0) fail(`plug ${tap} into vxbr${vni}`, plug);
  }

  await sleep(Math.random() * MAX_PAUSE_MS);

  // While the guest ran, its taps stayed on their bridges and each bridge kept its VXLAN port.
  const shown = await run('ip', ['-n', host.ns, '-j', 'link', 'show']);
  const links = new Map((JSON.parse(shown.stdout || '[]') as IpLink[]).map((l) => [l.ifname, l]));
  for (const [k, vni] of g.vnis.entries()) {
    const tap = `st${g.index}n${k}`;
    if (taps.includes(tap) && links.get(tap)?.master !== `vxbr${vni}`) tally.failures.push(`${g.name} round ${round}: ${tap} lost its bridge vxbr${vni} while the guest ran`);
    if (links.get(`vxlan${vni}`)?.master !== `vxbr${vni}`) tally.failures.push(`${g.name} round ${round}: vxlan${vni} not on vxbr${vni} while the guest ran`);
  }

  for (const tap of taps) {
    const del = await run('ip', ['-n', host.ns, 'link', 'del', tap]);
    if (del.status !== 0) fail(`delete ${tap}`, del);
  }
  const released = await host.hookAsync(g.name, 'release', 'end', g.liveXml);
  tally.releases++;
  if (released.status !== 0 || released.stderr !== '') fail('release', released);
}

const it = suite<{ host: TestHost }>('storm');
it.before((ctx) => {
  ctx.host = new TestHost('storm');
  ctx.host.addUnderlay();
});
it.after((ctx) => ctx.host.destroy());

it(`${DOMAINS} guests x ${ROUNDS} rounds on ${NETWORKS.length} networks, ${WORKERS} at a time: no failure, nothing left`, async ({ host }) => {
  for (const n of NETWORKS) {
    const r = host.vxvirt('define-network', '--no-libvirt', n.name, '--vni', String(n.vni), '--dev', 'ens47f1', ...n.flags);
    assert.is(r.status, 0, `define ${n.name}: ${r.stderr}`);
  }
  const guests = Array.from({ length: DOMAINS }, (_, i) => guest(i));
  const tally: Tally = { prepares: 0, attaches: 0, releases: 0, failures: [] };

  // A queue of (guest, round); a guest's next round is queued when its last one ends,
  // so a guest never overlaps itself while guests of every network overlap each other.
  const queue: Array<[Guest, number]> = guests.map((g) => [g, 0]);
  const started = Date.now();
  const worker = async (): Promise<void> => {
    for (let job = queue.shift(); job; job = queue.shift()) {
      const [g, round] = job;
      await cycle(host, g, round, tally);
      if (round + 1 < ROUNDS) queue.push([g, round + 1]);
    }
  };
  await Promise.all(Array.from({ length: WORKERS }, worker));
  const seconds = (Date.now() - started) / 1000;

  const leftDevices = host.linkNames().filter((n) => !['lo', 'ens47f1', 'ens47f1p'].includes(n));
  const status = JSON.parse(host.vxvirt('status', '--json').stdout) as Array<{ name: string; bridge: { exists: boolean }; vxlan: { exists: boolean }; domains: unknown[] }>;
  const users = status.flatMap((s) => s.domains.map((d) => `${s.name}: ${JSON.stringify(d)}`));
  const stateFiles = jsonFilesUnder(host.env.VXVIRT_STATE_DIR);
  console.log(
    `  storm: ${DOMAINS} guests x ${ROUNDS} rounds, ${WORKERS} workers, ${tally.prepares} prepares, ${tally.attaches} tap plugs, ` +
      `${tally.releases} releases in ${seconds.toFixed(1)} s; ${tally.failures.length} failures, ${leftDevices.length} devices, ${users.length} users and ${stateFiles.length} state files left`,
  );

  const shown = tally.failures.slice(0, 12).join('\n');
  assert.is(tally.failures.length, 0, `every prepare, tap plug and release succeeds, and no bridge goes away under a running guest; failures:\n${shown}`);
  assert.is(tally.prepares, DOMAINS * ROUNDS);
  assert.is(tally.releases, DOMAINS * ROUNDS);
  assert.equal(leftDevices, [], 'no vxbr*/vxlan* (or taps) left');
  assert.equal(users, [], 'vxvirt status lists no domain');
  assert.ok(status.every((s) => !s.bridge.exists && !s.vxlan.exists), 'status sees no devices');
  assert.equal(stateFiles, [], 'no *.json left under the state directory');
});

it.run();
