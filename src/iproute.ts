// The only module that runs iproute2 (`ip`, `bridge`). It reads the kernel's
// devices into plan.ts's `Observed` and applies plan.ts's steps, each kind as
// one batch, so a whole ensure or teardown costs a few process starts.
//
// It uses node:child_process rather than execa: this module is on the hook's
// start-up path, and execa with its dependencies would more than double the
// hook bundle's load time (measured with `npm run bench`).
import { spawn } from 'node:child_process';
import { crashPoint } from './crash-point.ts';
import { ToolError } from './errors.ts';
import { renderBridgeBatch, renderIpBatch, type Link, type Observed, type Step } from './plan.ts';

interface IpLinkJson {
  ifname: string;
  flags?: string[];
  mtu?: number;
  master?: string;
  group?: string;
  ifalias?: string;
  linkinfo?: {
    info_kind?: string;
    info_data?: Record<string, unknown>;
  };
}

/** Parse `ip -d -j link show` output. */
function parseLinks(json: string): Map<string, Link> {
  const links = new Map<string, Link>();
  for (const l of JSON.parse(json || '[]') as IpLinkJson[]) {
    const link: Link = {
      name: l.ifname,
      kind: l.linkinfo?.info_kind ?? '',
      group: l.group === undefined || l.group === 'default' ? 0 : Number(l.group),
      mtu: l.mtu ?? 0,
      up: (l.flags ?? []).includes('UP'),
    };
    if (l.master) link.master = l.master;
    if (l.ifalias) link.alias = l.ifalias;
    const d = l.linkinfo?.info_data;
    if (link.kind === 'vxlan' && d) {
      const str = (...keys: string[]): string | undefined => {
        for (const k of keys) if (typeof d[k] === 'string') return d[k] as string;
        return undefined;
      };
      link.vxlan = {
        id: Number(d.id),
        port: Number(d.port),
        ttl: typeof d.ttl === 'number' ? d.ttl : 0,
        learning: d.learning !== false,
      };
      // iproute2 names IPv6 endpoints local6/remote6/group6.
      const dev = str('link');
      const local = str('local', 'local6');
      const remote = str('remote', 'remote6');
      const group = str('group', 'group6');
      if (dev) link.vxlan.dev = dev;
      if (local) link.vxlan.local = local;
      if (remote) link.vxlan.remote = remote;
      if (group) link.vxlan.group = group;
    }
    links.set(link.name, link);
  }
  return links;
}

/** Parse `bridge -j fdb show dev X`: destinations of the all-zero (flood) entries. */
function parseFloodDsts(json: string): string[] {
  const entries = JSON.parse(json || '[]') as Array<{ mac?: string; dst?: string }>;
  return entries.filter((e) => e.mac === '00:00:00:00:00:00' && e.dst).map((e) => e.dst as string);
}

interface Output {
  status: number;
  stdout: string;
  stderr: string;
}

function exec(cmd: string, args: readonly string[], input = ''): Promise<Output> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (d: Buffer) => out.push(d));
    child.stderr.on('data', (d: Buffer) => err.push(d));
    child.on('error', (e: NodeJS.ErrnoException) =>
      reject(e.code === 'ENOENT' ? new ToolError(`${cmd} not found on PATH (${process.env.PATH ?? ''}): install iproute2`) : e),
    );
    child.on('close', (status) =>
      resolve({ status: status ?? -1, stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(err).toString('utf8') }),
    );
    child.stdin.on('error', () => undefined); // a command that exits early closes its stdin
    child.stdin.end(input);
  });
}

/** `ip -batch` reports "Command failed -:N": name the line that failed. */
function describeFailure(cmd: string, args: readonly string[], stderr: string, input: string): string {
  const lines = stderr.trim().split('\n').filter(Boolean);
  const at = /Command failed -:(\d+)/.exec(stderr);
  const failedLine = at ? input.split('\n')[Number(at[1]) - 1] : undefined;
  const why = lines.filter((l) => !/^Command failed -:/.test(l)).join('; ');
  return failedLine ? `${why} (at '${cmd} ${failedLine}')` : `${cmd} ${args.join(' ')} failed: ${why}`;
}

