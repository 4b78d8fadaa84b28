// The vxvirt lab: N simulated hypervisor hosts on one machine, each with its
// own libvirtd and real QEMU guests, joined by one L2 underlay.
//
// A host is a network namespace (`vxlab-<lab>-hN`) plus a private mount
// namespace held open by a "holder" process (`sleep infinity`). Every command
// for the host runs as `nsenter -t <holder> -m -n -- env -i PATH=.. HOME=.. cmd`,
// so daemons started earlier and later `virsh`/`vxvirt` calls share one view:
//   /sys                  fresh sysfs of the host's netns (as `ip netns exec` does)
//   /etc                  overlay on the machine's /etc (writes stay in the host)
//   /etc/libvirt          per-host config: the daemons' (daemons.ts), qemu.conf,
//                         empty qemu/, hooks/qemu -> <repo>/hooks/qemu (or the
//                         installed package's: VXVIRT_LAB_INSTALLED, below)
//   /etc/vxvirt           per-host vxvirt config (networks/*.json)
//   /var/log, /var/lib/libvirt, /var/cache/libvirt, /var/log/libvirt, /run: per-host dirs
//   /dev/kvm              a private 0666 node (libvirtd stops re-probing QEMU)
// All per-host dirs live under /run/vxvirt-lab/<lab>/hN/ and are re-bound at the
// same path inside the host, so paths in domain XML (serial logs) are the same
// inside and outside. The machine's own libvirt is never touched.
//
// The underlay: a "switch" netns `vxlab-<lab>-sw` with bridge br0 (multicast
// snooping off, so IGMP-less multicast floods) and a veth per host whose host
// end is `ens47f1` with 192.168.8.(100+i-1)/24.
//
// Cleanup is synchronous (works from 'exit' and signal handlers): every
// process whose netns is one of the lab's is killed by PID, then the
// namespaces and the state dir are removed. `reapAll()` does the same for
// anything left by an interrupted run (netns named vxlab-*, /run/vxvirt-lab/*).
import { randomBytes, randomUUID, createHash } from 'node:crypto';
import { spawn } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  openSync,
  closeSync,
  readFileSync,
  readdirSync,
  readlinkSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
  appendFileSync,
  copyFileSync,
  renameSync,
} from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { alive, run, runSync, sleep, sleepSync, waitFor, shellQuote, indent, describeExit, type RunResult, type RunOptions } from './exec.ts';
import { ensureGuestImage, CACHE_ROOT, type GuestImage } from './image.ts';
import { daemonConfigFiles, daemonSet, ensureDaemonBinaries, qemuConfExtra, type DaemonMode, type DaemonName, type DaemonSet, type DaemonSpec } from './daemons.ts';

export const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const STATE_ROOT = process.env.VXLAB_STATE_DIR ?? '/run/vxvirt-lab';
export const NETNS_PREFIX = 'vxlab-';
export const UNDERLAY_DEV = 'ens47f1';
export const UNDERLAY_NET = '192.168.8';
/** What an init system gives a daemon; libvirtd hands PATH/HOME on to its hooks. */
export const DAEMON_ENV: Record<string, string> = {
  PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
  HOME: '/root',
};
/**
 * What the lab runs as vxvirt: this checkout (dist/cli.js under this node,
 * hooks/qemu and hooks/network), or with VXVIRT_LAB_INSTALLED=1 the installed
 * Debian package: /usr/bin/vxvirt (the node on PATH runs it, as for an
 * operator) and /usr/lib/vxvirt/hooks/*. test/fresh-machine runs the demo so.
 */
export const INSTALLED = process.env.VXVIRT_LAB_INSTALLED === '1';
export const VXVIRT_ROOT = INSTALLED ? '/usr/lib/vxvirt' : REPO;
/** The command line that runs the vxvirt CLI. */
export const VXVIRT_CLI: readonly string[] = INSTALLED ? ['/usr/bin/vxvirt'] : [process.execPath, join(REPO, 'dist', 'cli.js')];
/** vxvirt's libvirt hook of one kind (what /etc/libvirt/hooks/KIND links to). */
export const vxvirtHookFile = (kind: 'qemu' | 'network'): string => join(VXVIRT_ROOT, 'hooks', kind);
export const TEMPLATE = join(REPO, 'templates', 'guest-domain.xml');
export const ARTIFACTS = join(REPO, '.lab');

export type Log = (line: string) => void;

export const underlayIp = (index: number): string => `${UNDERLAY_NET}.${100 + index - 1}`;

// ---------------------------------------------------------------------------
// Process / namespace helpers (synchronous: used by cleanup)

function netnsInode(name: string): number | undefined {
  try {
    return statSync(`/run/netns/${name}`).ino;
  } catch {
    return undefined;
  }
}

/** PIDs of all processes whose network namespace is one of `inodes`. */
function pidsInNetns(inodes: Set<number>): number[] {
  const pids: number[] = [];
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    const pid = Number(e);
    if (pid === process.pid) continue;
    try {
      const m = /^net:\[(\d+)\]$/.exec(readlinkSync(`/proc/${e}/ns/net`));
      if (m && inodes.has(Number(m[1]))) pids.push(pid);
    } catch {
      /* gone, or a kernel thread */
    }
  }
  return pids;
}

