// A recorded domain's release as hooks/qemu runs it: the shell takes the host
// lock, journals the release (domains/UUID.json moves to releasing/) and
// returns to libvirt, while node finishes the release in the background
// under that same lock (a shell keeps the lock's descriptor until node is
// done). What libvirt and the next hook see is checked here in real network
// namespaces: the release is journaled before the hook returns, the lock is
// held until the work is done (a start meanwhile waits, then finds it done),
// a background node killed at any step is finished by the next hook, its
// warnings and errors reach the change log, and a lock timeout leaves all
// as it was.
//
// To stop or kill the background node at a named step, hooks/qemu runs here
// from a copy of vxvirt whose dist/hook.cjs is the test bundle with crash and
// pause points (test/support/crash-bundle.ts); the script itself is the real
// one, byte for byte.
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawn, spawnSync } from 'node:child_process';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { buildCrashBundle } from '../support/crash-bundle.ts';
import { bridgeNic, domainXml, repo, TestHost, type Result } from '../support/netns.ts';

const uuidA = '00000000-0000-4000-8000-00000000000a';
const vmA = domainXml('vm-a', uuidA, bridgeNic('vxbr42', '52:54:00:00:00:0a'));
const vmB = domainXml('vm-b', '00000000-0000-4000-8000-00000000000b', bridgeNic('vxbr42', '52:54:00:00:00:0b'));

interface Ctx {
  host: TestHost;
  /** A copy of vxvirt: the real hooks/qemu, and the crash-point bundle as its dist/hook.cjs. */
  crashRoot: string;
}

const it = suite<Ctx>('release in the background');

it.before((ctx) => {
  ctx.crashRoot = mkdtempSync(join(tmpdir(), 'vxvirt-release-'));
  mkdirSync(join(ctx.crashRoot, 'hooks'));
  mkdirSync(join(ctx.crashRoot, 'dist'));
  copyFileSync(join(repo, 'hooks/qemu'), join(ctx.crashRoot, 'hooks/qemu'));
  const bundle = buildCrashBundle(join(ctx.crashRoot, 'dist'));
  assert.is(bundle, join(ctx.crashRoot, 'dist/hook.cjs'));
});
it.after((ctx) => rmSync(ctx.crashRoot, { recursive: true, force: true }));

it.before.each((ctx) => {
  ctx.host = new TestHost('rel');
  ctx.host.addUnderlay();
  ok(ctx.host.vxvirt('define-network', '--no-libvirt', 'tut', '--vni', '42', '--dev', 'ens47f1', '--local', '192.168.8.100', '--remote', '192.168.8.101'), 'define tut');
});
it.after.each((ctx) => ctx.host.destroy());

function ok(r: Result, what: string): void {
  assert.is(r.status, 0, `${what}: exit ${r.status}, stderr: ${r.stderr}`);
}

/** hooks/qemu of the crash copy, as libvirt runs it (no waiting for the lock afterwards). */
const crashHook = (ctx: Ctx, domain: string, op: string, subop: string, xml: string, env: Record<string, string>): Result =>
  ctx.host.exec(join(ctx.crashRoot, 'hooks/qemu'), [domain, op, subop, '-'], xml, env);

const lockPath = (host: TestHost): string => join(host.env.VXVIRT_STATE_DIR, 'lock');
const journal = (host: TestHost, under: 'domains' | 'releasing'): string[] => {
  const dir = join(host.env.VXVIRT_STATE_DIR, under);
  return existsSync(dir) ? readdirSync(dir) : [];
};
const lockIsFree = (host: TestHost): boolean => spawnSync('flock', ['--nonblock', '--shared', lockPath(host), 'true']).status === 0;
const users = (host: TestHost): string[] => {
  const file = join(host.env.VXVIRT_STATE_DIR, 'users/tut.json');
  return existsSync(file) ? Object.values((JSON.parse(readFileSync(file, 'utf8')) as { users: Record<string, { name: string }> }).users).map((u) => u.name) : [];
};
const changeLog = (host: TestHost): string => (existsSync(host.env.VXVIRT_LOG_FILE) ? readFileSync(host.env.VXVIRT_LOG_FILE, 'utf8') : '');

