// Crash safety: the hook is killed (SIGKILL, as the OOM killer or a host
// losing power would) at each of its named steps, in each kind of scenario,
// and then the next thing that happens on that network — the same domain's
// next hook, another domain's hook, or `vxvirt reconcile` — must converge:
// no vxvirt device without users, no user without its devices (present and
// as defined), the host lock free, no release left pending. Then libvirt's
// remaining releases must leave nothing at all behind.
//
// The killed hook is a test bundle built with VXVIRT_CRASH_POINTS=true, run
// with node exactly as hooks/qemu runs dist/hook.cjs (libvirt's environment,
// XML on stdin, inside the host's namespace). Every recovery goes through
// the real hooks/qemu and dist/.
//
// The matrix holds each scenario's points that are on its path. A point
// that is not (a second domain's prepare finds the pair in place and applies
// nothing, so 'ensure:applied' and 'apply:links-done' never come; a non-last
// release finds no unused pair to plan a teardown for) cannot crash there:
// one test per scenario checks that the hook indeed runs past them.
//
// Each combination starts from a reset host and touches nothing outside its
// own network namespace and state dir, so HOSTS hosts run them at once: each
// test awaits the outcome of its own combination, which ran on whichever
// host was free.
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { buildCrashBundle, crashPointsInSource } from '../support/crash-bundle.ts';
import { bridgeNic, domainXml, portHookData, repo, shAsync, TestHost, type IpLink, type Result } from '../support/netns.ts';

const NO_LIBVIRT = { LIBVIRT_DEFAULT_URI: 'qemu:///system?socket=/nonexistent/libvirt-sock' };
const GROUP_BASE = 0x76000000;

// ---- the host ------------------------------------------------------------------

const uuid = (n: number) => `00000000-0000-4000-8000-${String(n).padStart(12, '0')}`;
interface Vm {
  name: string;
  xml: string;
}
const vm = (name: string, n: number, ...bridges: string[]): Vm => ({
  name,
  xml: domainXml(name, uuid(n), bridges.map((b, i) => bridgeNic(b, `52:54:00:00:${String(n).padStart(2, '0')}:${String(i).padStart(2, '0')}`)).join('\n')),
});
const vmA = vm('vm-a', 1, 'vxbr42');
const vmB = vm('vm-b', 2, 'vxbr42');
const vmC = vm('vm-c', 3, 'vxbr42');
const vmM = vm('vm-m', 4, 'vxbr42', 'vxbr43');
const probe = vm('vm-probe', 5, 'vxbr49');

function ok(r: Result, what: string): void {
  assert.is(r.status, 0, `${what}: exit ${r.status}${r.signal ? ` (${r.signal})` : ''}, stderr: ${r.stderr}`);
}

// Every host command is awaited, not run with spawnSync: that would block the
// combinations running on the other hosts.
/** The qemu hook as libvirt runs it (hooks/qemu); after a release, it waits for the host lock (TestHost.settle). */
const hook = (host: TestHost, v: Vm, op: 'prepare' | 'release', env: Record<string, string> = {}): Promise<Result> =>
  host.hookAsync(v.name, op, op === 'prepare' ? 'begin' : 'end', v.xml, env);

const cli = (host: TestHost, ...args: string[]): Promise<Result> => host.execAsync(process.execPath, [join(repo, 'dist/cli.js'), ...args], '', NO_LIBVIRT);

/** Back to a host with the definitions and nothing else: no devices of vxvirt's, no state. */
async function reset(host: TestHost): Promise<void> {
  for (const l of await links(host)) if (/^vx|^vnet/.test(l.ifname)) await shAsync('ip', ['-n', host.ns, 'link', 'del', l.ifname]);
  rmSync(host.env.VXVIRT_STATE_DIR, { recursive: true, force: true });
}

interface StatusRow {
  name: string | null;
  vni: number;
  defined: boolean;
  bridge: { exists: boolean; owned?: boolean };
  vxlan: { exists: boolean; owned?: boolean };
  domains: Array<{ name: string }>;
  drift: Array<{ detail: string }>;
}