function killAndWait(pids: number[], graceMs: number): void {
  const signalAll = (sig: NodeJS.Signals) => {
    for (const p of pids) {
      try {
        process.kill(p, sig);
      } catch {
        /* already gone */
      }
    }
  };
  const waitGone = (ms: number) => {
    const deadline = Date.now() + ms;
    while (pids.some(alive) && Date.now() < deadline) sleepSync(50);
  };
  signalAll('SIGTERM');
  waitGone(graceMs);
  if (pids.some(alive)) {
    signalAll('SIGKILL');
    waitGone(5000);
  }
}

function mountsUnder(dir: string): string[] {
  const out: string[] = [];
  for (const line of readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    const mp = line.split(' ')[4];
    if (mp && (mp === dir || mp.startsWith(dir + '/'))) out.push(mp.replace(/\\040/g, ' '));
  }
  return out.sort((a, b) => b.length - a.length);
}

/** Kill everything in the given namespaces, delete them, remove `dir`. */
export function teardownSync(netns: string[], dir: string | undefined, log: Log = () => {}): void {
  const inodes = new Set(netns.map(netnsInode).filter((x): x is number => x !== undefined));
  if (inodes.size) {
    const pids = pidsInNetns(inodes);
    if (pids.length) {
      log(`stopping ${pids.length} process(es) in ${netns.join(', ')}: ${pids.join(' ')}`);
      // Daemons and guests first (libvirtd, virtlogd, qemu, hooks), holders last.
      killAndWait(pids, 4000);
    }
  }
  for (const ns of netns) {
    if (existsSync(`/run/netns/${ns}`)) {
      const r = runSync(['ip', 'netns', 'del', ns]);
      if (r.code !== 0) log(`ip netns del ${ns}: ${r.stderr.trim()}`);
    }
  }
  if (dir && existsSync(dir)) {
    for (const mp of mountsUnder(dir)) runSync(['umount', '-l', mp]);
    rmSync(dir, { recursive: true, force: true });
  }
}

interface LabState {
  id: string;
  owner: number | null;
  netns: string[];
  created: string;
}

/**
 * Remove labs left behind: those whose owning process is gone, those left up
 * on purpose (`cli up`, unless `onlyStale`), and vxlab-* namespaces no lab
 * claims. A lab whose owner is alive (a test run in progress) is kept unless
 * `all` is set.
 */
export function reapAll(log: Log = () => {}, { onlyStale = false, all = false } = {}): number {
  let n = 0;
  const claimed = new Set<string>();
  const dirs = existsSync(STATE_ROOT) ? readdirSync(STATE_ROOT) : [];
  for (const id of dirs) {
    const dir = join(STATE_ROOT, id);
    let state: LabState | undefined;
    try {
      state = JSON.parse(readFileSync(join(dir, 'state.json'), 'utf8')) as LabState;
    } catch {
      /* half-created lab */
    }
    const netns = state?.netns ?? [];
    if (!all && state?.owner && alive(state.owner)) {
      log(`keeping lab ${id}: its owner, pid ${state.owner}, is running (down --all removes it)`);
      netns.forEach((x) => claimed.add(x));
      continue;
    }
    if (onlyStale) {
      // Keep labs whose owner is alive, and labs left up on purpose (`cli up`).
      if (state && (state.owner === null || alive(state.owner))) {
        netns.forEach((x) => claimed.add(x));
        continue;
      }
      if (!state && Date.now() - statSync(dir).mtimeMs < 60_000) continue;
    }
    log(`removing lab ${id}`);
    teardownSync(netns, dir, log);
    netns.forEach((x) => claimed.add(x));
    n++;
  }
  const orphans = (existsSync('/run/netns') ? readdirSync('/run/netns') : []).filter(
    (x) => x.startsWith(NETNS_PREFIX) && !claimed.has(x),
  );
  if (orphans.length && !onlyStale) {
    log(`removing namespaces ${orphans.join(' ')}`);
    teardownSync(orphans, undefined, log);
    n++;
  }
  if (existsSync(STATE_ROOT) && readdirSync(STATE_ROOT).length === 0) rmSync(STATE_ROOT, { recursive: true, force: true });
  return n;
}

// ---------------------------------------------------------------------------
// Cleanup on exit / Ctrl-C

const activeLabs = new Set<Lab>();
let handlersInstalled = false;

function installHandlers(): void {
  if (handlersInstalled) return;
  handlersInstalled = true;
  process.on('exit', () => {
    for (const lab of [...activeLabs]) lab.destroySync();
  });
  for (const [sig, code] of [
    ['SIGINT', 130],
    ['SIGTERM', 143],
    ['SIGHUP', 129],
  ] as const) {
    process.on(sig, () => {
      process.stderr.write(`\nlab: ${sig}: tearing down ${activeLabs.size} lab(s)\n`);
      for (const lab of [...activeLabs]) lab.destroySync();
      process.exit(code);
    });
  }
}

// ---------------------------------------------------------------------------
// Host configuration files

const QEMU_CONF = `# vxvirt lab host: qemu.conf
# Guests run as root without cgroups (no cgroup fs in the host's mount ns, and
# several libvirtds would collide in one hierarchy) and without DAC relabelling
# (kernel and initrd are shared by all hosts).
user = "root"
group = "root"
dynamic_ownership = 0
remember_owner = 0
security_driver = "none"
cgroup_controllers = [ ]
`;

