// Throwaway network namespaces for integration tests, and running vxvirt's
// hook and CLI inside them exactly as libvirt and an operator would.
import { spawn, spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const repo = new URL('../..', import.meta.url).pathname.replace(/\/$/, '');
/** The environment libvirt gives its hooks, and nothing else. */
export const LIBVIRT_HOOK_ENV = { PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', HOME: '/root', LC_ALL: 'C' };

let counter = 0;

export interface Result {
  status: number;
  /** The signal that ended the process, if one did. */
  signal?: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export function sh(cmd: string, args: readonly string[], input?: string, env?: NodeJS.ProcessEnv): Result {
  const r: SpawnSyncReturns<string> = spawnSync(cmd, args, { input: input ?? '', encoding: 'utf8', env: env ?? process.env });
  // A hook that has nothing to do exits without reading stdin; libvirt ignores that EPIPE, and so do we.
  if (r.error && (r.error as NodeJS.ErrnoException).code !== 'EPIPE') throw r.error;
  return { status: r.status ?? -1, signal: r.signal, stdout: r.stdout, stderr: r.stderr };
}

/** sh() without blocking: for tests that run several hosts at once in one process. */
export function shAsync(cmd: string, args: readonly string[], input?: string, env?: NodeJS.ProcessEnv): Promise<Result> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { env: env ?? process.env });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    // As in sh(): a process that exits without reading its input is fine.
    child.stdin.on('error', (e: NodeJS.ErrnoException) => {
      if (e.code !== 'EPIPE') reject(e);
    });
    child.on('error', reject);
    child.on('close', (status, signal) => resolve({ status: status ?? -1, signal, stdout, stderr }));
    child.stdin.end(input ?? '');
  });
}

