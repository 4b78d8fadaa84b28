// The host lock and the users state under real concurrency: separate hook
// processes racing in one namespace (the race forced with the test bundle's
// pause points, so it goes wrong every time if the lock does not hold), a
// lock holder killed with SIGKILL, and a lock that is never released.
import { spawn } from 'node:child_process';
import { chmodSync, existsSync, lstatSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { buildCrashBundle } from '../support/crash-bundle.ts';
import { bridgeNic, domainXml, LIBVIRT_HOOK_ENV, repo, TestHost, type Result } from '../support/netns.ts';

interface Ctx {
  host: TestHost;
  bundle: string;
}
const it = suite<Ctx>('host lock and users');

let bundleDir = '';
it.before((ctx) => {
  bundleDir = mkdtempSync(join(tmpdir(), 'vxvirt-store-'));
  ctx.bundle = buildCrashBundle(bundleDir);
});
it.after(() => rmSync(bundleDir, { recursive: true, force: true }));

it.before.each((ctx) => {
  ctx.host = new TestHost();
  ctx.host.addUnderlay();
  const r = ctx.host.vxvirt('define-network', '--no-libvirt', 'tut', '--vni', '42', '--dev', 'ens47f1', '--remote', '192.168.8.101');
  assert.is(r.status, 0, r.stderr);
});
it.after.each((ctx) => ctx.host.destroy());

const vm = (i: number) => domainXml(`vm-${i}`, `00000000-0000-4000-8000-${String(i).padStart(12, '0')}`, bridgeNic('vxbr42'));

const hookAsync = (host: TestHost, i: number, op: string, subop: string, extraEnv: Record<string, string> = {}): Promise<Result> =>
  host.hookAsync(`vm-${i}`, op, subop, vm(i), extraEnv);

interface Running {
  pid: number;
  exited: boolean;
  stderr: string;
  done: Promise<Result>;
}

/** The crash-points hook bundle for vm-i in the host's namespace, as hooks/qemu runs dist/hook.cjs (ip netns exec and env exec: the pid is node's). */
function runBundle(host: TestHost, bundle: string, i: number, op: string, subop: string, extraEnv: Record<string, string>): Running {
  const env = Object.entries({ ...LIBVIRT_HOOK_ENV, ...host.env, ...extraEnv }).map(([k, v]) => `${k}=${v}`);
  const child = spawn('ip', ['netns', 'exec', host.ns, 'env', '-i', ...env, process.execPath, bundle, `vm-${i}`, op, subop, '-']);
  const run: Running = { pid: child.pid!, exited: false, stderr: '', done: Promise.resolve({ status: -1, stdout: '', stderr: '' }) };
  let stdout = '';
  child.stdout.on('data', (d) => (stdout += d));
  child.stderr.on('data', (d) => (run.stderr += d));
  run.done = new Promise((resolve) =>
    child.on('close', (status, signal) => {
      run.exited = true;
      resolve({ status: status ?? -1, signal, stdout, stderr: run.stderr });
    }),
  );
  child.stdin.end(vm(i));
  return run;
}

/** A process's state letter from /proc (T: stopped), or undefined once it is gone. */
function processState(pid: number): string | undefined {
  try {
    return /^\d+ \(.*\) (\S)/.exec(readFileSync(`/proc/${pid}/stat`, 'utf8'))?.[1];
  } catch {
    return undefined;
  }
}

/**
 * Whether `pid` waits in a flock(1) of its own: the hook takes the host lock
 * by handing its lock file to flock(1) — run by its `ip` session's shell
 * (a grandchild), or by the hook itself — which lives only while it waits
 * for the lock (a free lock is taken at once). Read from /proc/PID/stat
 * rather than /proc/locks, which inside a PID namespace leaves out a lock
 * whose taker (that flock(1)) has exited, and with it the processes waiting
 * for it.
 */
function waitsInFlock(pid: number): boolean {
  const parents = new Map<number, { comm: string; ppid: number }>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const m = /^\d+ \((.*)\) \S (\d+)/.exec(readFileSync(`/proc/${entry}/stat`, 'utf8'));
      if (m) parents.set(Number(entry), { comm: m[1]!, ppid: Number(m[2]) });
    } catch {
      // gone meanwhile
    }
  }
  for (const p of parents.values()) {
    if (p.comm === 'flock' && (p.ppid === pid || parents.get(p.ppid)?.ppid === pid)) return true;
  }
  return false;
}

