// The hook benchmark proper. main.ts runs it inside a fresh network namespace
// (`ip netns exec`), so each hook call is timed as libvirt's fork+exec of
// /etc/libvirt/hooks/qemu, without the cost of entering the namespace.
// Prints its rows as one JSON line.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { join } from 'node:path';
import { bridgeNic, domainXml, macNetworkNic, networkNic, portHookData, repo } from '../support/netns.ts';
import * as store from '../../src/store.ts';
import { validateDefinition } from '../../src/network-definition.ts';
import { addUser } from '../../src/users.ts';
import { row, sums, median, type Row } from './stats.ts';

const ROUNDS = Number(process.env.ROUNDS ?? 30);
const WARMUP = 3;
const HOOK = join(repo, 'hooks/qemu');
const NETWORK_HOOK = join(repo, 'hooks/network');
const LOCK = join(process.env.VXVIRT_STATE_DIR!, 'lock');
const SHELL_HOOK = join(repo, 'test/bench/shell-hook.sh');
const env = {
  PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
  HOME: '/root',
  LC_ALL: 'C',
  VXVIRT_CONFIG_DIR: process.env.VXVIRT_CONFIG_DIR!,
  VXVIRT_STATE_DIR: process.env.VXVIRT_STATE_DIR!,
  // The change log goes to a file of the benchmark's own (the cost of the
  // append is measured; the machine's /var/log is left alone).
  VXVIRT_LOG_FILE: process.env.VXVIRT_LOG_FILE!,
  // 64 hooks queue for the lock in the bursts: on a busy machine the last waits longer than the default 30 s.
  VXVIRT_LOCK_TIMEOUT: '600',
};
const rows: Row[] = [];

function ip(...args: string[]): void {
  const r = spawnSync('ip', args, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`ip ${args.join(' ')}: ${r.stderr}`);
}

/** One hook call, as libvirt makes it; returns wall milliseconds. */
function call(hook: string, domain: string, op: string, subop: string, xml: string): number {
  const t = process.hrtime.bigint();
  const r = spawnSync(hook, [domain, op, subop, '-'], { input: xml, env, encoding: 'utf8' });
  const elapsed = Number(process.hrtime.bigint() - t) / 1e6;
  if (r.status !== 0) throw new Error(`${hook} ${domain} ${op}: exit ${r.status}: ${r.stderr}`);
  return elapsed;
}

/**
 * Wait until nobody holds the host lock: a last release returns before the
 * kernel has deleted the pair (a detached process holding the lock does it).
 * Returns the milliseconds waited.
 */
function settle(): number {
  const t = process.hrtime.bigint();
  if (existsSync(LOCK)) {
    const r = spawnSync('flock', ['--shared', '--wait', '30', LOCK, 'true']);
    if (r.status !== 0) throw new Error(`the host lock was not free within 30 s`);
  }
  return Number(process.hrtime.bigint() - t) / 1e6;
}

function callAsync(domain: string, op: string, subop: string, xml: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const t = process.hrtime.bigint();
    const child = spawn(HOOK, [domain, op, subop, '-'], { env, stdio: ['pipe', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d) => (stderr += d));
    child.on('close', (status) => (status === 0 ? resolve(Number(process.hrtime.bigint() - t) / 1e6) : reject(new Error(`${domain} ${op}: exit ${status}: ${stderr}`))));
    child.stdin.on('error', () => undefined); // the sh entry may exit before reading
    child.stdin.end(xml);
  });
}

const uuid = (i: number) => `00000000-0000-4000-8000-${String(i).padStart(12, '0')}`;
const vm = domainXml('vm', uuid(1), bridgeNic('vxbr42'));
const vm2 = domainXml('vm2', uuid(2), bridgeNic('vxbr42', '52:54:00:12:34:57'));
const plain = domainXml('plain', uuid(3), `${bridgeNic('br0')}\n${networkNic('default')}`);

