// The host lock and the users state under real concurrency: separate hook
// processes racing in one namespace, a lock holder killed with SIGKILL, and
// a lock that is never released.
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { bridgeNic, domainXml, repo, TestHost, type Result } from '../support/netns.ts';

interface Ctx {
  host: TestHost;
}
const it = suite<Ctx>('host lock and users');

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

it("the Neutron race cannot happen: A's release never removes the bridge B's prepare ensured", async ({ host }) => {
  for (let round = 0; round < 8; round++) {
    assert.is(host.hook('vm-1', 'prepare', 'begin', vm(1)).status, 0);
    const [release, prepare] = await Promise.all([hookAsync(host, 1, 'release', 'end'), hookAsync(host, 2, 'prepare', 'begin')]);
    assert.is(release.status, 0, release.stderr);
    assert.is(prepare.status, 0, prepare.stderr);
    // What libvirt does right after B's prepare: attach B's tap, which needs the bridge.
    assert.ok(host.link('vxbr42'), `round ${round}: vxbr42 exists after B's prepare`);
    assert.is(host.link('vxlan42')?.master, 'vxbr42');
    assert.is(host.hook('vm-2', 'release', 'end', vm(2)).status, 0);
    assert.is(host.link('vxbr42'), undefined, `round ${round}: gone after the last release`);
  }
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