function holderScript(): string {
  // $1 = host dir, $2 = STATE_ROOT
  return `set -eu
H=$1; STATE=$2
umount -l /sys
mount -t sysfs -o nosuid,nodev,noexec sysfs /sys
mount -t overlay vxlab-etc -o lowerdir=/etc,upperdir=$H/etc-upper,workdir=$H/etc-work /etc
mkdir -p /etc/libvirt /etc/vxvirt
mount --bind $H/etc-libvirt /etc/libvirt
mount --bind $H/etc-vxvirt /etc/vxvirt
# The host's own /var/log (vxvirt's change log among others), then libvirt's dirs.
mount --bind $H/var-log /var/log
for d in lib cache log; do
  mkdir -p /var/$d/libvirt
  mount --bind $H/var-$d-libvirt /var/$d/libvirt
done
if [ -c /dev/kvm ]; then
  mount -t tmpfs -o size=16k,mode=0755 vxlab-kvm $H/kvm
  mknod -m 0666 $H/kvm/kvm c 10 232
  mount --bind $H/kvm/kvm /dev/kvm
fi
mount --bind $STATE $H/run/vxvirt-lab
mount --rbind $H/run /run
echo ready
exec sleep infinity
`;
}

// ---------------------------------------------------------------------------
// libvirt's QEMU capability cache, shared between labs

// Keyed by what libvirt itself checks (the binary of the daemon with the QEMU
// driver, libvirtd or virtqemud, the QEMU binary, the kernel), so an upgrade
// starts a new seed instead of making every lab re-probe.
const capsSeedDir = (daemonBinary: string): string => join(
  CACHE_ROOT,
  `libvirt-qemu-capabilities-${createHash('sha256')
    .update(
      [daemonBinary, '/usr/bin/qemu-system-x86_64']
        .map((f) => {
          try {
            const st = statSync(f);
            return `${f}:${st.size}:${st.ctimeMs}`;
          } catch {
            return `${f}:-`;
          }
        })
        .join(',') + readFileSync('/proc/sys/kernel/osrelease', 'utf8'),
    )
    .digest('hex')
    .slice(0, 12)}`,
);

function hasCapsSeed(seed: string): boolean {
  try {
    return readdirSync(seed).some((f) => f.endsWith('.xml'));
  } catch {
    return false;
  }
}

// ---------------------------------------------------------------------------

export interface LabOptions {
  /** Short name, part of the namespace names: [a-z0-9]{1,12}. */
  name: string;
  hosts: number;
  /**
   * Install vxvirt's hooks/qemu (vxvirtHookFile) as each host's /etc/libvirt/hooks/qemu (default
   * true); false installs none; a path installs that file instead (the
   * benchmark's hand-written shell hook).
   */
  hook?: boolean | string;
  /** libvirtd (default), or virtqemud + virtnetworkd (daemons.ts). */
  daemons?: DaemonMode;
  log?: Log;
}

export class Lab {
  readonly hosts: Host[] = [];
  /** Namespaces on the underlay without libvirt (a BGP route reflector), see addRouter. */
  readonly routers: Router[] = [];
  readonly switchNs: string;
  readonly dir: string;
  image!: GuestImage;
  /** The libvirt daemons every host runs. */
  daemons!: DaemonSet;
  /** libvirt's QEMU capability cache shared with other labs using the same daemon binary. */
  capsSeed!: string;
  private destroyed = false;
  readonly log: Log;
  readonly startedAt = Date.now();

  private constructor(
    readonly id: string,
    readonly options: LabOptions,
  ) {
    this.dir = join(STATE_ROOT, id);
    this.switchNs = `${NETNS_PREFIX}${id}-sw`;
    this.log = options.log ?? (() => {});
  }

  static async create(options: LabOptions): Promise<Lab> {
    if (process.getuid?.() !== 0) throw new Error('the lab must run as root');
    if (!/^[a-z0-9]{1,12}$/.test(options.name)) throw new Error(`bad lab name ${options.name}`);
    installHandlers();
    reapAll(options.log, { onlyStale: true });
    const lab = new Lab(`${options.name}-${randomBytes(2).toString('hex')}`, options);
    activeLabs.add(lab);
    try {
      await lab.setup();
    } catch (err) {
      const diag = await lab.diagnostics().catch((e) => `(diagnostics failed: ${e})`);
      lab.destroySync();
      throw annotate(err, `lab ${lab.id} setup failed`, diag);
    }
    return lab;
  }

  private saveState(): void {
    const state: LabState = {
      id: this.id,
      owner: process.pid,
      netns: [this.switchNs, ...this.hosts.map((h) => h.netns), ...this.routers.map((r) => r.netns)],
      created: new Date(this.startedAt).toISOString(),
    };
    writeFileSync(join(this.dir, 'state.json'), JSON.stringify(state, null, 2) + '\n');
  }

  /** Leave the lab running after this process exits (`cli up`). */
  detach(): void {
    const state = JSON.parse(readFileSync(join(this.dir, 'state.json'), 'utf8')) as LabState;
    state.owner = null;
    writeFileSync(join(this.dir, 'state.json'), JSON.stringify(state, null, 2) + '\n');
    activeLabs.delete(this);
  }