function links(): string[] {
  const r = spawnSync('ip', ['-j', 'link', 'show'], { encoding: 'utf8' });
  return (JSON.parse(r.stdout) as Array<{ ifname: string }>).map((l) => l.ifname);
}
function expectPair(present: boolean, when: string): void {
  const has = links().includes('vxbr42');
  if (has !== present) throw new Error(`vxbr42 ${present ? 'missing' : 'still there'} ${when}`);
}

/** Interleaved rounds of vxvirt's and the shell hook's prepare+release, so drift hits both alike. */
function lifecycle(section: string): { vx: number[]; shell: number[] } {
  const s = { vxPrep: [] as number[], vxRel: [] as number[], vxAgain: [] as number[], vxNotLast: [] as number[], vxBehind: [] as number[], shPrep: [] as number[], shRel: [] as number[] };
  for (let i = 0; i < WARMUP + ROUNDS; i++) {
    const keep = i >= WARMUP;
    const a = call(HOOK, 'vm', 'prepare', 'begin', vm);
    expectPair(true, 'after prepare');
    const again = call(HOOK, 'vm2', 'prepare', 'begin', vm2);
    const notLast = call(HOOK, 'vm2', 'release', 'end', vm2);
    // The last release is timed on its own, not behind vm2's, which is still
    // being finished in the background holding the lock (a stop right after
    // another waits for it: that is the row "then until ... frees the lock").
    settle();
    const b = call(HOOK, 'vm', 'release', 'end', vm);
    const behind = settle();
    expectPair(false, 'after the last release, once the host lock is free');
    const c = call(SHELL_HOOK, 'vm', 'prepare', 'begin', vm);
    expectPair(true, 'after the shell prepare');
    const d = call(SHELL_HOOK, 'vm', 'release', 'end', vm);
    expectPair(false, 'after the shell release');
    if (keep) {
      s.vxPrep.push(a);
      s.vxRel.push(b);
      s.vxAgain.push(again);
      s.vxNotLast.push(notLast);
      s.vxBehind.push(behind);
      s.shPrep.push(c);
      s.shRel.push(d);
    }
  }
  const vx = sums(s.vxPrep, s.vxRel);
  const shell = sums(s.shPrep, s.shRel);
  rows.push(
    row(section, 'vxvirt prepare: create the pair', s.vxPrep),
    row(section, 'vxvirt prepare: pair already there (2nd domain)', s.vxAgain),
    row(section, 'vxvirt release: not the last user (2nd domain)', s.vxNotLast),
    row(section, 'vxvirt release: last user, delete the pair', s.vxRel),
    row(section, 'vxvirt release: then until the background release frees the lock', s.vxBehind, 'libvirt does not wait for this'),
    row(section, 'shell hook prepare', s.shPrep),
    row(section, 'shell hook release', s.shRel),
    row(section, 'vxvirt lifecycle (prepare + release)', vx),
    row(section, 'shell hook lifecycle (prepare + release)', shell, `vxvirt / shell = ${(median(vx) / median(shell)).toFixed(2)}`),
  );
  return { vx, shell };
}

function repeat(fn: () => number): number[] {
  const out: number[] = [];
  for (let i = 0; i < WARMUP + ROUNDS; i++) {
    const t = fn();
    if (i >= WARMUP) out.push(t);
  }
  return out;
}

// ---- set-up: an underlay and one network --------------------------------
ip('link', 'set', 'lo', 'up');
ip('link', 'add', 'ens47f1', 'type', 'veth', 'peer', 'name', 'ens47f1p');
ip('link', 'set', 'ens47f1p', 'up');
ip('link', 'set', 'ens47f1', 'up');
ip('addr', 'add', '192.168.8.100/24', 'dev', 'ens47f1');
store.writeDefinition(validateDefinition({ name: 'tut', vni: 42, dev: 'ens47f1', local: '192.168.8.100', remotes: ['192.168.8.101'] }));

