// The only module that runs iproute2 (`ip`, `bridge`). It reads the kernel's
// devices into plan.ts's `Observed` and applies plan.ts's steps.
//
// The hook talks to one `ip -batch -` process for its whole run (IpSession):
// ip executes each line as it arrives and flushes its output, so every read
// and change is a pipe round trip instead of a process start (each start
// costs ~5 ms here, several times a whole netlink request). The hook starts
// the session before it reads its stdin, so ip's start-up overlaps node's work.
//
// It uses node:child_process rather than execa: this module is on the hook's
// start-up path, and execa with its dependencies would more than double the
// hook bundle's load time (measured with `npm run bench`).
import { spawn, type ChildProcess } from 'node:child_process';
import { crashPoint } from './crash-point.ts';
import { ToolError } from './errors.ts';
import type { HostAddress } from './host-address.ts';
import { NEIGH_SYSCTLS, renderBridgeBatch, renderIpBatch, type Link, type NeighSettings, type Observed, type Step } from './plan.ts';
import { readSysctl, writeSysctl } from './sysctl.ts';

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
    info_slave_kind?: string;
    info_slave_data?: { learning?: unknown; neigh_suppress?: unknown };
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
    const port = l.linkinfo?.info_slave_kind === 'bridge' ? l.linkinfo.info_slave_data : undefined;
    if (port) link.bridgePort = { learning: port.learning !== false, neighSuppress: port.neigh_suppress === true };
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

interface IpAddrJson {
  ifname: string;
  addr_info?: Array<{ local?: string; scope?: string; tentative?: boolean; dadfailed?: boolean }>;
}

/** Parse `ip -j addr show` output: every address, by device. */
function parseAddresses(json: string): Array<HostAddress & { tentative: boolean }> {
  const out: Array<HostAddress & { tentative: boolean }> = [];
  for (const l of JSON.parse(json || '[]') as IpAddrJson[]) {
    for (const a of l.addr_info ?? []) {
      if (!a.local) continue;
      const addr: HostAddress & { tentative: boolean } = { dev: l.ifname, address: a.local, tentative: a.tentative === true, dadfailed: a.dadfailed === true };
      if (a.scope !== undefined) addr.scope = a.scope;
      out.push(addr);
    }
  }
  return out;
}

/** Parse `bridge -j fdb show dev X`: destinations of the all-zero (flood) entries. */
function parseFloodDsts(json: string): string[] {
  const entries = JSON.parse(json || '[]') as Array<{ mac?: string; dst?: string }>;
  return entries.filter((e) => e.mac === '00:00:00:00:00:00' && e.dst).map((e) => e.dst as string);
}

/**
 * Add the neighbour settings (EVPN's arp_accept) of these bridges from
 * /proc/sys, which shows those of this process's network namespace: two
 * small reads per bridge, only where they matter (the hook: evpn networks).
 */
function readNeighSettings(links: Map<string, Link>, bridges: readonly string[]): void {
  for (const name of bridges) {
    const link = links.get(name);
    if (link?.kind !== 'bridge') continue;
    const neigh: NeighSettings = {};
    for (const key of Object.keys(NEIGH_SYSCTLS) as Array<keyof NeighSettings>) {
      const value = readSysctl(NEIGH_SYSCTLS[key](link.name));
      if (value !== undefined) neigh[key] = value;
    }
    link.neigh = neigh;
  }
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
 * Cut what an `ip -j -batch` session printed so far into whole items — a JSON
 * answer, or a line of error text — and the incomplete rest. ip ends a JSON
 * answer with "]" and writes its newline only before the next one, so answers
 * are cut out by bracket matching (aware of strings: an alias may hold
 * brackets); error text comes in whole lines.
 */
export function cutItems(text: string): { items: string[]; rest: string } {
  const items: string[] = [];
  let rest = text;
  for (;;) {
    rest = rest.replace(/^\s+/, '');
    const end = rest.startsWith('[') ? jsonArrayEnd(rest) : rest.indexOf('\n');
    if (end < 0) return { items, rest };
    items.push(rest.slice(0, end));
    rest = rest.slice(end);
  }
}

/** Where the JSON array at the start of `text` ends (index after its "]"), or -1 if it is incomplete. */
function jsonArrayEnd(text: string): number {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (inString) {
      if (c === '\\') i++;
      else if (c === '"') inString = false;
    } else if (c === '"') inString = true;
    else if (c === '[') depth++;
    else if (c === ']' && --depth === 0) return i + 1;
  }
  return -1;
}