async function links(host: TestHost): Promise<IpLink[]> {
  const r = await shAsync('ip', ['-n', host.ns, '-d', '-j', 'link', 'show']);
  assert.is(r.status, 0, `ip link show: ${r.stderr}`);
  return JSON.parse(r.stdout) as IpLink[];
}

/** The *.json files under the host's state dir (or its subdir `under`): a plain directory, read from here. */
function stateFiles(host: TestHost, under = ''): string[] {
  const dir = join(host.env.VXVIRT_STATE_DIR, under);
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { recursive: true })
    .map(String)
    .filter((f) => f.endsWith('.json'))
    .map((f) => join(dir, f));
}

/** The invariants a converged host holds. */
async function assertConverged(host: TestHost, where: string): Promise<void> {
  const r = await cli(host, 'status', '--json');
  ok(r, `${where}: vxvirt status --json`);
  const status = JSON.parse(r.stdout) as StatusRow[];
  assert.equal(status.filter((r) => !r.defined).map((r) => r.vni), [], `${where}: no devices of undefined networks`);
  const byVni = new Map(status.map((r) => [r.vni, r]));
  // One look at the devices, after status (which waits for the host lock): the same facts as asking for each.
  const devices = await links(host);
  const link = (name: string) => devices.find((l) => l.ifname === name);
  for (const l of devices) {
    const vni = Number(l.group) - GROUP_BASE;
    if (!(vni >= 1 && vni <= 0xffffff)) continue;
    const users = byVni.get(vni)?.domains.map((d) => d.name) ?? [];
    assert.ok(users.length > 0, `${where}: ${l.ifname} (vxvirt's, VNI ${vni}) exists but nobody uses it`);
  }
  for (const r of status) {
    if (r.domains.length === 0) continue;
    const who = `${where}: network ${r.name}, used by ${r.domains.map((d) => d.name).join(',')}`;
    assert.ok(r.bridge.exists && r.bridge.owned && r.vxlan.exists && r.vxlan.owned, `${who}: its pair is missing`);
    assert.equal(r.drift, [], `${who}: its devices differ from the definition`);
    const vx = link(`vxlan${r.vni}`);
    const br = link(`vxbr${r.vni}`);
    assert.is(vx?.master, `vxbr${r.vni}`, `${who}: vxlan is a port of the bridge`);
    assert.ok(vx?.flags.includes('UP') && br?.flags.includes('UP'), `${who}: both up`);
  }
  assert.equal(stateFiles(host, 'releasing'), [], `${where}: a release is still pending`);
  // The lock is free: a hook that must take it succeeds within one second (and undoes itself).
  ok(await hook(host, probe, 'prepare', { VXVIRT_LOCK_TIMEOUT: '1' }), `${where}: probe prepare with a 1 s lock timeout`);
  ok(await hook(host, probe, 'release', { VXVIRT_LOCK_TIMEOUT: '1' }), `${where}: probe release with a 1 s lock timeout`);
  assert.equal((await links(host)).filter((l) => l.ifname === 'vxbr49'), [], `${where}: the probe left nothing`);
}

/** libvirt's remaining releases; then not a device, not a state file may be left. */
async function assertAllReleased(host: TestHost, running: readonly Vm[], where: string): Promise<void> {
  for (const v of running) ok(await hook(host, v, 'release'), `${where}: final release of ${v.name}`);
  const left = (await links(host)).filter((l) => Number(l.group) - GROUP_BASE > 0).map((l) => l.ifname);
  assert.equal(left, [], `${where}: vxvirt devices left after every domain was released`);
  assert.equal(stateFiles(host), [], `${where}: state files left after every domain was released`);
}

// ---- the matrix ----------------------------------------------------------------

interface Scenario {
  name: string;
  /** Domains started before the one whose hook is killed. */
  before: Vm[];
  /** unplug: the network hook's port-deleted of a NIC hot-plugged (port-created) on mc into the target before. */
  op: 'prepare' | 'release' | 'unplug';
  target: Vm;
  /** Crash points on this scenario's path: the matrix. The others get one test that they do not fire. */
  reached: string[];
}