  private async setup(): Promise<void> {
    const t0 = Date.now();
    mkdirSync(this.dir, { recursive: true });
    for (let i = 1; i <= this.options.hosts; i++) this.hosts.push(new Host(this, i));
    this.saveState();
    const imageP = ensureGuestImage(this.log);
    imageP.catch(() => {}); // awaited below; a failure before then must not be an unhandled rejection
    const mode = this.options.daemons ?? 'monolithic';
    this.daemons = daemonSet(mode, await ensureDaemonBinaries(mode, this.log));
    this.capsSeed = capsSeedDir(this.daemons.hypervisorBinary);
    const sh = async (cmd: string[]) => run(cmd, { check: true });
    await sh(['ip', 'netns', 'add', this.switchNs]);
    await sh(['ip', '-n', this.switchNs, 'link', 'set', 'lo', 'up']);
    await sh(['ip', '-n', this.switchNs, 'link', 'add', 'br0', 'type', 'bridge', 'mcast_snooping', '0', 'stp_state', '0']);
    await sh(['ip', '-n', this.switchNs, 'link', 'set', 'br0', 'up']);
    // Each libvirtd probes QEMU once (~4 s, serialised: all are pinned to CPU 0)
    // unless its capability cache is seeded. The first lab on a machine probes
    // on one host, saves the cache, and seeds the others with it.
    const [first, ...rest] = this.hosts;
    if (first && !hasCapsSeed(this.capsSeed)) {
      await first.setup();
      await first.saveCapsSeed();
      await Promise.all(rest.map((h) => h.setup()));
    } else {
      await Promise.all(this.hosts.map((h) => h.setup()));
    }
    this.image = await imageP;
    this.log(
      `lab ${this.id}: ${this.hosts.length} host(s) up in ${Date.now() - t0} ms (${this.hosts
        .map((h) => `${h.name}=${h.ip}`)
        .join(' ')}; image ${this.image.cached ? 'cached' : 'built'})`,
    );
  }

  /**
   * Another namespace on the underlay, `vxlab-<lab>-NAME`, with `ens47f1` at
   * `ip`/24 and nothing running (no libvirt): a route reflector's place. It
   * is part of the lab: its processes are killed and it is removed with it.
   */
  async addRouter(name: string, ip: string): Promise<Router> {
    if (!/^[a-z0-9]{1,6}$/.test(name)) throw new Error(`bad router name ${name}`);
    const r = new Router(this, name, ip);
    this.routers.push(r);
    this.saveState();
    mkdirSync(r.dir, { recursive: true });
    const sh = async (cmd: string[]) => run(cmd, { check: true });
    await sh(['ip', 'netns', 'add', r.netns]);
    const port = `p-${name}`;
    await sh(['ip', '-n', this.switchNs, 'link', 'add', port, 'type', 'veth', 'peer', 'name', UNDERLAY_DEV, 'netns', r.netns]);
    await sh(['ip', '-n', this.switchNs, 'link', 'set', port, 'master', 'br0', 'up']);
    await sh(['ip', '-n', r.netns, 'link', 'set', 'lo', 'up']);
    await sh(['ip', '-n', r.netns, 'addr', 'add', `${ip}/24`, 'dev', UNDERLAY_DEV]);
    await sh(['ip', '-n', r.netns, 'link', 'set', UNDERLAY_DEV, 'up']);
    return r;
  }

  host(i: number): Host {
    const h = this.hosts[i - 1];
    if (!h) throw new Error(`no host ${i}`);
    return h;
  }

  /** Everything useful to understand a failure: devices, libvirt, guest consoles. */
  async diagnostics(): Promise<string> {
    const parts: string[] = [`===== lab ${this.id} diagnostics (${new Date().toISOString()})`];
    parts.push(`--- switch ${this.switchNs}: bridge link`);
    parts.push((await run(['ip', '-n', this.switchNs, '-d', 'link'])).stdout.trimEnd());
    for (const h of this.hosts) parts.push(await h.diagnostics());
    return parts.join('\n');
  }

  /** Run `fn`; on failure, add the lab's diagnostics to the error (and save them under .lab/). */
  async check<T>(what: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      const diag = await this.diagnostics().catch((e) => `(diagnostics failed: ${e})`);
      let saved = '';
      try {
        mkdirSync(ARTIFACTS, { recursive: true });
        const file = join(ARTIFACTS, `${this.id}-${Date.now()}.txt`);
        writeFileSync(file, `${what}\n${err instanceof Error ? err.stack : String(err)}\n\n${diag}\n`);
        saved = ` (saved in ${file})`;
      } catch {
        /* ignore */
      }
      throw annotate(err, `${what}${saved}`, diag);
    }
  }

  destroySync(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    activeLabs.delete(this);
    teardownSync([...this.hosts.map((h) => h.netns), ...this.routers.map((r) => r.netns), this.switchNs], this.dir, this.log);
    try {
      if (readdirSync(STATE_ROOT).length === 0) rmSync(STATE_ROOT, { recursive: true, force: true });
    } catch {
      /* another lab is using it, or it is gone */
    }
  }

  async destroy(): Promise<void> {
    this.destroySync();
  }
}

function annotate(err: unknown, what: string, diag: string): Error {
  const e = err instanceof Error ? err : new Error(String(err));
  e.message = `${what}: ${e.message}\n\n${diag}`;
  return e;
}

// ---------------------------------------------------------------------------

/** A namespace on the lab's underlay that runs no libvirt (Lab.addRouter). */
export class Router {
  readonly netns: string;
  readonly dir: string;

  constructor(
    readonly lab: Lab,
    readonly name: string,
    readonly ip: string,
  ) {
    this.netns = `${NETNS_PREFIX}${lab.id}-${name}`;
    this.dir = join(lab.dir, name);
  }

  /** Run a command in the namespace (`ip netns exec`: the machine's mounts, its own /sys). */
  exec(cmd: string[], opts: RunOptions = {}): Promise<RunResult> {
    return run(['ip', 'netns', 'exec', this.netns, ...cmd], { env: DAEMON_ENV, ...opts }).then((r) => ({ ...r, cmd }));
  }
}

