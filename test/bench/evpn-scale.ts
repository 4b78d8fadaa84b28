// `npm run bench:evpn-scale`: BGP EVPN through FRR at fleet scale, beside
// unicast head-end replication (the peers mode), with 16 and 32 simulated
// hosts on one machine. Prints one table (results go in BENCHMARKS.md);
// asserts only that each measured state was reached.
//
//   npm run bench:evpn-scale                    16 and 32 hosts, 5 rounds each
//   HOSTS=8,16 ROUNDS=3 HEADEND_ROUNDS=1 npm run bench:evpn-scale
//   PARTS=headend npm run bench:evpn-scale      only one half (evpn, headend)
//
// A simulated host is a network namespace `vxbench-<pid>-hN` on one underlay
// bridge (namespace `vxbench-<pid>-sw`, 192.168.8.(100+N-1)/24 on `ens47f1`),
// with its own vxvirt config/state dirs (VXVIRT_CONFIG_DIR, …) and FRR
// (zebra + bgpd, test/lab/frr.ts) configured by `vxvirt frr-config
// --route-reflector 192.168.8.99`, the route reflector in `vxbench-<pid>-rr`
// (`vxvirt frr-config --reflector-for 192.168.8.0/24`). No
// libvirt, no QEMU: a guest is the hook's `prepare` (hooks/qemu, as libvirt
// forks it, with a domain XML on stdin) plus a veth on `vxbrN` standing in
// for its tap, and its stop is the veth's removal plus `release`.
//
// EVPN (network `ev`, VNI 42, `--evpn`, the same file on every host):
//   every host but h1 runs a guest; then, ROUNDS times, h1 starts its first
//   guest on the VNI (t0 = the prepare's fork) and every other host's
//   `bridge monitor fdb` reports h1's flood entry (all-zero MAC, dst h1), the
//   stand-in guest sends one ARP request and its MAC arrives everywhere as an
//   extern_learn entry; then h1 stops the guest (t0 = the tap's removal
//   before release) and both entries are reported gone everywhere.
// Head-end (network `uc`, VNI 101, `--remote` every host, in the same file):
// every host runs a guest, each vxlan101 floods to the N-1 others; then a
// peer is added to the file and `vxvirt apply` runs on every host, one after
// the other (a fleet tool's loop) and all at once, until every host floods
// to it; and the old file again.
import { spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { run, waitFor, type RunResult } from '../lab/exec.ts';
import { teardownSync } from '../lab/lab.ts';
import { Frr, frrMissing } from '../lab/frr.ts';
import { bridgeNic, domainXml, repo } from '../support/netns.ts';
import { median, quantile } from './stats.ts';

const SIZES = (process.env.HOSTS ?? '16,32').split(',').map(Number);
const ROUNDS = Number(process.env.ROUNDS ?? 5);
/** Head-end rounds: each runs `vxvirt apply` 2n+2 times (n hosts one after the other, then all at once, both ways). */
const HEADEND_ROUNDS = Number(process.env.HEADEND_ROUNDS ?? 2);
/** PARTS=evpn or PARTS=headend: only that half. */
const PARTS = (process.env.PARTS ?? 'evpn,headend').split(',');
const ASN = 65000;
const DEV = 'ens47f1';
const NET = '192.168.8';
const RR_IP = `${NET}.99`;
const ABSENT = `${NET}.250`;
const ZERO = '00:00:00:00:00:00';
const PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
const out = (l = '') => process.stdout.write(`${l}\n`);
const note = (l: string) => process.stderr.write(`[evpn-scale] ${l}\n`);

const uuid = (i: number) => `00000000-0000-4000-8000-${String(i).padStart(12, '0')}`;
const mac = (host: number, vni: number) => `52:54:00:${vni.toString(16).padStart(2, '0')}:${(host >> 8).toString(16).padStart(2, '0')}:${(host & 255).toString(16).padStart(2, '0')}`;

/** A line of `bridge monitor fdb`, stamped when it arrived. */
interface FdbEvent {
  at: number;
  line: string;
}

/** `fn` over `items`, at most `width` at a time (set-up steps that are not measured). */
async function inBatches<T, R>(items: readonly T[], width: number, fn: (x: T) => Promise<R>): Promise<R[]> {
  const out: R[] = [];
  for (let i = 0; i < items.length; i += width) out.push(...(await Promise.all(items.slice(i, i + width).map(fn))));
  return out;
}

class SimHost {
  readonly ns: string;
  readonly ip: string;
  readonly dir: string;
  readonly frr: Frr;
  private monitor?: ChildProcess;
  readonly events: FdbEvent[] = [];

  constructor(
    readonly bench: Bench,
    readonly index: number,
  ) {
    this.ns = `${bench.prefix}-h${index}`;
    this.ip = `${NET}.${100 + index - 1}`;
    this.dir = join(bench.dir, `h${index}`);
    const runDir = join(this.dir, 'frr-run');
    this.frr = new Frr({ name: `h${index}`, exec: (cmd, o) => this.exec(cmd, o), runDir, runDirOutside: runDir, confPath: join(this.dir, 'frr.conf') });
  }

  get env(): Record<string, string> {
    return {
      PATH,
      HOME: '/root',
      LC_ALL: 'C',
      VXVIRT_CONFIG_DIR: join(this.dir, 'etc'),
      VXVIRT_STATE_DIR: join(this.dir, 'run'),
      VXVIRT_LOG_FILE: join(this.dir, 'vxvirt.log'),
    };
  }

  exec(cmd: string[], o: { timeoutMs?: number; input?: string } = {}): Promise<RunResult> {
    // Generous: dozens of hosts' vxvirt at once on a small machine queue for the CPU.
    return run(['ip', 'netns', 'exec', this.ns, ...cmd], { env: this.env, timeoutMs: o.timeoutMs ?? 600_000, input: o.input });
  }

  async must(cmd: string[], input?: string): Promise<RunResult> {
    const r = await this.exec(cmd, { input });
    if (r.code !== 0) throw new Error(`h${this.index}: ${cmd.join(' ')}: exit ${r.code}: ${(r.stderr + r.stdout).trim()}`);
    return r;
  }

  vxvirt(...args: string[]): Promise<RunResult> {
    return this.must([process.execPath, join(repo, 'dist', 'cli.js'), ...args]);
  }

  /** libvirt's qemu hook call: fork+exec of hooks/qemu with the domain XML on stdin. */
  hook(domain: string, op: 'prepare' | 'release', xml: string): Promise<RunResult> {
    return this.must([join(repo, 'hooks', 'qemu'), domain, op, op === 'prepare' ? 'begin' : 'end', '-'], xml);
  }

  async setup(): Promise<void> {
    mkdirSync(this.dir, { recursive: true });
    const sw = this.bench.switchNs;
    const sh = (cmd: string[]) => run(cmd, { check: true });
    await sh(['ip', 'netns', 'add', this.ns]);
    await sh(['ip', '-n', sw, 'link', 'add', `p-h${this.index}`, 'type', 'veth', 'peer', 'name', DEV, 'netns', this.ns]);
    await sh(['ip', '-n', sw, 'link', 'set', `p-h${this.index}`, 'master', 'br0', 'up']);
    await sh(['ip', '-n', this.ns, 'link', 'set', 'lo', 'up']);
    await sh(['ip', '-n', this.ns, 'addr', 'add', `${this.ip}/24`, 'dev', DEV]);
    await sh(['ip', '-n', this.ns, 'link', 'set', DEV, 'up']);
  }

  /** Follow `bridge monitor fdb` (line-buffered), stamping each line. */
  startMonitor(): void {
    const child = spawn('ip', ['netns', 'exec', this.ns, 'stdbuf', '-oL', 'bridge', 'monitor', 'fdb'], { stdio: ['ignore', 'pipe', 'ignore'], env: this.env });
    let buf = '';
    child.stdout!.setEncoding('utf8').on('data', (d: string) => {
      const at = performance.now();
      buf += d;
      const lines = buf.split('\n');
      buf = lines.pop()!;
      for (const line of lines) this.events.push({ at, line });
    });
    this.monitor = child;
  }

  stopMonitor(): void {
    this.monitor?.kill('SIGTERM');
    this.monitor = undefined;
  }

  /** When a line matching `re` arrived after `since` (ms, performance.now()). */
  seen(re: RegExp, since: number): number | undefined {
    return this.events.find((e) => e.at >= since && re.test(e.line))?.at;
  }

  async floodDsts(vni: number): Promise<string[]> {
    const r = await this.exec(['bridge', '-j', 'fdb', 'show', 'dev', `vxlan${vni}`]);
    if (r.code !== 0) return [];
    return (JSON.parse(r.stdout) as Array<{ mac: string; dst?: string }>).filter((e) => e.mac === ZERO && e.dst).map((e) => e.dst!).sort();
  }

  // A stand-in guest on vxbrN: its "tap" is a veth whose other end, sgN, has the guest's MAC and address.
  async plugGuest(vni: number): Promise<void> {
    const tap = `tap${vni}`;
    await this.must(['ip', 'link', 'add', tap, 'type', 'veth', 'peer', 'name', `sg${vni}`]);
    await this.must(['ip', 'link', 'set', `sg${vni}`, 'address', mac(this.index, vni), 'up']);
    await this.must(['ip', 'link', 'set', tap, 'master', `vxbr${vni}`, 'up']);
  }

  /** One ARP request from the stand-in guest (for an address nobody has): the bridge learns its MAC. */
  async guestSpeaks(vni: number): Promise<void> {
    const g = `sg${vni}`;
    await this.must(['ip', 'addr', 'replace', `10.${vni % 256}.${this.index >> 8}.${(this.index & 255) + 1}/16`, 'dev', g]);
    await this.exec(['ping', '-c', '1', '-W', '0.2', '-I', g, `10.${vni % 256}.255.254`]);
  }

  async unplugGuest(vni: number): Promise<void> {
    await this.must(['ip', 'link', 'del', `tap${vni}`]);
  }

  xml(vni: number): string {
    return domainXml(`g${vni}-h${this.index}`, uuid(vni * 1000 + this.index), bridgeNic(`vxbr${vni}`, mac(this.index, vni)));
  }

  async startGuest(vni: number): Promise<void> {
    await this.hook(`g${vni}-h${this.index}`, 'prepare', this.xml(vni));
    await this.plugGuest(vni);
  }

  async stopGuest(vni: number): Promise<void> {
    await this.unplugGuest(vni);
    await this.hook(`g${vni}-h${this.index}`, 'release', this.xml(vni));
  }
}

class Bench {
  readonly prefix = `vxbench-${process.pid}`;
  readonly switchNs = `${this.prefix}-sw`;
  readonly rrNs = `${this.prefix}-rr`;
  readonly dir: string;
  readonly hosts: SimHost[] = [];
  readonly rr: Frr;
  private torn = false;

  constructor(readonly n: number) {
    this.dir = mkdtempSync(join(tmpdir(), 'vxvirt-evpn-bench-'));
    chmodSync(this.dir, 0o755); // the frr user reads its config under it
    for (let i = 1; i <= n; i++) this.hosts.push(new SimHost(this, i));
    const rrRun = join(this.dir, 'rr', 'frr-run');
    this.rr = new Frr({
      name: 'rr',
      exec: (cmd, o) => run(['ip', 'netns', 'exec', this.rrNs, ...cmd], { env: { PATH, HOME: '/root' }, timeoutMs: o?.timeoutMs, input: o?.input }),
      runDir: rrRun,
      runDirOutside: rrRun,
      confPath: join(this.dir, 'rr', 'frr.conf'),
    });
  }

  get netns(): string[] {
    return [this.switchNs, this.rrNs, ...this.hosts.map((h) => h.ns)];
  }

  async setup(): Promise<void> {
    const sh = (cmd: string[]) => run(cmd, { check: true });
    await sh(['ip', 'netns', 'add', this.switchNs]);
    await sh(['ip', '-n', this.switchNs, 'link', 'add', 'br0', 'type', 'bridge', 'mcast_snooping', '0', 'stp_state', '0']);
    await sh(['ip', '-n', this.switchNs, 'link', 'set', 'br0', 'up']);
    await sh(['ip', 'netns', 'add', this.rrNs]);
    await sh(['ip', '-n', this.switchNs, 'link', 'add', 'p-rr', 'type', 'veth', 'peer', 'name', DEV, 'netns', this.rrNs]);
    await sh(['ip', '-n', this.switchNs, 'link', 'set', 'p-rr', 'master', 'br0', 'up']);
    await sh(['ip', '-n', this.rrNs, 'link', 'set', 'lo', 'up']);
    await sh(['ip', '-n', this.rrNs, 'addr', 'add', `${RR_IP}/24`, 'dev', DEV]);
    await sh(['ip', '-n', this.rrNs, 'link', 'set', DEV, 'up']);
    for (const h of this.hosts) await h.setup();
  }

  /** FRR on the route reflector and every host, as `vxvirt frr-config` says; returns the time until every session is up. */
  async startFrr(): Promise<number> {
    const rrConf = await run(['ip', 'netns', 'exec', this.rrNs, process.execPath, join(repo, 'dist', 'cli.js'), 'frr-config', '--asn', String(ASN), '--local', RR_IP, '--reflector-for', `${NET}.0/24`], {
      env: { PATH, HOME: '/root', VXVIRT_CONFIG_DIR: join(this.dir, 'rr', 'etc'), VXVIRT_STATE_DIR: join(this.dir, 'rr', 'state') },
    });
    if (rrConf.code !== 0) throw new Error(`vxvirt frr-config on the route reflector: ${rrConf.stderr}`);
    const confs = await inBatches(this.hosts, 4, (h) => h.vxvirt('frr-config', '--asn', String(ASN), '--route-reflector', RR_IP));
    const t = performance.now();
    await this.rr.start(`hostname rr\n${rrConf.stdout}`);
    for (const [i, h] of this.hosts.entries()) await h.frr.start(`hostname h${h.index}\n${confs[i]!.stdout}`);
    await waitFor(`all ${this.n} hosts to have an established EVPN session with the route reflector`, async () => (await this.rr.establishedEvpnPeers()).length === this.n, {
      timeoutMs: 120_000,
      intervalMs: 250,
    });
    return performance.now() - t;
  }

  teardown(): void {
    if (this.torn) return;
    this.torn = true;
    for (const h of this.hosts) {
      h.stopMonitor();
      h.frr.stopSync();
    }
    this.rr.stopSync();
    // Anything else started in the namespaces (a hook, ping) is killed by PID there.
    teardownSync(this.netns, this.dir);
  }
}

interface Figures {
  hosts: number;
  sessionsUp: number;
  bringUp: number;
  prepareMs: number[];
  floodAll: number[];
  floodAfterHook: number[];
  withdrawAfterHook: number[];
  floodFirst: number[];
  macAll: number[];
  withdrawAll: number[];
  macGoneAll: number[];
  releaseMs: number[];
  zebraKiB: number[];
  bgpdKiB: number[];
  rrKiB: number;
  headSeq: number[];
  headPar: number[];
  headParRemove: number[];
  applyEach: number[];
}

async function measure(n: number): Promise<Figures> {
  const bench = new Bench(n);
  const cleanup = () => bench.teardown();
  process.once('exit', cleanup);
  const onSignal = () => {
    cleanup();
    process.exit(130);
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    await bench.setup();
    // ---- definitions: the same file on every host, then FRR (frr-config reads them)
    const files = await makeFiles(bench);
    await inBatches(bench.hosts, 4, (h) => h.vxvirt('apply', files.base));
    // Head-end alone needs no FRR (and frr-config, no evpn network to take the address from).
    const sessionsUp = PARTS.includes('evpn') ? await bench.startFrr() : NaN;
    note(`${n} hosts: FRR up, ${n} sessions to the route reflector in ${(sessionsUp / 1000).toFixed(1)} s`);
    const f: Figures = { hosts: n, sessionsUp, bringUp: NaN, prepareMs: [], floodAll: [], floodAfterHook: [], withdrawAfterHook: [], floodFirst: [], macAll: [], withdrawAll: [], macGoneAll: [], releaseMs: [], zebraKiB: [], bgpdKiB: [], rrKiB: NaN, headSeq: [], headPar: [], headParRemove: [], applyEach: [] };
    if (PARTS.includes('evpn')) await evpnPart(bench, f);
    if (PARTS.includes('headend')) await headEndPart(bench, f, files);
    return f;
  } finally {
    cleanup();
    process.removeListener('exit', cleanup);
    process.removeListener('SIGINT', onSignal);
    process.removeListener('SIGTERM', onSignal);
  }
}

async function evpnPart(bench: Bench, f: Figures): Promise<void> {
  const n = bench.n;
  const [h1, ...others] = bench.hosts as [SimHost, ...SimHost[]];
  let t = performance.now();
  await Promise.all(others.map((h) => h.startGuest(42)));
  await waitFor(`the ${n - 1} hosts with guests to flood to each other`, async () => {
    const d = await Promise.all(others.map((h) => h.floodDsts(42)));
    return d.every((x) => x.length === n - 2);
  }, { timeoutMs: 120_000, intervalMs: 250 });
  f.bringUp = performance.now() - t;
  note(`${n - 1} hosts started a guest at once: full mesh of flood entries in ${(f.bringUp / 1000).toFixed(1)} s`);
  for (const h of others) h.startMonitor();
  await new Promise((r) => setTimeout(r, 500)); // the monitors are listening

  const flood = new RegExp(`^${ZERO} dev vxlan42 dst ${h1.ip.replace(/\./g, '\\.')}\\b`);
  const floodGone = new RegExp(`^Deleted ${ZERO} dev vxlan42 dst ${h1.ip.replace(/\./g, '\\.')}\\b`);
  const h1mac = mac(1, 42);
  const macIn = new RegExp(`^${h1mac} dev vxlan42 .*extern_learn`);
  const macGone = new RegExp(`^Deleted ${h1mac} dev vxlan42 `);
  const allSeen = (re: RegExp, since: number, what: string) =>
    waitFor(what, () => {
      const at = others.map((h) => h.seen(re, since));
      return at.every((x) => x !== undefined) ? (at as number[]) : undefined;
    }, { timeoutMs: 60_000, intervalMs: 20 });

  for (let round = 0; round < ROUNDS; round++) {
    // Start: prepare (the pair), the tap on vxbr42.
    t = performance.now();
    await h1.hook('g42-h1', 'prepare', h1.xml(42));
    f.prepareMs.push(performance.now() - t);
    await h1.plugGuest(42);
    const floodAt = await allSeen(flood, t, `every host to get h1's flood entry (round ${round + 1})`);
    f.floodAll.push(Math.max(...floodAt) - t);
    f.floodAfterHook.push(Math.max(...floodAt) - t - f.prepareMs.at(-1)!);
    f.floodFirst.push(Math.min(...floodAt) - t);
    const ts = performance.now();
    await h1.guestSpeaks(42);
    const macAt = await allSeen(macIn, ts, `every host to learn h1's guest MAC by BGP (round ${round + 1})`);
    f.macAll.push(Math.max(...macAt) - ts);
    if (round === 0) {
      for (const h of bench.hosts) {
        const rss = h.frr.rssKiB();
        f.zebraKiB.push(rss.zebra ?? NaN);
        f.bgpdKiB.push(rss.bgpd ?? NaN);
      }
      f.rrKiB = bench.rr.rssKiB().bgpd ?? NaN;
    }
    // Stop: QEMU's tap goes, then release (the last guest: the pair goes).
    t = performance.now();
    await h1.unplugGuest(42);
    const tr = performance.now();
    await h1.hook('g42-h1', 'release', h1.xml(42));
    f.releaseMs.push(performance.now() - tr);
    const goneAt = await allSeen(floodGone, t, `every host to drop h1's flood entry (round ${round + 1})`);
    f.withdrawAll.push(Math.max(...goneAt) - t);
    f.withdrawAfterHook.push(Math.max(...goneAt) - tr - f.releaseMs.at(-1)!);
    const macGoneAt = await allSeen(macGone, t, `every host to drop h1's guest MAC (round ${round + 1})`);
    f.macGoneAll.push(Math.max(...macGoneAt) - t);
    note(`round ${round + 1}: flood entry everywhere ${f.floodAll.at(-1)!.toFixed(0)} ms, MAC ${f.macAll.at(-1)!.toFixed(0)} ms; withdrawn ${f.withdrawAll.at(-1)!.toFixed(0)} ms, MAC ${f.macGoneAll.at(-1)!.toFixed(0)} ms`);
    await new Promise((r) => setTimeout(r, 300));
  }
  for (const h of others) h.stopMonitor();
}

async function headEndPart(bench: Bench, f: Figures, files: Files): Promise<void> {
  const n = bench.n;
  let t = 0;
  // Every host runs a guest on uc: each vxlan101 floods to the n-1 others.
  await Promise.all(bench.hosts.map((h) => h.startGuest(101)));
  await waitFor(`every host to flood VNI 101 to the ${n - 1} others`, async () => (await Promise.all(bench.hosts.map((h) => h.floodDsts(101)))).every((d) => d.length === n - 1), { timeoutMs: 60_000 });
  const hasAbsent = async (want: boolean) => (await Promise.all(bench.hosts.map((h) => h.floodDsts(101)))).every((d) => d.includes(ABSENT) === want);
  /** `file` applied on every host at once, checked to add (or remove) the peer everywhere; returns the ms it took. */
  const applyOnAll = async (file: string, added: boolean, how: string): Promise<number> => {
    const t0 = performance.now();
    await Promise.all(bench.hosts.map((h) => h.vxvirt('apply', file)));
    if (!(await hasAbsent(added))) throw new Error(`apply on every host${how}: ${added ? 'not every host floods to the added peer' : 'a host still floods to the removed peer'}`);
    return performance.now() - t0;
  };
  for (let round = 0; round < HEADEND_ROUNDS; round++) {
    // The file gains a peer; `vxvirt apply` on each host, one after the other (a fleet tool's loop).
    t = performance.now();
    for (const h of bench.hosts) {
      const ts = performance.now();
      await h.vxvirt('apply', files.withPeer);
      f.applyEach.push(performance.now() - ts);
    }
    if (!(await hasAbsent(true))) throw new Error('apply on every host: not every host floods to the added peer');
    f.headSeq.push(performance.now() - t);
    f.headParRemove.push(await applyOnAll(files.base, false, ''));
    // The same, on all hosts at once.
    f.headPar.push(await applyOnAll(files.withPeer, true, ' at once'));
    f.headParRemove.push(await applyOnAll(files.base, false, ' at once'));
    note(`round ${round + 1}: a peer added on ${n} hosts one after the other ${f.headSeq.at(-1)!.toFixed(0)} ms, all at once ${f.headPar.at(-1)!.toFixed(0)} ms`);
  }
}

interface Files {
  /** ev (VNI 42, --evpn) and uc (VNI 101, --remote every host), no --local: the same on every host. */
  base: string;
  /** The same with one more peer in uc. */
  withPeer: string;
}

/** The files a fleet tool hands every host: what `list-networks --json` prints for definitions made once, elsewhere (a scratch config dir). */
async function makeFiles(bench: Bench): Promise<Files> {
  const [h1] = bench.hosts as [SimHost];
  const scratch = { ...h1.env, VXVIRT_CONFIG_DIR: join(bench.dir, 'scratch-etc') };
  const cli = async (...args: string[]) => {
    const r = await run(['ip', 'netns', 'exec', h1.ns, process.execPath, join(repo, 'dist', 'cli.js'), ...args], { env: scratch });
    if (r.code !== 0) throw new Error(`vxvirt ${args.join(' ')} (scratch): ${r.stderr}`);
    return r.stdout;
  };
  const all = bench.hosts.flatMap((h) => ['--remote', h.ip]);
  if (PARTS.includes('evpn')) await cli('define-network', 'ev', '--vni', '42', '--dev', DEV, '--evpn', '--no-libvirt');
  await cli('define-network', 'uc', '--vni', '101', '--dev', DEV, '--no-libvirt', ...all);
  const files = { base: join(bench.dir, 'networks.json'), withPeer: join(bench.dir, 'networks-with-peer.json') };
  writeFileSync(files.base, await cli('list-networks', '--json'));
  await cli('set-peers', 'uc', ...all, '--remote', ABSENT);
  writeFileSync(files.withPeer, await cli('list-networks', '--json'));
  return files;
}

// ---------------------------------------------------------------------------

const fmt = (v: number) => (Number.isFinite(v) ? v.toFixed(0) : '-');
const med = (a: number[]) => fmt(median(a));
const p95 = (a: number[]) => fmt(quantile(a, 0.95));
const mib = (kib: number) => (Number.isFinite(kib) ? (kib / 1024).toFixed(1) : '-');

if (process.getuid?.() !== 0) throw new Error('the EVPN scale benchmark must run as root');
const missing = frrMissing();
if (missing) throw new Error(`the EVPN scale benchmark needs FRR: ${missing}`);
const started = Date.now();
const results: Figures[] = [];
for (const n of SIZES) {
  results.push(await measure(n));
  note(`${n} hosts done: ${JSON.stringify(results.at(-1))}`);
}

out(`vxvirt EVPN scale benchmark — ${new Date().toISOString().slice(0, 10)}, ${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}, node ${process.version}, ${ROUNDS} rounds, ${((Date.now() - started) / 1000).toFixed(0)} s`);
out();
out('| hosts | measurement | median ms | p95 ms | n |');
out('|---:|---|---:|---:|---:|');
for (const f of results) {
  const row = (label: string, a: number[]) => out(`| ${f.hosts} | ${label} | ${med(a)} | ${p95(a)} | ${a.length} |`);
  out(`| ${f.hosts} | EVPN: all ${f.hosts} BGP sessions to the route reflector established, from FRR's start | ${fmt(f.sessionsUp)} | | 1 |`);
  out(`| ${f.hosts} | EVPN: ${f.hosts - 1} hosts start a guest at once → full mesh of flood entries | ${fmt(f.bringUp)} | | 1 |`);
  row('EVPN: prepare hook of the first guest on the VNI (makes the pair)', f.prepareMs);
  row(`EVPN: prepare → its flood entry on the first of the ${f.hosts - 1} other hosts`, f.floodFirst);
  row(`EVPN: prepare → its flood entry on every other host`, f.floodAll);
  row(`EVPN: prepare hook returned → its flood entry on every other host`, f.floodAfterHook);
  row('EVPN: guest sends its first frame → its MAC (extern_learn) on every other host', f.macAll);
  row('EVPN: release hook of the last guest (deletes the pair)', f.releaseMs);
  row('EVPN: guest stops (tap gone, release) → flood entry gone on every other host', f.withdrawAll);
  row('EVPN: release hook returned → flood entry gone on every other host', f.withdrawAfterHook);
  row('EVPN: guest stops → its MAC gone on every other host', f.macGoneAll);
  row(`head-end: vxvirt apply of a file with one more peer, on one host (${f.hosts} peers, in use)`, f.applyEach);
  row(`head-end: a peer added: the file applied on ${f.hosts} hosts one after the other → every host floods to it`, f.headSeq);
  row(`head-end: the same peer removed: the old file applied on ${f.hosts} hosts at once`, f.headParRemove);
  row(`head-end: a peer added: the file applied on ${f.hosts} hosts at once`, f.headPar);
}
out();
out('| hosts | memory per host (RSS) | median MiB | max MiB |');
out('|---:|---|---:|---:|');
for (const f of results) {
  const sum = f.zebraKiB.map((z, i) => z + f.bgpdKiB[i]!);
  out(`| ${f.hosts} | zebra | ${mib(median(f.zebraKiB))} | ${mib(Math.max(...f.zebraKiB))} |`);
  out(`| ${f.hosts} | bgpd | ${mib(median(f.bgpdKiB))} | ${mib(Math.max(...f.bgpdKiB))} |`);
  out(`| ${f.hosts} | zebra + bgpd | ${mib(median(sum))} | ${mib(Math.max(...sum))} |`);
  out(`| ${f.hosts} | route reflector's bgpd (once per fleet) | ${mib(f.rrKiB)} | |`);
  out(`| ${f.hosts} | head-end: no daemon (the kernel's fdb entries only) | 0 | 0 |`);
}