// ---- calls vxvirt has nothing to do in ----------------------------------
const nodeStart = repeat(() => {
  const t = process.hrtime.bigint();
  spawnSync(process.execPath, ['-e', '0'], { env });
  return Number(process.hrtime.bigint() - t) / 1e6;
});
rows.push(row('reference', 'node -e 0 (start-up of any node program)', nodeStart));
// The floor of any hook: libvirt's fork+exec of a shell script that exits.
rows.push(row('reference', 'sh -c "exit 0" (start-up of any shell hook)', repeat(() => call('/bin/sh', '-c', 'exit 0', '', ''))));
for (const [op, subop] of [
  ['start', 'begin'],
  ['started', 'begin'],
  ['stopped', 'end'],
]) {
  rows.push(row('ignored', `${op} ${subop} (vxvirt domain)`, repeat(() => call(HOOK, 'vm', op!, subop!, vm))));
}
rows.push(row('ignored', 'prepare begin, domain without vxvirt NICs', repeat(() => call(HOOK, 'plain', 'prepare', 'begin', plain))));
rows.push(row('ignored', 'release end, domain without vxvirt NICs', repeat(() => call(HOOK, 'plain', 'release', 'end', plain))));
// Every start of a guest with a NIC on a libvirt network: prepare, then port-created of that NIC.
{
  const mac = '52:54:00:12:34:99';
  const netUuid = uuid(4);
  const netVm = domainXml('netvm', netUuid, macNetworkNic('tut', mac));
  call(HOOK, 'netvm', 'prepare', 'begin', netVm);
  const port = portHookData('tut', 'vxbr42', 'netvm', netUuid, mac);
  rows.push(row('ignored', 'network hook port-created, NIC recorded by prepare', repeat(() => call(NETWORK_HOOK, 'tut', 'port-created', 'begin', port))));
  call(HOOK, 'netvm', 'release', 'end', netVm);
  settle();
  expectPair(false, 'after the network NIC guest');
}

// ---- lifecycle, 1 network ------------------------------------------------
const small = lifecycle('lifecycle, 1 network');

// ---- burst: 64 prepares at once over 8 VNIs ------------------------------
for (let v = 0; v < 8; v++) {
  store.writeDefinition(validateDefinition({ name: `burst${v}`, vni: 100 + v, dev: 'ens47f1', local: '192.168.8.100', remotes: ['192.168.8.101'] }));
}
const burstXml = (i: number) => domainXml(`b${i}`, uuid(1000 + i), bridgeNic(`vxbr${100 + (i % 8)}`));
const burst = async (op: 'prepare' | 'release') => {
  const t = process.hrtime.bigint();
  const each = await Promise.all(Array.from({ length: 64 }, (_, i) => callAsync(`b${i}`, op, op === 'prepare' ? 'begin' : 'end', burstXml(i))));
  return { total: Number(process.hrtime.bigint() - t) / 1e6, longest: Math.max(...each), each };
};
const bp = await burst('prepare');
const pairs = links().filter((l) => /^vx(br|lan)10[0-7]$/.test(l)).length;
const br = await burst('release');
const brSettled = settle();
const left = links().filter((l) => /^vx(br|lan)10\d$/.test(l)).length;

/** flock(1) processes waiting for the host lock: hooks that have done all their work before the lock. */
function waitingForLock(except: number): number {
  let n = 0;
  for (const pid of readdirSync('/proc')) {
    if (!/^\d+$/.test(pid) || Number(pid) === except) continue;
    try {
      if (readlinkSync(`/proc/${pid}/fd/3`) === LOCK && readFileSync(`/proc/${pid}/comm`, 'utf8').trim() === 'flock') n++;
    } catch {
      // gone, or not ours
    }
  }
  return n;
}