async function waitFor(done: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!done()) {
    if (Date.now() > until) throw new Error(`timed out after ${timeoutMs / 1000} s waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

it("the Neutron race cannot happen: A's release, stopped after it found the pair unused, keeps B's prepare waiting until it is done", async ({ host, bundle }) => {
  assert.is(host.hook('vm-1', 'prepare', 'begin', vm(1)).status, 0);
  // A's release (the test bundle) stops itself with SIGSTOP right after it
  // found vxbr42 without users and planned its deletion: the gap in which,
  // without the host lock, B's prepare would find the pair in place, record
  // B, and then lose the pair to A's delete.
  const a = runBundle(host, bundle, 1, 'release', 'end', { VXVIRT_PAUSE_AT: 'teardown:planned' });
  let b: Promise<Result> | undefined;
  try {
    await waitFor(() => processState(a.pid) === 'T' || a.exited, 30_000, "A's release to reach teardown:planned");
    assert.not.ok(a.exited, `A's release ran past teardown:planned without stopping: ${a.stderr}`);
    // B runs the same code as A (the test bundle, no pause point asked): its pid is node's.
    const bRun = runBundle(host, bundle, 2, 'prepare', 'begin', {});
    b = bRun.done;
    // B either finishes (no lock kept it out) or blocks on the lock file.
    await waitFor(() => bRun.exited || waitsInFlock(bRun.pid), 30_000, "B's prepare to finish or wait for the host lock");
    const finishedWhileStopped = bRun.exited;
    process.kill(a.pid, 'SIGCONT');
    const [release, prepare] = await Promise.all([a.done, b]);
    assert.is(release.status, 0, release.stderr);
    assert.is(prepare.status, 0, prepare.stderr);
    // What libvirt does right after B's prepare: attach B's tap, which needs the bridge.
    assert.ok(host.link('vxbr42'), "vxbr42 exists after B's prepare");
    assert.is(host.link('vxlan42')?.master, 'vxbr42');
    assert.not.ok(finishedWhileStopped, "B's prepare finished while A's release held the host lock");
  } finally {
    if (!a.exited) process.kill(a.pid, 'SIGKILL');
    await b;
  }
  assert.is(host.hook('vm-2', 'release', 'end', vm(2)).status, 0);
  assert.is(host.link('vxbr42'), undefined, 'gone after the last release');
});

/** The process a release handed its deletion to (`sh -c … vxvirt-teardown JOURNAL …`) for this host's state directory. */
function teardownProcess(host: TestHost): number | undefined {
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const argv = readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0');
      if (argv[3] === 'vxvirt-teardown' && argv[4]?.startsWith(`${host.env.VXVIRT_STATE_DIR}/`)) return Number(entry);
    } catch {
      // gone meanwhile
    }
  }
  return undefined;
}

it("a last release returns before its pair is deleted; B's prepare meanwhile waits for the detached deletion, then makes the pair again", async ({ host, bundle }) => {
  assert.is(host.hook('vm-1', 'prepare', 'begin', vm(1)).status, 0);
  // A's release hands the deletion to a process that stops itself (SIGSTOP)
  // before deleting: A has exited, its child holds the host lock.
  const a = runBundle(host, bundle, 1, 'release', 'end', { VXVIRT_PAUSE_AT: 'detached:begun' });
  // Its stdout and stderr reach EOF although the child lives on: it holds none of them (libvirt waits for that EOF).
  const release = await a.done;
  assert.is(release.status, 0, release.stderr);
  let child: number | undefined;
  await waitFor(() => (child = teardownProcess(host)) !== undefined && processState(child) === 'T', 30_000, 'the detached deletion to stop at detached:begun');
  let b: Running | undefined;
  try {
    assert.ok(host.link('vxbr42'), 'the pair is still there when the release has returned');
    b = runBundle(host, bundle, 2, 'prepare', 'begin', {});
    await waitFor(() => b!.exited || waitsInFlock(b!.pid), 30_000, "B's prepare to finish or wait for the host lock");
    assert.not.ok(b.exited, "B's prepare finished while the detached deletion held the host lock");
    process.kill(child!, 'SIGCONT');
    const prepare = await b.done;
    assert.is(prepare.status, 0, prepare.stderr);
    assert.ok(host.link('vxbr42'), "vxbr42 exists after B's prepare");
    assert.is(host.link('vxlan42')?.master, 'vxbr42');
    assert.is(teardownProcess(host), undefined, 'the detached deletion has exited');
  } finally {
    if (child !== undefined && teardownProcess(host) === child) process.kill(child, 'SIGKILL');
    await b?.done;
  }
  assert.equal(readdirSync(join(host.env.VXVIRT_STATE_DIR, 'releasing')), [], "A's release was ended by its detached deletion");
  assert.is(host.hook('vm-2', 'release', 'end', vm(2)).status, 0);
  assert.is(host.link('vxbr42'), undefined, 'gone after the last release, once the lock is free');
});