export class Host {
  readonly name: string;
  readonly netns: string;
  readonly ip: string;
  readonly dir: string;
  holderPid = 0;
  readonly guests = new Map<string, Guest>();
  /** libvirt's host UUID (`host_uuid`): migration needs a different one on each host. */
  readonly uuid = randomUUID();

  constructor(
    readonly lab: Lab,
    readonly index: number,
  ) {
    this.name = `h${index}`;
    this.netns = `${NETNS_PREFIX}${lab.id}-${this.name}`;
    this.ip = underlayIp(index);
    this.dir = join(lab.dir, this.name);
  }

  /** The log of the daemon that runs the qemu hook (libvirtd.log or virtqemud.log), outside the host. */
  get logFile(): string {
    return join(this.dir, 'var-log-libvirt', this.lab.daemons.hypervisor.log!);
  }

  async setup(): Promise<void> {
    const d = this.dir;
    for (const sub of [
      'etc-upper',
      'etc-work',
      'etc-libvirt/qemu',
      'etc-libvirt/hooks',
      'etc-libvirt/nwfilter',
      'etc-vxvirt',
      'var-lib-libvirt/qemu',
      'var-lib-libvirt/images',
      'var-cache-libvirt/qemu',
      'var-log-libvirt/qemu',
      'var-log',
      'kvm',
      'run/vxvirt-lab',
      'run/lock',
      'guests',
    ]) {
      mkdirSync(join(d, sub), { recursive: true });
    }
    for (const [file, text] of Object.entries(daemonConfigFiles(this.lab.daemons, this))) writeFileSync(join(d, 'etc-libvirt', file), text);
    writeFileSync(join(d, 'etc-libvirt', 'qemu.conf'), QEMU_CONF + qemuConfExtra(this));
    const hook = this.lab.options.hook;
    if (hook !== false) symlinkSync(typeof hook === 'string' ? hook : vxvirtHookFile('qemu'), join(d, 'etc-libvirt', 'hooks', 'qemu'));
    // vxvirt's network hook (hot-plug, NICs on libvirt networks); not beside another qemu hook (the benchmark's).
    if (hook === true || hook === undefined) symlinkSync(vxvirtHookFile('network'), join(d, 'etc-libvirt', 'hooks', 'network'));

    const ns = this.netns;
    const sh = async (cmd: string[]) => run(cmd, { check: true });
    await sh(['ip', 'netns', 'add', ns]);
    const port = `p-${this.name}`;
    await sh(['ip', '-n', this.lab.switchNs, 'link', 'add', port, 'type', 'veth', 'peer', 'name', UNDERLAY_DEV, 'netns', ns]);
    await sh(['ip', '-n', this.lab.switchNs, 'link', 'set', port, 'master', 'br0', 'up']);
    await sh(['ip', '-n', ns, 'link', 'set', 'lo', 'up']);
    await sh(['ip', '-n', ns, 'addr', 'add', `${this.ip}/24`, 'dev', UNDERLAY_DEV]);
    await sh(['ip', '-n', ns, 'link', 'set', UNDERLAY_DEV, 'up']);

    // The holder: private mount namespace inside the host's netns.
    const logPath = join(d, 'holder.log');
    const out = openSync(logPath, 'a');
    const child = spawn(
      'nsenter',
      [`--net=/run/netns/${ns}`, '--', 'unshare', '--mount', '--propagation', 'private', '--', '/bin/sh', '-c', holderScript(), 'holder', d, STATE_ROOT],
      { detached: true, stdio: ['ignore', out, out], cwd: '/', env: DAEMON_ENV },
    );
    closeSync(out);
    child.unref();
    this.holderPid = child.pid!;
    await waitFor(
      `host ${this.name} holder to set up its mounts`,
      () => {
        const text = readFileSync(logPath, 'utf8');
        if (text.includes('ready')) return true;
        if (!alive(this.holderPid)) throw new Error(`holder for ${this.name} exited:\n${indent(text)}`);
        return false;
      },
      { timeoutMs: 15_000, intervalMs: 50 },
    );
    writeFileSync(join(d, 'holder.pid'), String(this.holderPid));
    const seed = this.lab.capsSeed;
    if (hasCapsSeed(seed)) {
      const caps = join(d, 'var-cache-libvirt', 'qemu', 'capabilities');
      mkdirSync(caps, { recursive: true });
      for (const f of readdirSync(seed)) if (f.endsWith('.xml')) copyFileSync(join(seed, f), join(caps, f));
    }
    await this.startDaemons();
  }

  /** Make libvirt probe QEMU now and keep the result for later labs. */
  async saveCapsSeed(): Promise<void> {
    const t = Date.now();
    await this.virsh('domcapabilities', '--virttype', 'qemu', '--arch', 'x86_64');
    const caps = join(this.dir, 'var-cache-libvirt', 'qemu', 'capabilities');
    const files = existsSync(caps) ? readdirSync(caps).filter((f) => f.endsWith('.xml')) : [];
    if (!files.length) return;
    const seed = this.lab.capsSeed;
    const tmp = `${seed}.tmp-${process.pid}`;
    rmSync(tmp, { recursive: true, force: true });
    mkdirSync(tmp, { recursive: true });
    for (const f of files) copyFileSync(join(caps, f), join(tmp, f));
    rmSync(seed, { recursive: true, force: true });
    renameSync(tmp, seed);
    this.lab.log(`${this.name}: probed QEMU in ${Date.now() - t} ms; capability cache saved in ${seed}`);
  }