// After each command the session sends `link show dev vxvirt/end`: a name
// with "/" can never be a device, so ip answers with the same error line every
// time, and that line marks where the command's output ends. stderr is merged
// into stdout (by `sh -c 'exec ... 2>&1'`), so error lines arrive in order.
const MARKER_COMMAND = 'link show dev vxvirt/end';
const isMarker = (item: string): boolean => item === 'Device "vxvirt/end" does not exist.';

interface Pending {
  lines: string[];
  resolve(lines: string[]): void;
  reject(err: Error): void;
}

/** One long-lived `ip -d -j -force -batch -`, answering one command at a time. */
export class IpSession {
  private readonly child: ChildProcess;
  private readonly queue: Pending[] = [];
  private partial = '';
  private failure: Error | undefined;

  /** ip has exited (it does on some errors even with -force); the next startSession() starts another. */
  get failed(): boolean {
    return this.failure !== undefined;
  }

  constructor() {
    this.child = spawn('sh', ['-c', 'exec ip -d -j -force -batch - 2>&1'], { stdio: ['pipe', 'pipe', 'ignore'] });
    this.child.stdout!.setEncoding('utf8');
    this.child.stdout!.on('data', (chunk: string) => this.onData(chunk));
    this.child.stdin!.on('error', () => undefined); // reported through 'close'
    this.child.on('error', (err) => this.fail(new ToolError(`cannot start ip: ${err.message}`)));
    this.child.on('close', (status) => {
      const output = this.queue.flatMap((p) => p.lines).concat(this.partial).join('; ').trim();
      const why = status === 127 ? `ip not found on PATH (${process.env.PATH ?? ''}): install iproute2` : `ip exited (status ${status})${output ? `: ${output}` : ''}`;
      this.fail(new ToolError(why));
    });
    this.idle();
  }

  // Idle, the session must not keep node alive; waiting for an answer, it must.
  private idle(): void {
    this.child.unref();
    (this.child.stdout as unknown as { unref?(): void }).unref?.();
    (this.child.stdin as unknown as { unref?(): void }).unref?.();
  }
  private busy(): void {
    this.child.ref();
    (this.child.stdout as unknown as { ref?(): void }).ref?.();
  }

  private onData(chunk: string): void {
    const { items, rest } = cutItems(this.partial + chunk);
    this.partial = rest;
    for (const item of items) this.deliver(item);
  }

  private deliver(item: string): void {
    const head = this.queue[0];
    if (!head) return;
    if (isMarker(item)) {
      this.queue.shift();
      head.resolve(head.lines);
      if (this.queue.length === 0) this.idle();
    } else if (item.trim()) head.lines.push(item.trim());
  }

  private fail(err: Error): void {
    this.failure ??= err;
    for (const p of this.queue.splice(0)) p.reject(this.failure);
  }

  /** Run one command; resolves with the lines it printed (JSON, or error text). */
  command(line: string): Promise<string[]> {
    if (this.failure) return Promise.reject(this.failure);
    if (/[\n\r]/.test(line)) return Promise.reject(new ToolError(`refusing an ip command with a line break: ${JSON.stringify(line)}`));
    return new Promise((resolve, reject) => {
      this.queue.push({ lines: [], resolve, reject });
      this.busy();
      this.child.stdin!.write(`${line}\n${MARKER_COMMAND}\n`);
    });
  }

  close(): void {
    this.child.stdin!.end();
    this.idle();
  }
}

let session: IpSession | undefined;

/** Start the shared session now (idempotent), so its start-up overlaps other work. */
export function startSession(): IpSession {
  if (!session || session.failed) session = new IpSession();
  return session;
}

/** End the shared session (ip exits when its stdin closes). */
export function endSession(): void {
  session?.close();
  session = undefined;
}

const isJson = (line: string): boolean => line.startsWith('[');
const MISSING = [/^Device ".*" does not exist\.$/, /^Error: argument ".*" is wrong: Device does not exist$/, /^Cannot find device ".*"$/];
const isBatchNoise = (line: string): boolean => /^Command failed -:\d+$/.test(line);

/** What to read: devices by name, the ports of bridges, the flood entries of vxlan devices. */
export interface ObserveQuery {
  devices: readonly string[];
  portsOf?: readonly string[];
  fdbDevices?: readonly string[];
  /** Read this host's addresses of that family (host-address.ts). */
  addresses?: 4 | 6;
  /** Bridges whose neighbour settings (arp_accept, …) to read. */
  neighOf?: readonly string[];
}

/**
 * Read just the devices a plan needs: the cost does not grow with the number
 * of interfaces on the host (plus one `bridge` call per vxlan in unicast-peers
 * mode). A device that does not exist is simply absent; any other error fails.
 */