it('many domains starting and stopping at once converge', async ({ host }) => {
  const ids = [1, 2, 3, 4, 5, 6];
  const starts = await Promise.all(ids.map((i) => hookAsync(host, i, 'prepare', 'begin')));
  for (const r of starts) assert.is(r.status, 0, r.stderr);
  const status = JSON.parse(host.vxvirt('status', '--json').stdout);
  assert.is(status[0].domains.length, 6);
  const stops = await Promise.all(ids.map((i) => hookAsync(host, i, 'release', 'end')));
  for (const r of stops) assert.is(r.status, 0, r.stderr);
  assert.equal(host.linkNames(), ['ens47f1', 'ens47f1p', 'lo']);
});

it('a lock holder killed with SIGKILL does not block the next hook', async ({ host }) => {
  const holderScript = `import { withHostLock } from ${JSON.stringify(join(repo, 'src/store.ts'))};
await withHostLock('test holder', async () => { process.stdout.write('locked\\n'); await new Promise((r) => setTimeout(r, 60000)); });`;
  const holder = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', holderScript], {
    cwd: repo,
    env: { ...process.env, ...host.env },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  await new Promise<void>((resolve) => holder.stdout.on('data', (d) => String(d).includes('locked') && resolve()));
  const waiting = hookAsync(host, 1, 'prepare', 'begin', { VXVIRT_LOCK_TIMEOUT: '20' });
  await new Promise((r) => setTimeout(r, 300));
  assert.is(host.link('vxbr42'), undefined, 'the hook waits while the lock is held');
  holder.kill('SIGKILL');
  const r = await waiting;
  assert.is(r.status, 0, r.stderr);
  assert.ok(host.link('vxbr42'));
});

it('a lock that stays held times out with a clear one-line error', async ({ host }) => {
  const lockFile = join(host.env.VXVIRT_STATE_DIR, 'lock');
  host.exec('mkdir', ['-p', host.env.VXVIRT_STATE_DIR]);
  const holder = spawn('flock', ['--exclusive', lockFile, 'sleep', '30'], { stdio: 'ignore', detached: true });
  await new Promise((r) => setTimeout(r, 200));
  try {
    const started = Date.now();
    const r = host.hook('vm-1', 'prepare', 'begin', vm(1), { VXVIRT_LOCK_TIMEOUT: '1' });
    assert.is(r.status, 1);
    assert.ok(Date.now() - started < 10_000, 'bounded wait');
    assert.is(r.stderr.trim().split('\n').length, 1, r.stderr);
    assert.match(r.stderr, /^vxvirt: timed out after 1s waiting for the host lock .*\/lock/);
    assert.is(host.link('vxbr42'), undefined);
    const rel = host.hook('vm-1', 'release', 'end', vm(1), { VXVIRT_LOCK_TIMEOUT: '1' });
    assert.is(rel.status, 0, 'release always exits 0');
  } finally {
    process.kill(-holder.pid!, 'SIGKILL');
  }
});

it.run();

// The files themselves: the VNI index, strict modes, no symlinks followed.
const files = suite<Ctx>('store files');
files.before.each((ctx) => {
  ctx.host = new TestHost();
  ctx.host.addUnderlay();
  const r = ctx.host.vxvirt('define-network', '--no-libvirt', 'tut', '--vni', '42', '--dev', 'ens47f1', '--remote', '192.168.8.101');
  assert.is(r.status, 0, r.stderr);
});
files.after.each((ctx) => ctx.host.destroy());