  /** Run a command inside the host with the init-system environment (plus `env`). */
  exec(cmd: string[], opts: RunOptions & { extraEnv?: Record<string, string> } = {}): Promise<RunResult> {
    const envArgs = Object.entries({ ...DAEMON_ENV, ...(opts.extraEnv ?? {}) }).map(([k, v]) => `${k}=${v}`);
    return run(['nsenter', '-t', String(this.holderPid), '-m', '-n', '--', 'env', '-i', ...envArgs, ...cmd], opts).then((r) => ({
      ...r,
      cmd,
    }));
  }

  sh(script: string, opts: RunOptions = {}): Promise<RunResult> {
    return this.exec(['sh', '-c', script], opts);
  }

  virsh(...args: string[]): Promise<RunResult> {
    return this.exec(['virsh', '-q', '-c', 'qemu:///system', ...args], { timeoutMs: 120_000 });
  }

  /** The real vxvirt CLI, run inside the host (so it uses the host's /etc/vxvirt). */
  vxvirt(...args: string[]): Promise<RunResult> {
    return this.exec([...VXVIRT_CLI, ...args], { timeoutMs: 60_000 });
  }

  pidOf(daemon: DaemonName): number | undefined {
    try {
      const n = Number(readFileSync(join(this.dir, 'run', `${daemon}.pid`), 'utf8').trim());
      return n > 0 && alive(n) ? n : undefined;
    } catch {
      return undefined;
    }
  }

  /** Start the lab's libvirt daemons (daemons.ts) that are not running, in order. */
  async startDaemons(): Promise<void> {
    for (const d of this.lab.daemons.all) if (!this.pidOf(d.name)) await this.startDaemon(d);
  }

  /** Start one daemon and wait until it answers; returns its PID. */
  async startDaemon(d: DaemonSpec): Promise<number> {
    const t0 = Date.now();
    await this.exec(d.command, { check: true, timeoutMs: 60_000 });
    if (d.uri) {
      await waitFor(
        `${d.name} on ${this.name} to answer`,
        async () => (await this.exec(['virsh', '-q', '-c', d.uri!, 'uri'], { timeoutMs: 30_000 })).code === 0,
        { timeoutMs: 60_000, intervalMs: 100 },
      );
    }
    const pid = await waitFor(`${d.name} on ${this.name} to write its pid file`, () => this.pidOf(d.name), { timeoutMs: 10_000, intervalMs: 50 });
    if (d.uri) this.lab.log(`${this.name}: ${d.name} pid ${pid} ready in ${Date.now() - t0} ms`);
    return pid;
  }

  /** Start the daemon with the QEMU driver (libvirtd, or virtqemud with modular daemons); returns its PID. */
  async startLibvirtd(): Promise<number> {
    return this.startDaemon(this.lab.daemons.hypervisor);
  }

  /** PID of a running guest's QEMU (libvirt's pid file), if it is alive. */
  qemuPid(domain: string): number | undefined {
    try {
      const n = Number(readFileSync(join(this.dir, 'run', 'libvirt', 'qemu', `${domain}.pid`), 'utf8').trim());
      return n > 0 && alive(n) ? n : undefined;
    } catch {
      return undefined;
    }
  }

  /** Kill the daemon with the QEMU driver (libvirtd or virtqemud) by PID (SIGTERM by default) and wait until it is gone. */
  async stopLibvirtd(signal: NodeJS.Signals = 'SIGTERM'): Promise<number> {
    const name = this.lab.daemons.hypervisor.name;
    const pid = this.pidOf(name);
    if (!pid) throw new Error(`${name} on ${this.name} is not running`);
    process.kill(pid, signal);
    await waitFor(`${name} ${pid} on ${this.name} to exit`, () => !alive(pid), { timeoutMs: 30_000, intervalMs: 50 });
    return pid;
  }

  /** Network device names in the host. */
  async links(): Promise<string[]> {
    const r = await this.exec(['ip', '-o', 'link', 'show'], { check: true });
    return r.stdout
      .split('\n')
      .map((l) => /^\d+:\s+([^:@\s]+)/.exec(l)?.[1])
      .filter((x): x is string => !!x);
  }

  /**
   * Wait until nobody holds vxvirt's host lock: a release (libvirt's hook
   * returns at once) hands the deletion of a pair to a process that keeps the
   * lock until the pair is gone.
   */
  async settle(): Promise<void> {
    const r = await this.exec(['sh', '-c', '[ -e /run/vxvirt/lock ] || exit 0; exec flock --shared --wait 30 /run/vxvirt/lock true']);
    if (r.code !== 0) throw new Error(`${this.name}: vxvirt's host lock was not free within 30 s: ${r.stderr.trim()}`);
  }

  /** The vxvirt-looking devices (vxbr*, vxlan*) of the host, sorted, once the host lock is free. */
  async vxDevices(): Promise<string[]> {
    await this.settle();
    return (await this.links()).filter((n) => /^vx(br|lan)\d+$/.test(n)).sort();
  }

  async linkDetails(dev: string): Promise<string> {
    return (await this.exec(['ip', '-d', 'link', 'show', 'dev', dev])).stdout;
  }

  /** Guest domain names in a given state, from `virsh list`. */
  async domains(which: '--all' | '--state-running' = '--all'): Promise<string[]> {
    const r = await this.virsh('list', '--name', which);
    return r.stdout.split('\n').map((s) => s.trim()).filter(Boolean);
  }

  guest(spec: GuestSpec): Guest {
    const g = new Guest(this, spec);
    this.guests.set(spec.name, g);
    return g;
  }

