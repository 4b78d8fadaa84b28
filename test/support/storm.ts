// A storm of guests starting and stopping on one host, as libvirtd drives
// them: real hook processes in parallel over six networks (point-to-point,
// multicast and unicast peers), each guest's tap plugged into its bridge
// between prepare and release. Shared by storm.test.ts and upgrade.test.ts
// (the same storm while vxvirt's code is replaced under it).
import { spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import * as assert from 'uvu/assert';
import { bridgeNic, domainXml, networkNic, type IpLink, type Result, type TestHost } from './netns.ts';

export const NETWORKS: Array<{ name: string; vni: number; flags: string[] }> = [
  { name: 'p2p-a', vni: 101, flags: ['--remote', '192.168.8.101'] },
  { name: 'p2p-b', vni: 102, flags: ['--local', '192.168.8.100', '--remote', '192.168.8.102'] },
  { name: 'mc-a', vni: 103, flags: ['--group', '239.1.1.3'] },
  { name: 'mc-b', vni: 104, flags: ['--group', '239.1.1.4', '--ttl', '4'] },
  { name: 'uc-a', vni: 105, flags: ['--local', '192.168.8.100', '--remote', '192.168.8.101', '--remote', '192.168.8.102'] },
  { name: 'uc-b', vni: 106, flags: ['--remote', '192.168.8.101', '--remote', '192.168.8.102', '--remote', '192.168.8.103'] },
];
const MAX_PAUSE_MS = 40;

export interface Guest {
  index: number;
  name: string;
  uuid: string;
  /** The domain XML libvirt hands to prepare (a NIC may name a libvirt network). */
  xml: string;
  /** The live XML libvirt hands to release: a network NIC then also names its bridge. */
  liveXml: string;
  networks: string[];
  vnis: number[];
}

/** Guest i is on network i mod 6; every third guest also on the next one; odd guests name the libvirt network, even ones the bridge. */
export function guest(index: number): Guest {
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
  return { index, name, uuid, xml: domainXml(name, uuid, nics.join('\n')), liveXml: domainXml(name, uuid, liveNics.join('\n')), networks: nets.map((n) => n.name), vnis: nets.map((n) => n.vni) };
}

/** A command in the background (libvirtd plugs taps while other hooks run). */
export function run(cmd: string, args: readonly string[]): Promise<Result> {
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
export function jsonFilesUnder(dir: string): string[] {
  if (!existsSync(dir)) return [];
  const out: string[] = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, e.name);
    if (e.isDirectory()) out.push(...jsonFilesUnder(path));
    else if (e.name.endsWith('.json')) out.push(path);
  }
  return out;
}

export interface Tally {
  prepares: number;
  attaches: number;
  releases: number;
  failures: string[];
  /** Start and end (ms since the epoch) of every hook run, for the upgrade test to set against its swaps. */
  hookRuns: Array<[number, number]>;
}

export const emptyTally = (): Tally => ({ prepares: 0, attaches: 0, releases: 0, failures: [], hookRuns: [] });

/** The domains a users file lists (by key), read as the test's root; none if there is no file. */
function usersOf(host: TestHost, network: string): string[] {
  const path = join(host.env.VXVIRT_STATE_DIR, 'users', `${network}.json`);
  if (!existsSync(path)) return [];
  return Object.keys((JSON.parse(readFileSync(path, 'utf8')) as { users?: object }).users ?? {});
}

/** One start/stop of a guest as libvirt drives it: prepare, plug taps, run a while, unplug, release. */
export async function cycle(host: TestHost, g: Guest, round: number, tally: Tally): Promise<void> {
  const fail = (what: string, r: Result) => tally.failures.push(`${g.name} round ${round}: ${what}: exit ${r.status}: ${(r.stderr || r.stdout).trim()}`);
  const hook = async (op: string, subop: string, xml: string): Promise<Result> => {
    const start = Date.now();
    const r = await host.hookAsync(g.name, op, subop, xml);
    tally.hookRuns.push([start, Date.now()]);
    return r;
  };
  const prepared = await hook('prepare', 'begin', g.xml);
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

  // While the guest ran, its taps stayed on their bridges, each bridge kept its VXLAN port,
  // and the guest stayed recorded as a user of each of its networks.
  const shown = await run('ip', ['-n', host.ns, '-j', 'link', 'show']);
  const links = new Map((JSON.parse(shown.stdout || '[]') as IpLink[]).map((l) => [l.ifname, l]));
  for (const [k, vni] of g.vnis.entries()) {
    const tap = `st${g.index}n${k}`;
    if (taps.includes(tap) && links.get(tap)?.master !== `vxbr${vni}`) tally.failures.push(`${g.name} round ${round}: ${tap} lost its bridge vxbr${vni} while the guest ran`);
    if (links.get(`vxlan${vni}`)?.master !== `vxbr${vni}`) tally.failures.push(`${g.name} round ${round}: vxlan${vni} not on vxbr${vni} while the guest ran`);
  }
  for (const network of g.networks) {
    if (!usersOf(host, network).includes(g.uuid)) tally.failures.push(`${g.name} round ${round}: not a user of ${network} while it ran`);
  }

  for (const tap of taps) {
    const del = await run('ip', ['-n', host.ns, 'link', 'del', tap]);
    if (del.status !== 0) fail(`delete ${tap}`, del);
  }
  const released = await hook('release', 'end', g.liveXml);
  tally.releases++;
  if (released.status !== 0 || released.stderr !== '') fail('release', released);
}

/** Define the storm's networks on `host`. */
export function defineNetworks(host: TestHost): void {
  for (const n of NETWORKS) {
    const r = host.vxvirt('define-network', '--no-libvirt', n.name, '--vni', String(n.vni), '--dev', 'ens47f1', ...n.flags);
    assert.is(r.status, 0, `define ${n.name}: ${r.stderr}`);
  }
}

/**
 * `domains` guests x `rounds` rounds, `workers` at a time. A guest's next
 * round is queued when its last one ends, so a guest never overlaps itself
 * while guests of every network overlap each other.
 */
export async function storm(host: TestHost, domains: number, rounds: number, workers: number, tally: Tally): Promise<void> {
  const guests = Array.from({ length: domains }, (_, i) => guest(i));
  const queue: Array<[Guest, number]> = guests.map((g) => [g, 0]);
  const worker = async (): Promise<void> => {
    for (let job = queue.shift(); job; job = queue.shift()) {
      const [g, round] = job;
      await cycle(host, g, round, tally);
      if (round + 1 < rounds) queue.push([g, round + 1]);
    }
  };
  await Promise.all(Array.from({ length: workers }, worker));
}

/** What a storm left behind: devices, users (as `vxvirt status` lists them) and state files; all must be none. */
export function leftovers(host: TestHost): { devices: string[]; users: string[]; stateFiles: string[]; statusSeesDevices: boolean } {
  const devices = host.linkNames().filter((n) => !['lo', 'ens47f1', 'ens47f1p'].includes(n));
  const status = JSON.parse(host.vxvirt('status', '--json').stdout) as Array<{ name: string; bridge: { exists: boolean }; vxlan: { exists: boolean }; domains: unknown[] }>;
  const users = status.flatMap((s) => s.domains.map((d) => `${s.name}: ${JSON.stringify(d)}`));
  return { devices, users, stateFiles: jsonFilesUnder(host.env.VXVIRT_STATE_DIR), statusSeesDevices: status.some((s) => s.bridge.exists || s.vxlan.exists) };
}