const PREPARE_POINTS = ['prepare:recorded-domain', 'ensure:applied', 'apply:links-done', 'prepare:ensured', 'prepare:recorded-user'];
const RELEASE_POINTS = ['release:begun', 'release:unrecorded', 'teardown:planned', 'release:torn-down'];
const UNPLUG_POINTS = ['unplug:begun', 'unplug:unrecorded'];
/**
 * Points in the process a release hands the deletion of its pair to (it
 * holds the host lock until it has deleted the pair and ended the release):
 * killed there, the hook itself has exited 0, the lock is free again and
 * the release is still pending.
 */
const CHILD_POINTS = ['detached:begun', 'detached:applied'];
const POINTS = { prepare: PREPARE_POINTS, release: [...RELEASE_POINTS, ...CHILD_POINTS], unplug: [...UNPLUG_POINTS, 'teardown:planned', ...CHILD_POINTS] };
const HOTPLUG_MAC = '52:54:00:00:99:01';
/** The hot-plugged NIC's port on mc (VNI 43), as libvirt hands it to the network hook. */
const hotplugPort = (v: Vm): string => portHookData('mc', 'vxbr43', v.name, /<uuid>([^<]+)<\/uuid>/.exec(v.xml)![1]!, HOTPLUG_MAC);

const scenarios: Scenario[] = [
  { name: 'first prepare on a network', before: [], op: 'prepare', target: vmA, reached: PREPARE_POINTS },
  // The pair exists and matches: nothing is applied, so the apply points are not on the path.
  { name: "second domain's prepare on a used network", before: [vmB], op: 'prepare', target: vmA, reached: ['prepare:recorded-domain', 'prepare:ensured', 'prepare:recorded-user'] },
  { name: 'last release', before: [vmA], op: 'release', target: vmA, reached: POINTS.release },
  // vm-b still uses the network: no pair is unused, no teardown is planned.
  { name: 'non-last release', before: [vmA, vmB], op: 'release', target: vmA, reached: ['release:begun', 'release:unrecorded', 'release:torn-down'] },
  // The first hit of each point is after the first of its two networks: half done.
  { name: 'multi-network prepare', before: [], op: 'prepare', target: vmM, reached: PREPARE_POINTS },
  { name: 'multi-network release', before: [vmM], op: 'release', target: vmM, reached: POINTS.release },
  // vm-a (vxbr42) got a NIC on mc hot-plugged, and it is unplugged: its last on mc, so mc's pair goes.
  { name: 'hot-unplug of the last NIC on a network', before: [vmA], op: 'unplug', target: vmA, reached: POINTS.unplug },
  // vm-m also has its own NIC on vxbr43 from boot: it stays a user of mc, nothing is journaled or torn down.
  { name: 'hot-unplug of one of two NICs on a network', before: [vmM], op: 'unplug', target: vmM, reached: [] },
];

interface Recovery {
  name: string;
  /** Runs the recovery; returns the domains libvirt still considers started afterwards. */
  run(host: TestHost, s: Scenario, started: Vm[]): Promise<Vm[]>;
}

const recoveries: Recovery[] = [
  {
    // What libvirt itself does next for that domain: a failed start is
    // released; a stopped domain is, some time later, started again.
    name: 'same domain, next hook',
    run: async (host, s, started) => {
      if (s.op === 'prepare' || s.op === 'unplug') {
        // A failed start is released; after an unplug, the domain's next hook is (at the latest) its stop.
        ok(await hook(host, s.target, 'release'), s.op === 'prepare' ? 'release after the failed start' : 'the domain stops');
        return started.filter((v) => v !== s.target);
      }
      ok(await hook(host, s.target, 'prepare'), 'the domain starts again');
      return [...started.filter((v) => v !== s.target), s.target];
    },
  },
  {
    name: 'another domain, next hook',
    run: async (host, _s, started) => {
      ok(await hook(host, vmC, 'prepare'), 'vm-c starts on the network');
      return [...started, vmC];
    },
  },
  {
    name: 'vxvirt reconcile',
    run: async (host, _s, started) => {
      const r = await cli(host, 'reconcile');
      ok(r, `reconcile (stdout: ${r.stdout})`);
      return started;
    },
  },
];