export async function observe(query: ObserveQuery): Promise<Observed> {
  try {
    return await observeOnce(query);
  } catch (err) {
    // ip exits on some lookups (a device deleted by someone else between two
    // of our commands): read once more through a fresh process.
    if (!session?.failed) throw err;
    return observeOnce(query);
  }
}

async function observeOnce(query: ObserveQuery): Promise<Observed> {
  const ip = startSession();
  const links = new Map<string, Link>();
  const read = async (commands: string[]): Promise<void> => {
    const answers = await Promise.all(commands.map((c) => ip.command(c)));
    answers.forEach((lines, i) => {
      const errors = lines.filter((l) => !isJson(l) && !isBatchNoise(l));
      const unexpected = errors.filter((l) => !MISSING.some((re) => re.test(l)));
      if (unexpected.length > 0) throw new ToolError(`${unexpected.join('; ')} (at 'ip ${commands[i]}')`);
      for (const json of lines.filter(isJson)) for (const [name, link] of parseLinks(json)) links.set(name, link);
    });
  };
  await read(query.devices.map((d) => `link show dev ${d}`));
  // `link show master X` makes ip exit when X does not exist: ask only for bridges that do.
  const bridges = (query.portsOf ?? []).filter((b) => links.get(b)?.kind === 'bridge');
  if (bridges.length > 0) await read(bridges.map((b) => `link show master ${b}`));
  readNeighSettings(links, query.neighOf ?? []);
  const floodDsts = new Map<string, string[]>();
  for (const dev of query.fdbDevices ?? []) {
    if (links.get(dev)?.kind === 'vxlan') floodDsts.set(dev, parseFloodDsts(await run('bridge', ['-j', 'fdb', 'show', 'dev', dev])));
  }
  const observed: Observed = { links, floodDsts };
  if (query.addresses !== undefined) {
    // `to 0.0.0.0/0` (`::/0`) keeps only devices with an address of that
    // family: the answer grows with the host's addresses, not its devices.
    const command = `addr show to ${query.addresses === 4 ? '0.0.0.0/0' : '::/0'}`;
    const lines = await ip.command(command);
    const errors = lines.filter((l) => !isJson(l) && !isBatchNoise(l));
    if (errors.length > 0) throw new ToolError(`${errors.join('; ')} (at 'ip ${command}')`);
    observed.addresses = lines.filter(isJson).flatMap(parseAddresses);
  }
  return observed;
}

/** Read every device of the host (for commands that survey everything, never the hook). */
export async function observeAll(fdbDevices: readonly string[] = []): Promise<Observed> {
  const links = parseLinks(await run('ip', ['-d', '-j', 'link', 'show']));
  readNeighSettings(links, [...links.keys()].filter((name) => /^vxbr\d+$/.test(name)));
  const floodDsts = new Map<string, string[]>();
  for (const dev of fdbDevices) {
    if (links.get(dev)?.kind === 'vxlan') floodDsts.set(dev, parseFloodDsts(await run('bridge', ['-j', 'fdb', 'show', 'dev', dev])));
  }
  return { links, floodDsts, addresses: await readAddresses() };
}

/**
 * Apply steps in order: link steps one by one through the session, stopping
 * at the first failure (what follows may assume it, e.g. enslaving to a bridge
 * that could not be made); then fdb steps as one `bridge -batch`.
 */
export async function apply(steps: readonly Step[]): Promise<void> {
  const ip = startSession();
  try {
    for (const line of renderIpBatch(steps)) {
      const errors = (await ip.command(line)).filter((l) => !isJson(l) && !isBatchNoise(l));
      if (errors.length > 0) throw new ToolError(`${errors.join('; ')} (at 'ip ${line}')`);
    }
  } finally {
    // ip caches name -> ifindex for the life of the process: after a delete,
    // a re-created device of the same name would be looked up by its old index.
    if (steps.some((s) => s.op === 'delete' || s.op === 'delete-group')) endSession();
  }
  for (const s of steps) {
    if (s.op !== 'sysctl') continue;
    const name = NEIGH_SYSCTLS[s.key](s.device);
    if (!writeSysctl(name, s.value) && !s.optional) throw new ToolError(`cannot set ${name} to ${s.value} (is /proc/sys mounted, and are we root?)`);
  }
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

export interface AddressInfo extends HostAddress {
  /** In the kernel's spelling, as definitions store it. */
  address: string;
  tentative: boolean;
  dadfailed: boolean;
}

/** The addresses assigned on this host (`ip -j addr show`). */
export async function readAddresses(): Promise<AddressInfo[]> {
  return parseAddresses(await run('ip', ['-j', 'addr', 'show'])) as AddressInfo[];
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