  async diagnostics(): Promise<string> {
    const daemons = (this.lab.daemons?.all ?? []).map((d) => `${d.name} ${this.pidOf(d.name) ?? 'not running'}`).join(', ');
    const p: string[] = [`----- host ${this.name} (netns ${this.netns}, holder ${this.holderPid}, ${daemons})`];
    const add = async (title: string, cmd: string[]) => {
      const r = await this.exec(cmd, { timeoutMs: 20_000 }).catch((e) => ({ stdout: '', stderr: String(e), code: 1 }) as RunResult);
      p.push(`--- ${title}`);
      p.push((r.stdout + r.stderr).trimEnd() || '(nothing)');
    };
    await add('ip -d link', ['ip', '-d', 'link']);
    await add('ip addr (brief)', ['ip', '-br', 'addr']);
    await add('bridge link', ['bridge', 'link']);
    await add('bridge fdb (vxlan*)', ['sh', '-c', 'for d in /sys/class/net/vxlan*; do [ -e "$d" ] && bridge fdb show dev "${d##*/}"; done; true']);
    await add('virsh list --all', ['virsh', '-c', 'qemu:///system', 'list', '--all']);
    await add('/etc/vxvirt', ['sh', '-c', 'ls -la /etc/vxvirt /etc/vxvirt/* 2>&1; for f in /etc/vxvirt/networks/*.json; do [ -f "$f" ] && { echo "# $f"; cat "$f"; }; done; true']);
    await add('/etc/libvirt/hooks', ['ls', '-la', '/etc/libvirt/hooks']);
    for (const d of this.lab.daemons?.all ?? []) {
      if (!d.log) continue;
      p.push(`--- ${d.log} (tail)`);
      p.push(tail(join(this.dir, 'var-log-libvirt', d.log), 60));
    }
    for (const g of this.guests.values()) {
      p.push(`--- guest ${g.name}: serial console (tail)`);
      p.push(tail(g.serialPath, 25));
      p.push(`--- guest ${g.name}: /var/log/libvirt/qemu/${g.name}.log (tail)`);
      p.push(tail(join(this.dir, 'var-log-libvirt', 'qemu', `${g.name}.log`), 15));
    }
    return p.join('\n');
  }
}

function tail(file: string, lines: number): string {
  try {
    const t = readFileSync(file, 'utf8').trimEnd().split('\n');
    return t.slice(-lines).join('\n') || '(empty)';
  } catch (e) {
    return `(cannot read ${file}: ${(e as Error).message})`;
  }
}

// ---------------------------------------------------------------------------

export interface GuestSpec {
  name: string;
  /** Overlay address with prefix, e.g. 10.20.1.2/24. */
  addr: string;
  peers?: string[];
  /** Bridge the NIC is plugged into (vxbrN): `<interface type='bridge'><source bridge=…/>`. */
  bridge: string;
  /** Instead of the bridge: `<interface type='network'><source network=…/>` (a libvirt network). */
  network?: string;
  mac?: string;
  /** A second NIC (eth1, `vx.addr1`), after the first: on a bridge, or on a libvirt network (neither: only the address, for a NIC hot-plugged later). */
  second?: { addr: string; bridge?: string; network?: string; mac?: string };
  mtu?: number;
  pingSize?: number;
  interval?: number;
}

export interface PingStats {
  ok: number;
  fail: number;
}

function xmlEscape(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/'/g, '&apos;').replace(/"/g, '&quot;');
}

export function renderTemplate(template: string, values: Record<string, string>): string {
  const out = template.replace(/\{\{([A-Z_]+)\}\}/g, (m, key: string) => {
    const v = values[key];
    if (v === undefined) throw new Error(`template placeholder ${m} has no value`);
    return xmlEscape(v);
  });
  return out;
}

export class Guest {
  readonly name: string;
  readonly serialPath: string;
  readonly xmlPath: string;
  readonly mac: string;
  readonly uuid = randomUUID();

  constructor(
    readonly host: Host,
    readonly spec: GuestSpec,
  ) {
    this.name = spec.name;
    this.serialPath = join(host.dir, 'guests', `${spec.name}.serial`);
    this.xmlPath = join(host.dir, 'guests', `${spec.name}.xml`);
    const h = createHash('sha256').update(`${host.lab.id}/${host.name}/${spec.name}`).digest();
    this.mac = spec.mac ?? `52:54:00:${[h[0], h[1], h[2]].map((b) => b!.toString(16).padStart(2, '0')).join(':')}`;
  }

  get cmdline(): string {
    const s = this.spec;
    return [
      'console=ttyS0',
      'loglevel=4',
      'panic=-1',
      `vx.addr=${s.addr}`,
      s.second ? `vx.addr1=${s.second.addr}` : '',
      s.peers?.length ? `vx.peers=${s.peers.join(',')}` : '',
      s.mtu ? `vx.mtu=${s.mtu}` : '',
      s.pingSize ? `vx.ping_size=${s.pingSize}` : '',
      s.interval ? `vx.interval=${s.interval}` : '',
    ]
      .filter(Boolean)
      .join(' ');
  }

