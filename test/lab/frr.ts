// FRR (Debian's `frr` package: zebra + bgpd) for the lab's hosts and the EVPN
// scale benchmark: one pair of daemons per simulated host, in that host's
// network namespace, with the configuration the caller writes.
//
// Each daemon runs with explicit paths for its pid file, vty sockets and
// zebra's API socket, all in one run directory:
//   inside a lab host   /var/run/frr/NAME (`-N NAME`, FRR's pathspace), the
//                       host's private /run
//   elsewhere           a directory the caller owns (a router's or the
//                       benchmark's state dir), and no -N, with which the
//                       daemons would make /run/frr/NAME on the machine
// The daemons drop to the `frr` user: the run directory is chown'd to it and
// the configuration file must be readable by it. Both daemons read the same
// integrated `frr.conf` (each takes the commands it knows).
//
// Stopping is by PID, read from the pid files (SIGTERM, then SIGKILL), and
// `stopSync` works from 'exit' and signal handlers; the lab's teardown kills
// every process of its namespaces anyway, so a failed run leaves nothing.
import { chownSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { alive, sleepSync, waitFor, type RunResult } from './exec.ts';
import type { Host, Router } from './lab.ts';

export const ZEBRA = '/usr/lib/frr/zebra';
export const BGPD = '/usr/lib/frr/bgpd';
export const VTYSH = '/usr/bin/vtysh';
export const FRR_DAEMONS = ['zebra', 'bgpd'] as const;
export type FrrDaemon = (typeof FRR_DAEMONS)[number];

/** The `frr` user and group the daemons run as (Debian's frr package makes them). */
function frrIds(): { uid: number; gid: number } {
  const user = readFileSync('/etc/passwd', 'utf8')
    .split('\n')
    .map((l) => l.split(':'))
    .find((f) => f[0] === 'frr');
  if (!user) throw new Error("no user 'frr': install Debian's frr package (apt-get install frr)");
  return { uid: Number(user[2]), gid: Number(user[3]) };
}

/** What FRR needs on this machine; an error naming what is missing, or undefined. */
export function frrMissing(): string | undefined {
  const gone = [ZEBRA, BGPD, VTYSH].filter((f) => !existsSync(f));
  if (gone.length) return `missing ${gone.join(', ')} (apt-get install frr)`;
  try {
    frrIds();
  } catch (e) {
    return (e as Error).message;
  }
  return undefined;
}

export interface FrrPlace {
  /** A name for messages and diagnostics. */
  name: string;
  /**
   * FRR's pathspace (`-N`). The daemons make /var/run/frr/PATHSPACE even when
   * every path is given, so only where /run is private (a lab host).
   */
  pathspace?: string;
  /** Run a command in the namespace (a lab host's exec, or `ip netns exec`). */
  exec(cmd: string[], opts?: { timeoutMs?: number; input?: string }): Promise<RunResult>;
  /** The run directory as the daemons see it. */
  runDir: string;
  /** The same directory as this process sees it (they differ inside a lab host). */
  runDirOutside: string;
  /** Where frr.conf is written, the same path inside and outside. */
  confPath: string;
}

export class Frr {
  constructor(readonly place: FrrPlace) {}

  get name(): string {
    return this.place.name;
  }

  private pidFile(d: FrrDaemon, outside = true): string {
    return join(outside ? this.place.runDirOutside : this.place.runDir, `${d}.pid`);
  }

  /** The command line of one daemon, every path explicit. */
  command(d: FrrDaemon): string[] {
    const run = this.place.runDir;
    return [
      d === 'zebra' ? ZEBRA : BGPD,
      '-d',
      ...(this.place.pathspace ? ['-N', this.place.pathspace] : []),
      '-f',
      this.place.confPath,
      '-i',
      join(run, `${d}.pid`),
      '--vty_socket',
      run,
      '-z',
      join(run, 'zserv.api'),
      // No vty TCP port: dozens of hosts, and vtysh uses the unix sockets.
      '-P',
      '0',
    ];
  }

  /** PID of a running daemon, from its pid file. */
  pid(d: FrrDaemon): number | undefined {
    try {
      const n = Number(readFileSync(this.pidFile(d), 'utf8').trim());
      return n > 0 && alive(n) ? n : undefined;
    } catch {
      return undefined;
    }
  }

  pids(): number[] {
    return FRR_DAEMONS.map((d) => this.pid(d)).filter((p): p is number => p !== undefined);
  }

  /** Write frr.conf and start zebra, then bgpd (zebra -d returns once it accepts clients). */
  async start(conf: string): Promise<void> {
    const missing = frrMissing();
    if (missing) throw new Error(`FRR for ${this.name}: ${missing}`);
    const { uid, gid } = frrIds();
    mkdirSync(dirname(this.place.confPath), { recursive: true });
    writeFileSync(this.place.confPath, conf, { mode: 0o644 });
    mkdirSync(this.place.runDirOutside, { recursive: true });
    chownSync(this.place.runDirOutside, uid, gid);
    for (const d of FRR_DAEMONS) {
      if (this.pid(d)) continue;
      const r = await this.place.exec(this.command(d), { timeoutMs: 30_000 });
      if (r.code !== 0) throw new Error(`${d} (${this.name}) failed to start (exit ${r.code}): ${(r.stderr + r.stdout).trim()}`);
      await waitFor(`${d} (${this.name}) to write its pid file`, () => this.pid(d), { timeoutMs: 10_000, intervalMs: 20 });
    }
  }

  /** `vtysh -c CMD` against this pathspace's daemons; stdout (throws on failure). */
  async vtysh(...cmds: string[]): Promise<string> {
    // Not -N with --vty_socket: vtysh would append the pathspace to the socket dir.
    const r = await this.place.exec([VTYSH, '--vty_socket', this.place.runDir, ...cmds.flatMap((c) => ['-c', c])], { timeoutMs: 30_000 });
    if (r.code !== 0) throw new Error(`vtysh (${this.name}) ${cmds.join('; ')}: exit ${r.code}: ${(r.stderr + r.stdout).trim()}`);
    return r.stdout;
  }

  async vtyshJson<T>(cmd: string): Promise<T> {
    const out = await this.vtysh(cmd);
    try {
      return JSON.parse(out) as T;
    } catch {
      throw new Error(`vtysh (${this.name}) -c '${cmd}': not JSON:\n${out.slice(0, 2000)}`);
    }
  }

  /** Established BGP sessions in the l2vpn evpn address family. */
  async establishedEvpnPeers(): Promise<string[]> {
    const s = await this.vtyshJson<{ peers?: Record<string, { state?: string }> }>('show bgp l2vpn evpn summary json');
    return Object.entries(s.peers ?? {})
      .filter(([, p]) => p.state === 'Established')
      .map(([addr]) => addr)
      .sort();
  }

  /** Resident memory of each daemon in KiB (VmRSS), for those running. */
  rssKiB(): Partial<Record<FrrDaemon, number>> {
    const out: Partial<Record<FrrDaemon, number>> = {};
    for (const d of FRR_DAEMONS) {
      const pid = this.pid(d);
      if (!pid) continue;
      try {
        const m = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
        if (m) out[d] = Number(m[1]);
      } catch {
        /* exited meanwhile */
      }
    }
    return out;
  }

  /** Kill the daemons by PID (bgpd first) and wait until they are gone; synchronous, for cleanup paths. */
  stopSync(): void {
    const pids = [...FRR_DAEMONS].reverse().map((d) => this.pid(d)).filter((p): p is number => p !== undefined);
    const signal = (sig: NodeJS.Signals) => {
      for (const p of pids) {
        try {
          process.kill(p, sig);
        } catch {
          /* gone */
        }
      }
    };
    signal('SIGTERM');
    const deadline = Date.now() + 3000;
    while (pids.some(alive) && Date.now() < deadline) sleepSync(20);
    if (pids.some(alive)) {
      signal('SIGKILL');
      const d2 = Date.now() + 3000;
      while (pids.some(alive) && Date.now() < d2) sleepSync(20);
    }
    for (const d of FRR_DAEMONS) rmSync(this.pidFile(d), { force: true });
  }

  /** The daemons' view of things, for a failed test's diagnostics. */
  async diagnostics(): Promise<string> {
    const p = [`--- FRR (${this.name}): zebra ${this.pid('zebra') ?? 'not running'}, bgpd ${this.pid('bgpd') ?? 'not running'}`];
    for (const c of ['show bgp l2vpn evpn summary', 'show evpn vni', 'show evpn mac vni all', 'show bgp l2vpn evpn route type multicast']) {
      p.push(`--- vtysh: ${c}`);
      p.push(await this.vtysh(c).then((o) => o.trimEnd() || '(nothing)', (e: Error) => e.message));
    }
    return p.join('\n');
  }
}

// ---------------------------------------------------------------------------
// Where the daemons run in the lab

/** FRR in a lab host: pathspace = the host's name, run dir in its private /run. */
export function hostFrr(h: Pick<Host, 'name' | 'dir' | 'exec'>): Frr {
  return new Frr({
    name: h.name,
    pathspace: h.name,
    exec: (cmd, opts) => h.exec(cmd, opts),
    runDir: `/var/run/frr/${h.name}`,
    runDirOutside: join(h.dir, 'run', 'frr', h.name),
    confPath: join(h.dir, 'frr', 'frr.conf'),
  });
}

/** FRR in a lab router namespace (Lab.addRouter): everything in the router's own dir. */
export function routerFrr(r: Pick<Router, 'name' | 'dir' | 'exec'>): Frr {
  const run = join(r.dir, 'frr-run');
  return new Frr({ name: r.name, exec: (cmd, opts) => r.exec(cmd, opts), runDir: run, runDirOutside: run, confPath: join(r.dir, 'frr.conf') });
}