it('returns once the release is journaled; the lock stays held until it is done, and a start meanwhile waits for it', async (ctx) => {
  const { host } = ctx;
  ok(host.hook('vm-a', 'prepare', 'begin', vmA), 'prepare vm-a');
  // The background node stops itself where it has taken vm-a off the users and not yet deleted the pair.
  const r = crashHook(ctx, 'vm-a', 'release', 'end', vmA, { VXVIRT_PAUSE_AT: 'teardown:planned' });
  assert.equal([r.status, r.stdout, r.stderr], [0, '', ''], 'the release returns 0, silently');
  assert.equal(journal(host, 'domains'), [], "vm-a's record left domains/");
  assert.equal(journal(host, 'releasing'), [`${uuidA}.json`], 'and is journaled in releasing/');
  assert.not.ok(lockIsFree(host), 'the host lock is held for the background node');
  // The node names itself in the lock file once it has started; then it stops at the pause point.
  let pid: string | undefined;
  for (let waited = 0; !pid && waited < 20_000; waited += 50) {
    pid = /^pid (\d+): release .* \(background, for pid \d+\)$/m.exec(readFileSync(lockPath(host), 'utf8'))?.[1];
    if (!pid) await new Promise((resolve) => setTimeout(resolve, 50));
  }
  assert.ok(pid, `the lock file names the background node: ${readFileSync(lockPath(host), 'utf8')}`);
  for (let waited = 0; waited < 20_000 && !/^State:\s+T/m.test(readFileSync(`/proc/${pid}/status`, 'utf8')); waited += 50) await new Promise((resolve) => setTimeout(resolve, 50));
  assert.match(readFileSync(`/proc/${pid}/status`, 'utf8'), /^State:\s+T/m, 'the background node stopped at teardown:planned');
  assert.ok(host.link('vxbr42'), 'stopped before the deletion, the pair is still there');

  // vm-b starts meanwhile: its prepare waits for the lock.
  let done: Result | undefined;
  const start = host.hookAsync('vm-b', 'prepare', 'begin', vmB).then((res) => (done = res));
  await new Promise((resolve) => setTimeout(resolve, 1000));
  assert.is(done, undefined, "vm-b's prepare waits while the background release holds the lock");

  process.kill(Number(pid), 'SIGCONT');
  const b = await start;
  ok(b, "vm-b's prepare once the release is done");
  host.settle();
  assert.equal(journal(host, 'releasing'), [], 'no release pending');
  assert.equal(users(host), ['vm-b'], 'vm-b alone uses tut');
  assert.ok(host.link('vxbr42') && host.link('vxlan42'), 'the pair is there for vm-b');
  const log = changeLog(host);
  const deleted = log.indexOf('domain=vm-a network=tut action=deleted');
  const created = log.lastIndexOf('domain=vm-b network=tut action=created');
  assert.ok(deleted >= 0 && created > deleted, `vm-a's release deleted the pair, then vm-b's start made it again:\n${log}`);
});

// Killed in the background, a last release leaves its journal; the next hook
// finishes it before doing its own work. ('release:begun' and
// 'release:torn-down' are not on this path: the shell journaled the release,
// so node finishes it as a pending one; nor is 'apply:links-done', which
// comes only with flood entries to add — checked below.)
for (const point of ['release:unrecorded', 'teardown:planned']) {
  it(`the background node killed at ${point}: the next hook finishes the release`, (ctx) => {
    const { host } = ctx;
    ok(host.hook('vm-a', 'prepare', 'begin', vmA), 'prepare vm-a');
    ok(crashHook(ctx, 'vm-a', 'release', 'end', vmA, { VXVIRT_CRASH_AT: point }), 'the release itself returns 0');
    host.settle(); // the shell that kept the lock ends with its killed node
    assert.equal(journal(host, 'releasing'), [`${uuidA}.json`], 'the release is still pending');
    ok(host.hook('vm-b', 'prepare', 'begin', vmB), 'the next hook: vm-b starts');
    assert.equal(journal(host, 'releasing'), [], 'it finished the pending release first');
    assert.equal(users(host), ['vm-b'], 'vm-a is no user any more, vm-b is');
    const vx = host.link('vxlan42');
    assert.ok(host.link('vxbr42') && vx?.master === 'vxbr42' && vx.flags.includes('UP'), "vm-b's pair is whole");
    ok(host.hook('vm-b', 'release', 'end', vmB), 'vm-b stops');
    assert.equal([host.link('vxbr42'), host.link('vxlan42'), journal(host, 'releasing'), journal(host, 'domains')], [undefined, undefined, [], []], 'nothing is left');
  });
}