  xml(): string {
    const image = this.host.lab.image;
    const xml = renderTemplate(readFileSync(TEMPLATE, 'utf8'), {
      NAME: this.name,
      UUID: this.uuid,
      KERNEL: image.kernel,
      INITRD: image.initrd,
      CMDLINE: this.cmdline,
      SERIAL_LOG: this.serialPath,
      BRIDGE: this.spec.bridge,
      MAC: this.mac,
    });
    const withSecond = this.spec.second?.bridge || this.spec.second?.network ? xml.replace('</interface>', `</interface>\n    ${this.secondNicXml()}`) : xml;
    if (!this.spec.network) return withSecond;
    const nic = /<interface type='bridge'>([\s\S]*?)<source bridge='[^']*'\/>/;
    if (!nic.test(xml)) throw new Error(`${TEMPLATE}: no <interface type='bridge'> with <source bridge=…/> to turn into a network NIC`);
    return withSecond.replace(nic, (_m, between: string) => `<interface type='network'>${between}<source network='${xmlEscape(this.spec.network!)}'/>`);
  }

  /** The second NIC's MAC: given, or derived like the first's. */
  get mac1(): string {
    const h = createHash('sha256').update(`${this.host.lab.id}/${this.host.name}/${this.name}/eth1`).digest();
    return this.spec.second?.mac ?? `52:54:00:${[h[0], h[1], h[2]].map((b) => b!.toString(16).padStart(2, '0')).join(':')}`;
  }

  private secondNicXml(): string {
    const s = this.spec.second!;
    const source = s.network ? `<source network='${xmlEscape(s.network)}'/>` : `<source bridge='${xmlEscape(s.bridge ?? '')}'/>`;
    return `<interface type='${s.network ? 'network' : 'bridge'}'><mac address='${this.mac1}'/>${source}<model type='virtio'/></interface>`;
  }

  async define(): Promise<RunResult> {
    writeFileSync(this.xmlPath, this.xml());
    const r = await this.host.virsh('define', this.xmlPath);
    if (r.code !== 0) throw new Error(`virsh define ${this.name} on ${this.host.name} failed (${describeExit(r)}): ${r.stderr.trim()}`);
    return r;
  }

  /** `virsh start`; the result is returned, not checked (a start may be expected to fail). */
  async start(): Promise<RunResult> {
    rmSync(this.serialPath, { force: true });
    return this.host.virsh('start', this.name);
  }

  async startOrThrow(): Promise<RunResult> {
    const r = await this.start();
    if (r.code !== 0) throw new Error(`virsh start ${this.name} on ${this.host.name} failed (${describeExit(r)}): ${(r.stderr || r.stdout).trim()}`);
    return r;
  }

  destroy(): Promise<RunResult> {
    return this.host.virsh('destroy', this.name);
  }

  shutdown(): Promise<RunResult> {
    return this.host.virsh('shutdown', this.name);
  }

  async state(): Promise<string> {
    return (await this.host.virsh('domstate', this.name)).stdout.trim();
  }

  async waitState(want: string, timeoutMs = 30_000): Promise<void> {
    await waitFor(`guest ${this.name} on ${this.host.name} to be ${want}`, async () => (await this.state()) === want, {
      timeoutMs,
      intervalMs: 100,
    });
  }

  serial(): string {
    try {
      return readFileSync(this.serialPath, 'utf8');
    } catch {
      return '';
    }
  }

  /** A position in the console output: later waits can look only past it. */
  mark(): number {
    return this.serial().length;
  }

  lines(since = 0): string[] {
    return this.serial()
      .slice(since)
      .split(/\r?\n/)
      .filter((l) => l.startsWith('VXLAB '));
  }

  /** Wait for a console line matching `re` (after `since`); returns the line. */
  async waitLine(re: RegExp, { since = 0, timeoutMs = 60_000 } = {}): Promise<string> {
    return waitFor(`guest ${this.name} on ${this.host.name} to print ${re}`, () => this.lines(since).find((l) => re.test(l)), {
      timeoutMs,
      intervalMs: 250,
    });
  }

  pingStats(peer: string, since = 0): PingStats {
    const s = { ok: 0, fail: 0 };
    for (const l of this.lines(since)) {
      const m = /^VXLAB ping (\S+) (ok|fail)/.exec(l);
      if (m && m[1] === peer) s[m[2] as 'ok' | 'fail']++;
    }
    return s;
  }

  /** Wait until `peer` answered `count` pings after `since`. */
  async waitPingOk(peer: string, { since = 0, count = 1, timeoutMs = 60_000 } = {}): Promise<PingStats> {
    return waitFor(
      `guest ${this.name} (${this.spec.addr}) on ${this.host.name} to get ${count} ping answer(s) from ${peer}`,
      () => {
        const s = this.pingStats(peer, since);
        return s.ok >= count ? s : undefined;
      },
      { timeoutMs, intervalMs: 250 },
    );
  }

  /** Wait until `count` pings to `peer` failed after `since`; throws if any succeeded. */
  async waitPingFail(peer: string, { since = 0, count = 3, timeoutMs = 60_000 } = {}): Promise<PingStats> {
    return waitFor(
      `guest ${this.name} (${this.spec.addr}) on ${this.host.name} to see ${count} failed pings to ${peer}`,
      () => {
        const s = this.pingStats(peer, since);
        if (s.ok > 0) throw new Error(`guest ${this.name} (${this.spec.addr}) on ${this.host.name} reached ${peer}, which must be unreachable (${s.ok} ok, ${s.fail} fail)`);
        return s.fail >= count ? s : undefined;
      },
      { timeoutMs, intervalMs: 250 },
    );
  }

  /** eth0's MTU as reported by the guest. */
  async eth0Mtu(timeoutMs = 60_000): Promise<number> {
    const l = await this.waitLine(/^VXLAB eth0 mtu \d+/, { timeoutMs });
    return Number(/mtu (\d+)/.exec(l)![1]);
  }
}

export { shellQuote, sleep, waitFor, run, runSync, appendFileSync, alive };