export function must(cmd: string, args: readonly string[], input?: string): string {
  const r = sh(cmd, args, input);
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.status}): ${r.stderr}`);
  return r.stdout;
}

/** A simulated host: a network namespace with its own vxvirt config and state dirs. */
export class TestHost {
  readonly ns: string;
  readonly dir: string;
  readonly hookPath: string;
  /** libvirt's network hook, /etc/libvirt/hooks/network, also a symlink. */
  readonly networkHookPath: string;

  /** `parent`: where its config and state dirs go (the system's temp dir unless a test hides that). */
  constructor(label = 'h', parent = tmpdir()) {
    this.ns = `vxit-${process.pid}-${label}-${counter++}`;
    this.dir = mkdtempSync(join(parent, 'vxvirt-it-'));
    // libvirt runs /etc/libvirt/hooks/qemu, which operators make a symlink.
    this.hookPath = join(this.dir, 'qemu');
    symlinkSync(join(repo, 'hooks/qemu'), this.hookPath);
    this.networkHookPath = join(this.dir, 'network');
    symlinkSync(join(repo, 'hooks/network'), this.networkHookPath);
    must('ip', ['netns', 'add', this.ns]);
    this.ip('link', 'set', 'lo', 'up');
  }

  /** The host's dirs, and its change log: never the machine's syslog or /var/log. */
  get env(): { VXVIRT_CONFIG_DIR: string; VXVIRT_STATE_DIR: string; VXVIRT_LOG_FILE: string } {
    return { VXVIRT_CONFIG_DIR: join(this.dir, 'etc'), VXVIRT_STATE_DIR: join(this.dir, 'run'), VXVIRT_LOG_FILE: join(this.dir, 'vxvirt.log') };
  }

  ip(...args: string[]): string {
    return must('ip', ['-n', this.ns, ...args]);
  }

  /** `ip` arguments that run `cmd` in the namespace with libvirt's environment, this host's dirs and `extraEnv`. */
  private inside(cmd: string, args: readonly string[], extraEnv: Record<string, string>): string[] {
    const env = Object.entries({ ...LIBVIRT_HOOK_ENV, ...this.env, ...extraEnv }).map(([k, v]) => `${k}=${v}`);
    return ['netns', 'exec', this.ns, 'env', '-i', ...env, cmd, ...args];
  }

  exec(cmd: string, args: readonly string[], input?: string, extraEnv: Record<string, string> = {}): Result {
    return sh('ip', this.inside(cmd, args, extraEnv), input);
  }

  /** exec() without blocking. */
  execAsync(cmd: string, args: readonly string[], input?: string, extraEnv: Record<string, string> = {}): Promise<Result> {
    return shAsync('ip', this.inside(cmd, args, extraEnv), input);
  }

  /**
   * Wait until nobody holds the host lock. A release (or port-deleted) hands
   * the deletion of a pair to a process that keeps the lock until it is
   * done, and returns before: whoever looks at the devices afterwards waits
   * for the lock first, as `vxvirt status` does.
   */
  settle(): void {
    const lock = join(this.env.VXVIRT_STATE_DIR, 'lock');
    if (!existsSync(lock)) return;
    const r = sh('flock', ['--shared', '--wait', '30', lock, 'true']);
    if (r.status !== 0) throw new Error(`the host lock ${lock} was not free within 30 s: ${r.stderr}`);
  }

  /** settle() without blocking. */
  async settleAsync(): Promise<void> {
    const lock = join(this.env.VXVIRT_STATE_DIR, 'lock');
    if (!existsSync(lock)) return;
    const r = await shAsync('flock', ['--shared', '--wait', '30', lock, 'true']);
    if (r.status !== 0) throw new Error(`the host lock ${lock} was not free within 30 s: ${r.stderr}`);
  }

  /** Run the hook as libvirt does: `qemu DOMAIN OP SUBOP EXTRA`, XML on stdin, libvirt's environment; after a release, settle(). */
  hook(domain: string, op: string, subop: string, xml: string, extraEnv: Record<string, string> = {}): Result {
    const r = this.exec(this.hookPath, [domain, op, subop, '-'], xml, extraEnv);
    if (op === 'release') this.settle();
    return r;
  }

  /** Run the network hook as libvirt does: `network NET OP SUBOP -`, <hookData> on stdin, libvirt's environment; after port-deleted, settle(). */
  networkHook(network: string, op: string, subop: string, hookData: string, extraEnv: Record<string, string> = {}): Result {
    const r = this.exec(this.networkHookPath, [network, op, subop, '-'], hookData, extraEnv);
    if (op === 'port-deleted') this.settle();
    return r;
  }

  /** The hook without waiting for it, as libvirtd runs it for two domains at once; after a release, settles (without blocking). */
  async hookAsync(domain: string, op: string, subop: string, xml: string, extraEnv: Record<string, string> = {}): Promise<Result> {
    const r = await this.execAsync(this.hookPath, [domain, op, subop, '-'], xml, extraEnv);
    if (op === 'release') await this.settleAsync();
    return r;
  }

  /** networkHook() without blocking. */
  async networkHookAsync(network: string, op: string, subop: string, hookData: string, extraEnv: Record<string, string> = {}): Promise<Result> {
    const r = await this.execAsync(this.networkHookPath, [network, op, subop, '-'], hookData, extraEnv);
    if (op === 'port-deleted') await this.settleAsync();
    return r;
  }

  vxvirt(...args: string[]): Result {
    return this.exec(process.execPath, [join(repo, 'dist/cli.js'), ...args]);
  }

  /** A stand-in for a physical NIC: one end of a veth pair, up, with an address. */
  addUnderlay(name = 'ens47f1', address = '192.168.8.100/24', mtu = 1500): void {
    this.ip('link', 'add', name, 'mtu', String(mtu), 'type', 'veth', 'peer', 'name', `${name}p`);
    this.ip('link', 'set', `${name}p`, 'up');
    this.ip('link', 'set', name, 'up');
    this.ip('addr', 'add', address, 'dev', name);
  }

  link(name: string): IpLink | undefined {
    const r = sh('ip', ['-n', this.ns, '-d', '-j', 'link', 'show', 'dev', name]);
    if (r.status !== 0) return undefined;
    return (JSON.parse(r.stdout) as IpLink[])[0];
  }

  linkNames(): string[] {
    return (JSON.parse(this.ip('-j', 'link', 'show')) as IpLink[]).map((l) => l.ifname).sort();
  }

  fdb(dev: string): Array<{ mac: string; dst?: string }> {
    return JSON.parse(must('bridge', ['-n', this.ns, '-j', 'fdb', 'show', 'dev', dev]));
  }

  destroy(): void {
    sh('ip', ['netns', 'del', this.ns]);
    rmSync(this.dir, { recursive: true, force: true });
  }
}

export interface IpLink {
  ifindex: number;
  ifname: string;
  mtu: number;
  flags: string[];
  master?: string;
  group?: string;
  ifalias?: string;
  linkinfo?: { info_kind: string; info_data?: Record<string, unknown> };
}

export const domainXml = (name: string, uuid: string, nics: string) =>
  `<domain type='qemu'>\n  <name>${name}</name>\n  <uuid>${uuid}</uuid>\n  <memory unit='KiB'>131072</memory>\n  <os><type arch='x86_64'>hvm</type></os>\n  <devices>\n${nics}\n  </devices>\n</domain>\n`;

export const bridgeNic = (bridge: string, mac = '52:54:00:12:34:56') =>
  `    <interface type='bridge'>\n      <mac address='${mac}'/>\n      <source bridge='${bridge}'/>\n      <model type='virtio'/>\n    </interface>`;

export const networkNic = (network: string) => `    <interface type='network'>\n      <source network='${network}'/>\n      <model type='virtio'/>\n    </interface>`;

/** A MAC'd NIC on a libvirt network, as in a domain's definition. */
export const macNetworkNic = (network: string, mac: string) =>
  `    <interface type='network'>\n      <mac address='${mac}'/>\n      <source network='${network}'/>\n      <model type='virtio'/>\n    </interface>`;

/** What libvirt hands its network hook for port-created / port-deleted of a forward-bridge network's port. */
export const portHookData = (network: string, bridge: string, owner: string, ownerUuid: string, mac: string) => `<hookData>
  <network>
    <name>${network}</name>
    <uuid>4b5d1c1e-7a0f-4cfe-8c2e-0123456789ab</uuid>
    <forward mode='bridge'/>
    <bridge name='${bridge}'/>
  </network>
  <networkport>
    <uuid>0f1e2d3c-4b5a-4978-8796-a5b4c3d2e1f0</uuid>
    <owner>
      <name>${owner}</name>
      <uuid>${ownerUuid}</uuid>
    </owner>
    <mac address='${mac}'/>
    <plug type='bridge' bridge='${bridge}' macTableManager='kernel'/>
  </networkport>
</hookData>
`;