const results: string[] = [];

/**
 * How many hosts run combinations at once. One combination runs one process
 * at a time (hook, CLI, ip), which leaves a core idle part of the time; on
 * two cores, two hosts took the file from 213 s to 158 s, three were no
 * faster (the processes' CPU is then the limit).
 */
const HOSTS = 2;

interface Bundles {
  bundle: string;
  networkBundle: string;
}

/** One test's work, run on whichever host is free: its lines for the matrix printout, or what it threw. */
interface Combination {
  run(host: TestHost, bundles: Bundles): Promise<string[]>;
  outcome: Promise<{ lines: string[] } | { error: unknown }>;
  settle(o: { lines: string[] } | { error: unknown }): void;
}
const combinations: Combination[] = [];

/** Register a test whose body runs on a host of the pool; the test fails with what the body threw. */
function combination(name: string, run: Combination['run']): void {
  let settle!: Combination['settle'];
  const outcome = new Promise<{ lines: string[] } | { error: unknown }>((resolve) => (settle = resolve));
  const c: Combination = { run, outcome, settle };
  combinations.push(c);
  crash(name, async () => {
    const o = await c.outcome;
    if ('error' in o) throw o.error;
    results.push(...o.lines);
  });
}

/** The networks every combination uses, defined on a fresh host. */
async function defineNetworks(host: TestHost): Promise<void> {
  host.addUnderlay();
  // Unicast peers: ensuring it takes an ip batch and a bridge batch.
  ok(await cli(host, 'define-network', '--no-libvirt', 'tut', '--vni', '42', '--dev', 'ens47f1', '--local', '192.168.8.100', '--remote', '192.168.8.101', '--remote', '192.168.8.102'), 'define tut');
  ok(await cli(host, 'define-network', '--no-libvirt', 'mc', '--vni', '43', '--dev', 'ens47f1', '--group', '239.1.1.1'), 'define mc');
  ok(await cli(host, 'define-network', '--no-libvirt', 'probe', '--vni', '49', '--dev', 'ens47f1', '--group', '239.1.1.9'), 'define probe');
}

/** Set up a host, then run the combinations not yet taken, in order, until none is left. */
async function worker(host: TestHost, bundles: Bundles, next: { index: number }): Promise<void> {
  // What setting the host up threw: each combination it takes fails with that (none may be left waiting).
  let broken: { error: unknown } | undefined;
  try {
    await defineNetworks(host);
  } catch (error) {
    broken = { error };
  }
  for (let c = combinations[next.index++]; c; c = combinations[next.index++]) {
    try {
      c.settle(broken ?? { lines: await c.run(host, bundles) });
    } catch (error) {
      c.settle({ error });
    }
  }
}

const crash = suite<Bundles & { hosts: TestHost[]; dir: string; workers: Promise<void[]> }>('crash safety');

crash.before((ctx) => {
  ctx.dir = mkdtempSync(join(tmpdir(), 'vxvirt-crash-'));
  ctx.bundle = buildCrashBundle(ctx.dir);
  ctx.networkBundle = buildCrashBundle(ctx.dir, 'network-hook');
  ctx.hosts = Array.from({ length: HOSTS }, () => new TestHost('crash'));
  // Not awaited here: the tests await their own combinations' outcomes.
  const next = { index: 0 };
  ctx.workers = Promise.all(ctx.hosts.map((host) => worker(host, { bundle: ctx.bundle, networkBundle: ctx.networkBundle }, next)));
});
crash.after(async (ctx) => {
  await ctx.workers;
  for (const host of ctx.hosts ?? []) host.destroy();
  rmSync(ctx.dir, { recursive: true, force: true });
  process.stdout.write(`\n  crash matrix (point x scenario x recovery):\n${results.map((l) => `    ${l}`).join('\n')}\n`);
});

crash('every crash point in src/ is in the matrix', () => {
  assert.equal(crashPointsInSource(), [...PREPARE_POINTS, ...RELEASE_POINTS, ...UNPLUG_POINTS, ...CHILD_POINTS].sort());
});