// The same burst with the lock held until all 64 wait for it: how long the
// work before the lock takes (in parallel), and how long the rest (in turn).
// flock(1)'s command (sleep) shares its lock: the holder is killed as a process group.
const holder = spawn('flock', ['--exclusive', LOCK, 'sleep', '600'], { stdio: 'ignore', detached: true });
// Held once a non-blocking try fails.
while (spawnSync('flock', ['--shared', '--nonblock', LOCK, 'true']).status === 0) await new Promise((r) => setTimeout(r, 5));
const held = process.hrtime.bigint();
const heldBurst = Promise.all(Array.from({ length: 64 }, (_, i) => callAsync(`b${i}`, 'prepare', 'begin', burstXml(i))));
while (waitingForLock(holder.pid!) < 64) await new Promise((r) => setTimeout(r, 10));
const beforeLock = Number(process.hrtime.bigint() - held) / 1e6;
const unlocked = process.hrtime.bigint();
process.kill(-holder.pid!, 'SIGKILL');
await heldBurst;
const underLock = Number(process.hrtime.bigint() - unlocked) / 1e6;
await burst('release');
settle();
rows.push(
  row('burst', '64 prepares at once over 8 VNIs: each hook', bp.each, `total wall ${bp.total.toFixed(0)} ms, longest ${bp.longest.toFixed(0)} ms, ${pairs}/16 devices made`),
  row('burst', '64 releases at once: each hook', br.each, `total wall ${br.total.toFixed(0)} ms, longest ${br.longest.toFixed(0)} ms; lock free ${brSettled.toFixed(0)} ms later, ${left} devices left`),
  row('burst', '64 prepares, lock held: until all 64 wait for it (work before the lock)', [beforeLock], 'in parallel on all CPUs'),
  row('burst', '64 prepares, lock held: from its release until all 64 are done (work under the lock)', [underLock], 'one after the other'),
);
if (pairs !== 16 || left !== 0) throw new Error(`burst did not converge: ${pairs} devices after prepare, ${left} after release`);

// ---- scale: 1,000 networks, 500 domains, 400 more interfaces -------------
const t0 = Date.now();
const defs = Array.from({ length: 1000 }, (_, i) =>
  validateDefinition({ name: `net${i}`, vni: 10000 + i, dev: 'ens47f1', local: '192.168.8.100', remotes: ['192.168.8.101'] }),
);
for (const def of defs) store.writeDefinition(def);
await store.withHostLock('benchmark set-up', async () => {
  for (let d = 0; d < 500; d++) {
    const nets = [defs[d]!, defs[(d * 7 + 500) % 1000]!];
    store.writeDomainRecord(uuid(5000 + d), { name: `user${d}`, networks: nets.map((n) => ({ name: n.name, vni: n.vni })) });
    for (const n of nets) store.writeUsers(n.name, addUser(store.readUsers(n.name), uuid(5000 + d), `user${d}`, new Date()));
  }
});
const batch = Array.from({ length: 200 }, (_, i) => `link add h${i}a type veth peer name h${i}b`).join('\n');
const r = spawnSync('ip', ['-batch', '-'], { input: `${batch}\n`, encoding: 'utf8' });
if (r.status !== 0) throw new Error(r.stderr);
const setup = `${defs.length + 9} networks defined, 500 domains recorded on 2 each, ${links().length} interfaces (set up in ${((Date.now() - t0) / 1000).toFixed(1)} s)`;
const large = lifecycle('lifecycle, 1,000 networks');
const summary = {
  lifecycleRatio: median(small.vx) / median(small.shell),
  lifecycleRatioAtScale: median(large.vx) / median(large.shell),
  scaleRatio: median(large.vx) / median(small.vx),
  shellScaleRatio: median(large.shell) / median(small.shell),
  ignoredWorst: Math.max(...rows.filter((x) => x.section === 'ignored').map((x) => x.median)),
  shellFloor: rows.find((x) => x.label.startsWith('sh -c'))!.median,
  burstPrepareTotal: bp.total,
  burstPrepareLongest: bp.longest,
  burstReleaseTotal: br.total,
  burstBeforeLock: beforeLock,
  burstUnderLock: underLock,
  scaleSetup: setup,
};
process.stdout.write(`${JSON.stringify({ rows, summary })}\n`);
