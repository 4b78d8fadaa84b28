// The only module that runs iproute2 (`ip`, `bridge`). It reads the kernel's
// devices into plan.ts's `Observed` and applies plan.ts's steps, each kind as
// one batch, so a whole ensure or teardown costs a few process starts.
//
// It uses node:child_process rather than execa: this module is on the hook's
// start-up path, and execa with its dependencies would more than double the
// hook bundle's load time (measured with `npm run bench`).
import { spawn } from 'node:child_process';
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
 * Read every device, plus the flood entries of the given vxlan devices.
 * One `ip` call for all links (cheaper than one per device), one `bridge` call
 * per vxlan in unicast-peers mode.
 */
export async function observe(fdbDevices: readonly string[] = []): Promise<Observed> {
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
  if (fdbLines.length > 0) await run('bridge', ['-batch', '-'], `${fdbLines.join('\n')}\n`);
}

/** The MTU of one device, or undefined if it does not exist (read through ip, so it follows the current network namespace, unlike /sys). */
export async function linkMtu(dev: string): Promise<number | undefined> {
  const r = await exec('ip', ['-j', 'link', 'show', 'dev', dev]);
  if (r.status !== 0) return undefined;
  return parseLinks(r.stdout).get(dev)?.mtu;
}

// ---- read-only queries for vxvirt check
// What `vxvirt check` asks the kernel. None of them changes anything on the
// host; the VXLAN trial runs in a network namespace of its own.

/** `ip -V`'s line, and whether `ip -j` prints JSON (iproute2 >= 4.14). */
export async function ipCapabilities(): Promise<{ version: string; json: boolean }> {
  const version = (await run('ip', ['-V'])).trim();
  const r = await exec('ip', ['-d', '-j', 'link', 'show', 'dev', 'lo']);
  let json = false;
  try {
    json = r.status === 0 && Array.isArray(JSON.parse(r.stdout));
  } catch {
    // an iproute2 without -j prints text, or refuses the option
  }
  return { version, json };
}

/** A device's flags (UP, LOWER_UP, MULTICAST, …) as `ip` prints them. */
export interface LinkFlags {
  flags: string[];
  operstate?: string;
}

/** Every device, as observe() reads it, plus each device's flags; one `ip` call. */
export async function readLinksWithFlags(): Promise<{ links: Map<string, Link>; flags: Map<string, LinkFlags> }> {
  const out = await run('ip', ['-d', '-j', 'link', 'show']);
  const flags = new Map<string, LinkFlags>();
  for (const l of JSON.parse(out || '[]') as Array<{ ifname: string; flags?: string[]; operstate?: string }>) {
    const f: LinkFlags = { flags: l.flags ?? [] };
    if (l.operstate !== undefined) f.operstate = l.operstate;
    flags.set(l.ifname, f);
  }
  return { links: parseLinks(out), flags };
}

export interface AddressInfo {
  dev: string;
  /** In the kernel's spelling, as definitions store it. */
  address: string;
  tentative: boolean;
  dadfailed: boolean;
}

/** The addresses assigned on this host (`ip -j addr show`). */
export async function readAddresses(): Promise<AddressInfo[]> {
  type AddrJson = { ifname: string; addr_info?: Array<{ local?: string; tentative?: boolean; dadfailed?: boolean }> };
  const out: AddressInfo[] = [];
  for (const l of JSON.parse((await run('ip', ['-j', 'addr', 'show'])) || '[]') as AddrJson[]) {
    for (const a of l.addr_info ?? []) {
      if (a.local) out.push({ dev: l.ifname, address: a.local, tentative: a.tentative === true, dadfailed: a.dadfailed === true });
    }
  }
  return out;
}

/** The kernel's route for a destination (`ip -j route get`), optionally as sent through `oif`; a failed lookup is `error`. */
export async function routeGet(address: string, oif?: string): Promise<{ dev?: string; type?: string; error?: string }> {
  const r = await exec('ip', ['-j', 'route', 'get', address, ...(oif ? ['oif', oif] : [])]);
  if (r.status !== 0) return { error: r.stderr.trim().split('\n').join('; ') || `exit status ${r.status}` };
  try {
    const [route] = JSON.parse(r.stdout) as Array<{ dev?: string; type?: string }>;
    const out: { dev?: string; type?: string } = {};
    if (route?.dev) out.dev = route.dev;
    if (route?.type) out.type = route.type;
    return out;
  } catch {
    return { error: `cannot read 'ip -j route get' output (iproute2 prints routes as JSON since 4.17): ${r.stdout.trim().slice(0, 80)}` };
  }
}

/**
 * Whether this kernel can make vxvirt's devices: a VXLAN device enslaved to a
 * bridge, made in a throwaway network namespace (unshare(1), util-linux) so
 * the host's own devices are never touched. The namespace, and the devices
 * with it, disappear when `ip` exits.
 */
export async function tryVxlanDevice(): Promise<{ ok: true } | { error: string }> {
  const batch = 'link add vxvirtprobe type vxlan id 1 dstport 4789\nlink add vxvirtprobebr type bridge\nlink set vxvirtprobe master vxvirtprobebr\n';
  let r: Output;
  try {
    r = await exec('unshare', ['--net', 'ip', '-batch', '-'], batch);
  } catch {
    // exec() resolves whatever the exit status: this is unshare(1) itself not starting.
    return { error: 'cannot run unshare(1) to try it in a private network namespace: install util-linux' };
  }
  if (r.status === 0) return { ok: true };
  return { error: describeFailure('unshare --net ip', ['-batch', '-'], r.stderr || `exit status ${r.status}`, batch) };
}