crash('production bundles carry no crash points; the test bundles do', ({ bundle, networkBundle }) => {
  for (const f of ['dist/hook.cjs', 'dist/network-hook.cjs', 'dist/cli.js']) {
    const text = readFileSync(join(repo, f), 'utf8');
    for (const v of ['VXVIRT_CRASH_AT', 'VXVIRT_PAUSE_AT']) assert.not.ok(text.includes(v), `${f} must not read ${v} (npm run build defines VXVIRT_CRASH_POINTS=false)`);
  }
  assert.ok(readFileSync(bundle, 'utf8').includes('VXVIRT_CRASH_AT'), 'the test bundle kills itself on request');
  assert.ok(readFileSync(bundle, 'utf8').includes('VXVIRT_PAUSE_AT'), 'and stops itself on request');
  assert.ok(readFileSync(networkBundle, 'utf8').includes('VXVIRT_CRASH_AT'), 'the network hook test bundle too');
});

/** Run the target's hook for the scenario's operation, with env (a crash or pause point). */
async function runTarget(host: TestHost, s: Scenario, { bundle, networkBundle }: Bundles, env: Record<string, string>): Promise<Result> {
  if (s.op === 'unplug') {
    ok(await host.networkHookAsync('mc', 'port-created', 'begin', hotplugPort(s.target)), 'the hot-plug (port-created)');
    return host.execAsync(process.execPath, [networkBundle, 'mc', 'port-deleted', 'begin', '-'], hotplugPort(s.target), env);
  }
  return host.execAsync(process.execPath, [bundle, s.target.name, s.op, s.op === 'prepare' ? 'begin' : 'end', '-'], s.target.xml, env);
}

/** The domains libvirt considers started once the target's hook is through. */
const startedAfter = (s: Scenario): Vm[] => (s.op === 'prepare' ? [...s.before, s.target] : s.op === 'unplug' ? s.before : s.before.filter((v) => v !== s.target));

for (const s of scenarios) {
  const points = POINTS[s.op];
  const offPath = points.filter((p) => !s.reached.includes(p));
  for (const point of s.reached) {
    for (const rec of recoveries) {
      combination(`${point} | ${s.name} | ${rec.name}`, async (host, bundles) => {
        const where = `${point} in ${s.name}, recovered by ${rec.name}`;
        await reset(host);
        for (const v of s.before) ok(await hook(host, v, 'prepare'), `prepare ${v.name}`);
        let started = startedAfter(s);
        const killed = await runTarget(host, s, bundles, { VXVIRT_CRASH_AT: point });
        if (CHILD_POINTS.includes(point)) {
          ok(killed, `${where}: the hook itself`);
          await host.settleAsync();
          const left = stateFiles(host, 'releasing').length;
          assert.is(left, 1, `${where}: the killed child left its release pending (releasing/ holds ${left} files)`);
        } else assert.is(killed.signal, 'SIGKILL', `${where}: the hook died of SIGKILL (status ${killed.status}, stderr ${killed.stderr})`);
        started = await rec.run(host, s, started);
        await assertConverged(host, where);
        await assertAllReleased(host, started, where);
        return [`${point.padEnd(24)} ${s.name.padEnd(40)} ${rec.name.padEnd(26)} converged`];
      });
    }
  }
  if (offPath.length === 0) continue;
  combination(`${s.name}: ${offPath.join(', ')} are not on its path (the hook runs past them)`, async (host, bundles) => {
    const lines: string[] = [];
    for (const point of offPath) {
      const where = `${point} in ${s.name}`;
      await reset(host);
      for (const v of s.before) ok(await hook(host, v, 'prepare'), `prepare ${v.name}`);
      const started = startedAfter(s);
      ok(await runTarget(host, s, bundles, { VXVIRT_CRASH_AT: point }), `${where}: the hook runs to the end`);
      await assertConverged(host, where);
      await assertAllReleased(host, started, where);
      lines.push(`${point.padEnd(24)} ${s.name.padEnd(40)} ${'-'.padEnd(26)} not on the path: ran to the end`);
    }
    return lines;
  });
}

crash.run();