it('release:begun, release:torn-down and apply:links-done are not on the path of a release the shell journaled', (ctx) => {
  const { host } = ctx;
  for (const point of ['release:begun', 'release:torn-down', 'apply:links-done']) {
    ok(host.hook('vm-a', 'prepare', 'begin', vmA), `prepare vm-a (${point})`);
    ok(crashHook(ctx, 'vm-a', 'release', 'end', vmA, { VXVIRT_CRASH_AT: point }), `release (${point})`);
    host.settle();
    assert.equal([host.link('vxbr42'), journal(host, 'releasing'), users(host)], [undefined, [], []], `${point}: the background node ran to the end`);
  }
});

it('an error in the background goes to the change log, and the journal stays for whoever can finish it', (ctx) => {
  const { host } = ctx;
  ok(host.hook('vm-a', 'prepare', 'begin', vmA), 'prepare vm-a');
  // A users file a newer vxvirt wrote: this one may not touch it.
  const file = join(host.env.VXVIRT_STATE_DIR, 'users/tut.json');
  writeFileSync(file, JSON.stringify({ ...JSON.parse(readFileSync(file, 'utf8')), version: 99 }, null, 2));
  const r = host.hook('vm-a', 'release', 'end', vmA);
  assert.equal([r.status, r.stdout, r.stderr], [0, '', ''], 'libvirt sees a release that succeeded, silently');
  assert.match(changeLog(host), /domain=vm-a action=failed operation="release end" error="vxvirt: [^"\n]*users\/tut\.json[^"\n]*newer[^\n]*"\n/);
  assert.equal(journal(host, 'releasing'), [`${uuidA}.json`], 'the release stays journaled');
  assert.ok(host.link('vxbr42'), 'no device was touched');
});

/**
 * vm-a started, then its release run by `release` while another process
 * holds the host lock (and has named itself in the lock file); afterwards
 * nothing may have changed: vm-a recorded, nothing journaled, its pair there.
 */
function releaseWhileLockTaken(host: TestHost, release: () => Result): Result {
  ok(host.hook('vm-a', 'prepare', 'begin', vmA), 'prepare vm-a');
  writeFileSync(lockPath(host), 'pid 1: someone else\n');
  const holder = spawn('flock', ['--exclusive', lockPath(host), 'sleep', '30'], { stdio: 'ignore' });
  let r: Result;
  try {
    r = release();
  } finally {
    holder.kill();
  }
  host.settle();
  assert.equal([journal(host, 'domains'), journal(host, 'releasing'), users(host)], [[`${uuidA}.json`], [], ['vm-a']], 'vm-a is still recorded, nothing journaled');
  assert.ok(host.link('vxbr42'), 'the pair is untouched');
  return r;
}

it('the lock not free in time: one line, exit 0, nothing changed', (ctx) => {
  const { host } = ctx;
  const r = releaseWhileLockTaken(host, () => host.exec(host.hookPath, ['vm-a', 'release', 'end', '-'], vmA, { VXVIRT_LOCK_TIMEOUT: '1' }));
  assert.is(r.status, 0, 'release always exits 0');
  assert.equal(r.stderr.split('\n'), [`vxvirt: timed out after 1s waiting for the host lock ${lockPath(host)} (held by pid 1: someone else); set VXVIRT_LOCK_TIMEOUT to wait longer`, '']);
});

it("VXVIRT_LOCK_HELD_BY_PARENT from a parent that does not hold the lock: node takes it itself, and waits", (ctx) => {
  const { host } = ctx;
  // fd 9 is the lock file, open but not locked by this shell; node is its child.
  const script = `exec 9<"$1"; shift; VXVIRT_LOCK_HELD_BY_PARENT=9 VXVIRT_LOCK_TIMEOUT=1 "$@" 9<&-; exit $?`;
  const r = releaseWhileLockTaken(host, () => host.exec('sh', ['-c', script, 'sh', lockPath(host), process.execPath, join(repo, 'dist/hook.cjs'), 'vm-a', 'release', 'end', '-'], vmA));
  assert.is(r.status, 0, 'release exits 0');
  assert.match(r.stderr, /^vxvirt: timed out after 1s waiting for the host lock .* \(held by pid 1: someone else\)/, 'it waited for the lock like any hook');
});

it.run();