async function run(cmd: string, args: readonly string[], input = ''): Promise<string> {
  const r = await exec(cmd, args, input);
  if (r.status !== 0) throw new ToolError(describeFailure(cmd, args, r.stderr || `exit status ${r.status}`, input));
  return r.stdout;
}

/**
 * Split the output of `ip -j -batch`: one JSON array per command that printed
 * anything, back to back. Strings may hold brackets (an alias), so this scans
 * with string awareness rather than splitting on "][".
 */
export function splitJsonArrays(text: string): string[] {
  const out: string[] = [];
  let depth = 0;
  let start = -1;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (inString) {
      if (c === '\\') i++;
      else if (c === '"') inString = false;
    } else if (c === '"') inString = true;
    else if (c === '[') {
      if (depth++ === 0) start = i;
    } else if (c === ']' && --depth === 0) out.push(text.slice(start, i + 1));
  }
  return out;
}

/** What to read: devices by name, the ports of bridges, the flood entries of vxlan devices. */
export interface ObserveQuery {
  devices: readonly string[];
  portsOf?: readonly string[];
  fdbDevices?: readonly string[];
}

/**
 * Read just the devices a plan needs, in one `ip -batch` (plus one `bridge`
 * call per vxlan in unicast-peers mode): the cost does not grow with the
 * number of interfaces on the host. `-force` goes on past devices that do
 * not exist; those are the only errors accepted.
 */
export async function observe(query: ObserveQuery): Promise<Observed> {
  const lines = [...query.devices.map((d) => `link show dev ${d}`), ...(query.portsOf ?? []).map((b) => `link show master ${b}`)];
  const links = new Map<string, Link>();
  if (lines.length > 0) {
    const input = `${lines.join('\n')}\n`;
    const r = await exec('ip', ['-d', '-j', '-force', '-batch', '-'], input);
    const unexpected = r.stderr
      .split('\n')
      .filter((l) => l.trim() && !/^Device ".*" does not exist\.$/.test(l) && !/^Error: argument ".*" is wrong: Device does not exist$/.test(l) && !/^Command failed -:\d+$/.test(l));
    if (unexpected.length > 0 || (r.status !== 0 && !r.stderr.trim())) {
      throw new ToolError(describeFailure('ip', ['-batch'], r.stderr || `exit status ${r.status}`, input));
    }
    for (const chunk of splitJsonArrays(r.stdout)) for (const [name, link] of parseLinks(chunk)) links.set(name, link);
  }
  const floodDsts = new Map<string, string[]>();
  for (const dev of query.fdbDevices ?? []) {
    if (links.get(dev)?.kind === 'vxlan') floodDsts.set(dev, parseFloodDsts(await run('bridge', ['-j', 'fdb', 'show', 'dev', dev])));
  }
  return { links, floodDsts };
}

/** Read every device of the host (for commands that survey everything, never the hook). */
export async function observeAll(fdbDevices: readonly string[] = []): Promise<Observed> {
  const links = parseLinks(await run('ip', ['-d', '-j', 'link', 'show']));
  const floodDsts = new Map<string, string[]>();
  for (const dev of fdbDevices) {
    if (links.get(dev)?.kind === 'vxlan') floodDsts.set(dev, parseFloodDsts(await run('bridge', ['-j', 'fdb', 'show', 'dev', dev])));
  }
  return { links, floodDsts };
}

/** Apply steps in order: link steps as one `ip -batch`, then fdb steps as one `bridge -batch`. */
export async function apply(steps: readonly Step[]): Promise<void> {
  const ipLines = renderIpBatch(steps);
  if (ipLines.length > 0) await run('ip', ['-batch', '-'], `${ipLines.join('\n')}\n`);
  const fdbLines = renderBridgeBatch(steps);
  if (fdbLines.length > 0) {
    crashPoint('apply:links-done'); // devices made, flood entries not yet
    await run('bridge', ['-batch', '-'], `${fdbLines.join('\n')}\n`);
  }
}

/** The MTU of one device, or undefined if it does not exist (read through ip, so it follows the current network namespace, unlike /sys). */
export async function linkMtu(dev: string): Promise<number | undefined> {
  const r = await exec('ip', ['-j', 'link', 'show', 'dev', dev]);
  if (r.status !== 0) return undefined;
  return parseLinks(r.stdout).get(dev)?.mtu;
}