files('define-network indexes the VNI; a lost or stale index is healed by the hook', ({ host }) => {
  const vniDir = join(host.env.VXVIRT_CONFIG_DIR, 'vni');
  assert.is(readlinkSync(join(vniDir, '42')), '../networks/tut.json');
  rmSync(vniDir, { recursive: true });
  assert.is(host.hook('vm-1', 'prepare', 'begin', vm(1)).status, 0);
  assert.ok(host.link('vxbr42'), 'found by reading every definition');
  assert.is(readlinkSync(join(vniDir, '42')), '../networks/tut.json', 'and the index is back');
  assert.is(host.hook('vm-1', 'release', 'end', vm(1)).status, 0);
  // --replace with another VNI moves the entry.
  const r = host.vxvirt('define-network', '--no-libvirt', '--replace', 'tut', '--vni', '43', '--dev', 'ens47f1', '--remote', '192.168.8.101');
  assert.is(r.status, 0, r.stderr);
  assert.equal(readdirSync(vniDir), ['43']);
  assert.is(host.vxvirt('undefine-network', '--no-libvirt', 'tut').status, 0);
  assert.equal(readdirSync(vniDir), []);
});

files('the state directory is 0700 and its files 0600', ({ host }) => {
  assert.is(host.hook('vm-1', 'prepare', 'begin', vm(1)).status, 0);
  const state = host.env.VXVIRT_STATE_DIR;
  assert.is(lstatSync(state).mode & 0o777, 0o700);
  assert.is(lstatSync(join(state, 'users', 'tut.json')).mode & 0o777, 0o600);
  assert.is(lstatSync(join(state, 'lock')).mode & 0o777, 0o600);
  assert.is(host.hook('vm-1', 'release', 'end', vm(1)).status, 0);
  assert.not.ok(existsSync(join(state, 'users', 'tut.json')));
});

files('an existing state directory others could read is tightened; one others can write is refused', ({ host }) => {
  const state = host.env.VXVIRT_STATE_DIR;
  host.exec('mkdir', ['-p', state]);
  chmodSync(state, 0o755);
  assert.is(host.hook('vm-1', 'prepare', 'begin', vm(1)).status, 0);
  assert.is(lstatSync(state).mode & 0o777, 0o700);
  assert.is(host.hook('vm-1', 'release', 'end', vm(1)).status, 0);
  chmodSync(state, 0o777);
  const r = host.hook('vm-1', 'prepare', 'begin', vm(1));
  assert.is(r.status, 1);
  assert.match(r.stderr, /^vxvirt: \S+ is writable by its group and others \(mode 0777\): vxvirt runs it as root/);
  assert.is(r.stderr.trim().split('\n').length, 1);
  assert.is(host.link('vxbr42'), undefined);
});

files('definitions others can write are refused by name, unless VXVIRT_STRICT_MODES=no', ({ host }) => {
  const def = join(host.env.VXVIRT_CONFIG_DIR, 'networks', 'tut.json');
  chmodSync(def, 0o666);
  const r = host.hook('vm-1', 'prepare', 'begin', vm(1));
  assert.is(r.status, 1);
  assert.match(r.stderr, /tut\.json is writable by its group and others \(mode 0666\)/);
  assert.match(r.stderr, /VXVIRT_STRICT_MODES=no/);
  chmodSync(def, 0o644);
  chmodSync(join(host.env.VXVIRT_CONFIG_DIR, 'networks'), 0o775);
  assert.match(host.hook('vm-1', 'prepare', 'begin', vm(1)).stderr, /networks is writable by its group \(mode 0775\)/);
  assert.is(host.hook('vm-1', 'prepare', 'begin', vm(1), { VXVIRT_STRICT_MODES: 'no' }).status, 0);
  assert.ok(host.link('vxbr42'));
  assert.is(host.hook('vm-1', 'release', 'end', vm(1), { VXVIRT_STRICT_MODES: 'no' }).status, 0);
});

files('state files are never followed through a symlink', ({ host }) => {
  const victim = join(host.dir, 'victim');
  writeFileSync(victim, 'precious\n');
  host.exec('mkdir', ['-p', join(host.env.VXVIRT_STATE_DIR, 'users')]);
  symlinkSync(victim, join(host.env.VXVIRT_STATE_DIR, 'users', 'tut.json'));
  const r = host.hook('vm-1', 'prepare', 'begin', vm(1));
  assert.is(r.status, 1);
  assert.match(r.stderr, /users\/tut\.json is a symlink/);
  assert.is(host.exec('cat', [victim]).stdout, 'precious\n', 'the target was neither read as state nor written');
  // A start reads the users files it would change before it makes anything: no pair is left behind, one line says why.
  assert.is(host.link('vxbr42'), undefined, 'no bridge made');
  assert.is(host.link('vxlan42'), undefined, 'no vxlan made');
  assert.is(r.stderr.trim().split('\n').length, 1, `one line: ${r.stderr}`);
});

files.run();
