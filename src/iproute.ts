// The hook's path to iproute2 (`ip`, `bridge`): it reads the kernel's devices
// into plan.ts's `Observed`, renders plan.ts's steps in ip's and bridge's
// batch syntax and applies them. The one other runner of ip is check-facts.ts,
// whose read-only probes go through this module's exec/run.
//
// The hook talks to one `ip -batch -` process for its whole run (IpSession):
// ip executes each line as it arrives and flushes its output, so every read
// and change is a pipe round trip instead of a process start (a start costs
// several times a whole netlink request: BENCHMARKS.md). The hook starts
// the session before it reads its stdin, so ip's start-up overlaps node's work.
//
// It uses node:child_process rather than execa: this module is on the hook's
// start-up path, and execa with its dependencies would more than double the
// hook bundle's load time (measured with `npm run bench`).
import { spawn, type ChildProcess } from 'node:child_process';
import { crashPoint, crashPointInChild } from './crash-point.ts';
import { ToolError } from './errors.ts';
import type { HostAddress } from './host-address.ts';
import { vniOfBridge } from './network-definition.ts';
import { NEIGH_SYSCTLS, type Link, type NeighSettings, type Observed, type Step } from './plan.ts';
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
export function parseLinks(json: string): Map<string, Link> {
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
function parseAddresses(json: string): AddressInfo[] {
  const out: AddressInfo[] = [];
  for (const l of JSON.parse(json || '[]') as IpAddrJson[]) {
    for (const a of l.addr_info ?? []) {
      if (!a.local) continue;
      const addr: AddressInfo = { dev: l.ifname, address: a.local, tentative: a.tentative === true, dadfailed: a.dadfailed === true };
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

export interface Output {
  status: number;
  stdout: string;
  stderr: string;
}

export function exec(cmd: string, args: readonly string[], input = ''): Promise<Output> {
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
export function describeFailure(cmd: string, args: readonly string[], stderr: string, input: string): string {
  const lines = stderr.trim().split('\n').filter(Boolean);
  const at = /Command failed -:(\d+)/.exec(stderr);
  const failedLine = at ? input.split('\n')[Number(at[1]) - 1] : undefined;
  const why = lines.filter((l) => !/^Command failed -:/.test(l)).join('; ');
  return failedLine ? `${why} (at '${cmd} ${failedLine}')` : `${cmd} ${args.join(' ')} failed: ${why}`;
}

export async function run(cmd: string, args: readonly string[], input = ''): Promise<string> {
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

/**
 * The host lock, taken by the session's own process before it becomes ip:
 * the hook's lock descriptor (store.openHostLockEarly) is the child's fd 3,
 * flock(1) locks that open file description — so the lock belongs to the
 * hook, as if it had run flock(1) itself — and the shell then execs ip
 * without it. One process start instead of two (each costs the hook a fork
 * of node: BENCHMARKS.md); the lock is taken while node reads its stdin.
 */
export interface SessionLock {
  fd: number;
  timeoutSeconds: number;
}

/** flock(1)'s exit status when the lock stayed taken until the timeout (`-E`), as in store.ts. */
export const LOCK_CONFLICT_STATUS = 75;

/** One long-lived `ip -d -j -force -batch -`, answering one command at a time. */
export class IpSession {
  private readonly child: ChildProcess;
  private readonly queue: Pending[] = [];
  private partial = '';
  private failure: Error | undefined;
  private exitStatus: number | null | undefined;
  private waitingForLock: boolean;
  /** Resolves once the session holds the host lock (a session started with one). */
  readonly locked: Promise<void> | undefined;

  /** ip has exited (it does on some errors even with -force); the next startSession() starts another. */
  get failed(): boolean {
    return this.failure !== undefined;
  }

  /** How the session's process ended, once it has (LOCK_CONFLICT_STATUS: the lock was not free in time). */
  get status(): number | null | undefined {
    return this.exitStatus;
  }

  constructor(lock?: SessionLock) {
    const script = lock
      ? `flock -w ${Number(lock.timeoutSeconds)} -E ${LOCK_CONFLICT_STATUS} 3 || exit; exec ip -d -j -force -batch - 2>&1 3<&-`
      : 'exec ip -d -j -force -batch - 2>&1';
    // Its own process group with a lock: abandon() stops the shell and the flock(1) it waits in.
    this.child = spawn('sh', ['-c', script], { stdio: lock ? ['pipe', 'pipe', 'ignore', lock.fd] : ['pipe', 'pipe', 'ignore'], detached: lock !== undefined });
    this.waitingForLock = lock !== undefined;
    this.child.stdout!.setEncoding('utf8');
    this.child.stdout!.on('data', (chunk: string) => this.onData(chunk));
    this.child.stdin!.on('error', () => undefined); // reported through 'close'
    this.child.on('error', (err) => this.fail(new ToolError(`cannot start ip: ${err.message}`)));
    this.child.on('close', (status) => {
      this.exitStatus = status;
      this.waitingForLock = false;
      const output = this.queue.flatMap((p) => p.lines).concat(this.partial).join('; ').trim();
      const why =
        status === 127
          ? `ip or flock not found on PATH (${process.env.PATH ?? ''}): install iproute2 and util-linux`
          : lock && status === LOCK_CONFLICT_STATUS
            ? `the host lock was not free within ${lock.timeoutSeconds}s`
            : `ip exited (status ${status})${output ? `: ${output}` : ''}`;
      this.fail(new ToolError(why));
    });
    this.idle();
    // ip reads its first line only once flock(1) has the lock: the answer to
    // a bare end marker says it has. (Waiting for it keeps node alive.)
    this.locked = lock
      ? this.command(null).then(() => {
          this.waitingForLock = false;
        })
      : undefined;
    this.locked?.catch(() => undefined); // whoever needs the lock awaits it and sees the failure
  }

  /** Stop a session still waiting for the lock (its hook no longer needs it); a running ip just ends. */
  abandon(): void {
    if (!this.waitingForLock || this.child.pid === undefined) return;
    try {
      process.kill(-this.child.pid, 'SIGKILL');
    } catch {
      // already gone
    }
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

  /** Run one command (null: none, only the end marker); resolves with the lines it printed (JSON, or error text). */
  command(line: string | null): Promise<string[]> {
    if (this.failure) return Promise.reject(this.failure);
    if (line !== null && /[\n\r]/.test(line)) return Promise.reject(new ToolError(`refusing an ip command with a line break: ${JSON.stringify(line)}`));
    return new Promise((resolve, reject) => {
      this.queue.push({ lines: [], resolve, reject });
      this.busy();
      this.child.stdin!.write(line === null ? `${MARKER_COMMAND}\n` : `${line}\n${MARKER_COMMAND}\n`);
    });
  }

  close(): void {
    this.child.stdin!.end();
    this.idle();
  }
}

let session: IpSession | undefined;

/**
 * Start the shared session now (idempotent), so its start-up overlaps other
 * work; with `lock`, it takes the host lock first (SessionLock). A session
 * that replaces one that failed takes no lock: a first one that failed after
 * taking it leaves it with the hook's descriptor.
 */
export function startSession(lock?: SessionLock): IpSession {
  if (!session || session.failed) session = new IpSession(session ? undefined : lock);
  return session;
}

/** End the shared session (ip exits when its stdin closes; one still waiting for the lock is stopped). */
export function endSession(): void {
  session?.close();
  session?.abandon();
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
  readNeighSettings(links, [...links.keys()].filter((name) => vniOfBridge(name) !== undefined));
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

/**
 * Apply link steps in a process of its own that outlives this one, and once
 * they all succeeded remove the file `thenRemove` (a release's journal); this
 * process does not wait. The child gets `holdFd` (the host lock, so it holds
 * the lock until it exits) and no stdio of ours: libvirt waits for EOF on the
 * hook's stdout and stderr, so it must not inherit them. A child that fails or
 * dies leaves `thenRemove` in place, and whoever takes the lock next finishes
 * the job and reports what failed. One `sh` and one `ip -batch`: the lines
 * come as arguments, so nothing is left to write after this process is gone.
 */
export function applyDetached(steps: readonly Step[], holdFd: number, thenRemove: string): void {
  if (renderBridgeBatch(steps).length > 0) throw new ToolError('flood entries are never handed to a detached process: only link deletions are');
  const lines = renderIpBatch(steps);
  if (lines.some((l) => /[\n\r]/.test(l))) throw new ToolError(`refusing an ip command with a line break: ${JSON.stringify(lines)}`);
  // The tests' crash and pause points for this child (compiled out of dist/).
  const script = [
    'f=$1; shift',
    `${crashPointInChild('detached:begun')}printf '%s\\n' "$@" | ip -batch - || exit 1`,
    `${crashPointInChild('detached:applied')}exec rm -f -- "$f"`,
  ].join('\n');
  const child = spawn('/bin/sh', ['-c', script, 'vxvirt-teardown', thenRemove, ...lines], {
    detached: true,
    stdio: ['ignore', 'ignore', 'ignore', holdFd],
  });
  // Not started (no /bin/sh?): the journal stays, and the next hook finishes the release.
  child.on('error', () => undefined);
  child.unref();
}

/** The MTU of one device, or undefined if it does not exist (read through ip, so it follows the current network namespace, unlike /sys). */
export async function linkMtu(dev: string): Promise<number | undefined> {
  const r = await exec('ip', ['-j', 'link', 'show', 'dev', dev]);
  if (r.status !== 0) return undefined;
  return parseLinks(r.stdout).get(dev)?.mtu;
}

/** An address of this host as `ip -j addr show` reports it. */
export interface AddressInfo extends HostAddress {
  tentative: boolean;
  dadfailed: boolean;
}

/** Every address assigned on this host (`ip -j addr show`): observeAll's, and what `vxvirt check` looks at. */
export async function readAddresses(): Promise<AddressInfo[]> {
  return parseAddresses(await run('ip', ['-j', 'addr', 'show']));
}

/** The lines of an `ip -batch` script for the link steps (fdb steps are not ip's). */
export function renderIpBatch(steps: readonly Step[]): string[] {
  const lines: string[] = [];
  for (const s of steps) {
    switch (s.op) {
      case 'add-bridge':
        lines.push(`link add ${s.name} group ${s.group} mtu ${s.mtu} type bridge`);
        break;
      case 'add-vxlan': {
        const a = s.attrs;
        const parts = [`link add ${s.name} group ${s.group} mtu ${s.mtu} type vxlan id ${a.id} dstport ${a.port}`];
        if (a.local) parts.push(`local ${a.local}`);
        if (a.remote) parts.push(`remote ${a.remote}`);
        if (a.group) parts.push(`group ${a.group}`);
        if (a.dev) parts.push(`dev ${a.dev}`);
        if (a.ttl) parts.push(`ttl ${a.ttl}`);
        parts.push(a.learning ? 'learning' : 'nolearning');
        lines.push(parts.join(' '));
        break;
      }
      case 'delete':
        lines.push(`link del dev ${s.name}`);
        break;
      case 'delete-group':
        lines.push(`link del group ${s.group}`);
        break;
      case 'set-mtu':
        lines.push(`link set dev ${s.name} mtu ${s.mtu}`);
        break;
      case 'set-master':
        lines.push(`link set dev ${s.name} master ${s.master}`);
        break;
      case 'prepare-port':
        // The host takes no part in the tenant's network: no IPv6 link-local
        // address (and so no DAD/RS packets) on the bridge or the vxlan.
        lines.push(`link set dev ${s.name} alias ${s.alias} addrgenmode none`);
        break;
      case 'up':
        lines.push(`link set dev ${s.name} up`);
        break;
      case 'set-port':
        lines.push(`link set dev ${s.name} type bridge_slave learning ${s.port.learning ? 'on' : 'off'} neigh_suppress ${s.port.neighSuppress ? 'on' : 'off'}`);
        break;
      case 'sysctl': // written to /proc/sys by apply()
      case 'flood-add':
      case 'flood-del':
        break;
    }
  }
  return lines;
}

/** The lines of a `bridge -batch` script for the flood (all-zero fdb) steps. */
export function renderBridgeBatch(steps: readonly Step[]): string[] {
  const lines: string[] = [];
  for (const s of steps) {
    if (s.op === 'flood-add') lines.push(`fdb append 00:00:00:00:00:00 dev ${s.dev} dst ${s.dst} self permanent`);
    if (s.op === 'flood-del') lines.push(`fdb del 00:00:00:00:00:00 dev ${s.dev} dst ${s.dst} self`);
  }
  return lines;
}
