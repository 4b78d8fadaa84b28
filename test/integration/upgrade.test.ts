// Upgrades while guests run. vxvirt's code is replaced under a storm of
// concurrent starts and stops (test/support/storm.ts), and every hook that
// runs meanwhile must run the old code or the new, never a mix: no failed
// start, no leaked device, no lost user record. A downgrade meets state in
// a newer format than the code reads: the old code refuses it with one line
// and changes nothing.
//
// The installation the hook runs from is a directory laid out like the
// checkout or the package (hooks/qemu, dist/hook.cjs): libvirt's
// /etc/libvirt/hooks/qemu is a symlink to its hooks/qemu, which finds
// dist/hook.cjs beside it.
import { spawn } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { builtinModules } from 'node:module';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { bridgeNic, domainXml, must, repo, TestHost, type Result } from '../support/netns.ts';
import { defineNetworks, emptyTally, leftovers, NETWORKS, run as runAsync, storm, type Tally } from '../support/storm.ts';

const DOMAINS = 24;
const ROUNDS = 2;
const WORKERS = 10;
/** The storm must outlast this many swaps; it is made longer (more rounds) until it does. */
const MIN_SWAPS = 6;

/** Point the host's /etc/libvirt/hooks/qemu at another installation. */
function useInstallation(host: TestHost, root: string): void {
  rmSync(host.hookPath);
  symlinkSync(join(root, 'hooks/qemu'), host.hookPath);
}

/** An installation directory with hooks/qemu and its package.json (dist/cli.js is ESM), but no dist/ yet. */
function installRoot(parent: string): string {
  const root = join(parent, 'vxvirt');
  mkdirSync(join(root, 'hooks'), { recursive: true });
  copyFileSync(join(repo, 'hooks/qemu'), join(root, 'hooks/qemu'));
  writeFileSync(join(root, 'package.json'), '{ "type": "module" }\n');
  return root;
}

/** `node scripts/build.mjs --outdir ROOT/dist --version V`, as `npm run build` runs it. */
const build = (root: string, version: string) => runAsync(process.execPath, [join(repo, 'scripts/build.mjs'), '--outdir', join(root, 'dist'), '--version', version]);

/** The version a built hook bundle says it is. */
function bundleVersion(root: string): string | undefined {
  return /VERSION = "([^"]+)"/.exec(readFileSync(join(root, 'dist/hook.cjs'), 'utf8'))?.[1];
}

/**
 * A storm of guest starts and stops while `swap(i)` replaces the code, again
 * and again until the storm ends: at least ROUNDS rounds, and more until
 * MIN_SWAPS swaps happened during it. `swap` says what went wrong, if anything.
 */
/** What every storm must end with: no failure, every prepare and release run, nothing left behind. */
function assertStormLeftNothing(tally: Tally, left: ReturnType<typeof leftovers>, rounds: number): void {
  assert.is(tally.failures.length, 0, `failures:\n${tally.failures.slice(0, 12).join('\n')}`);
  assert.is(tally.prepares, DOMAINS * rounds);
  assert.is(tally.releases, DOMAINS * rounds);
  assert.equal(left.devices, [], 'no device leaked');
  assert.equal(left.users, [], 'no user left');
  assert.equal(left.stateFiles, [], 'no state file left');
}

async function stormWhileSwapping(host: TestHost, tally: Tally, swap: (i: number) => Promise<string | undefined>) {
  const swaps: number[] = [];
  const swapErrors: string[] = [];
  let stormDone = false;
  const swapper = async (): Promise<void> => {
    for (let i = 1; !stormDone; i++) {
      const error = await swap(i);
      if (error !== undefined) swapErrors.push(error);
      else swaps.push(Date.now());
    }
  };
  const started = Date.now();
  let rounds = 0;
  const stormer = async (): Promise<void> => {
    do {
      await storm(host, DOMAINS, ROUNDS, WORKERS, tally);
      rounds += ROUNDS;
    } while (swaps.length < MIN_SWAPS && rounds < 10 * ROUNDS);
    stormDone = true;
  };
  await Promise.all([swapper(), stormer()]);
  const stormEnd = Math.max(...tally.hookRuns.map(([, end]) => end));
  return {
    rounds,
    seconds: (Date.now() - started) / 1000,
    swapErrors,
    swapsDuring: swaps.filter((t) => t <= stormEnd).length,
    acrossSwap: tally.hookRuns.filter(([start, end]) => swaps.some((t) => t >= start && t <= end)).length,
  };
}

const it = suite<{ dir: string; hosts: TestHost[] }>('upgrade');
it.before((ctx) => {
  ctx.dir = mkdtempSync(join(tmpdir(), 'vxvirt-upgrade-'));
  ctx.hosts = [];
});
it.after((ctx) => {
  for (const h of ctx.hosts) h.destroy();
  rmSync(ctx.dir, { recursive: true, force: true });
});

it("each bundle is the whole of its program: it loads nothing but Node's built-ins, so no two files of one version must match", () => {
  for (const f of ['hook.cjs', 'network-hook.cjs', 'cli.js']) {
    const text = readFileSync(join(repo, 'dist', f), 'utf8');
    const loaded = [...text.matchAll(/\bimport\s*(?:[\w*{}\s,$]*?\s*from\s*)?["']([^"']+)["']|\bimport\(\s*["']([^"']+)["']\s*\)|\brequire\(\s*["']([^"']+)["']\s*\)/g)].map((m) => m[1] ?? m[2] ?? m[3]!);
    assert.ok(loaded.length > 0, `${f}: its imports are found`);
    const builtin = (s: string) => s.startsWith('node:') || builtinModules.includes(s);
    // @unraid/libvirt: the CLI's optional bindings, loaded through require() when installed (never by a hook).
    assert.equal(loaded.filter((s) => !builtin(s) && !(f === 'cli.js' && s === '@unraid/libvirt')), [], `${f} loads only built-ins`);
  }
});

it('a bundle caught half-written (an in-place copy) fails the start: what writing beside and renaming prevents', async (ctx) => {
  const root = installRoot(join(ctx.dir, 'half'));
  const built = await build(root, '0.1.0-half');
  assert.is(built.status, 0, built.stderr);
  const whole = readFileSync(join(root, 'dist/hook.cjs'));
  const host = new TestHost('half');
  ctx.hosts.push(host);
  host.addUnderlay();
  useInstallation(host, root);
  assert.is(host.vxvirt('define-network', '--no-libvirt', 'tut', '--vni', '42', '--dev', 'ens47f1', '--remote', '192.168.8.101').status, 0);
  const xml = domainXml('vm', '00000000-0000-4000-8000-000000000001', bridgeNic('vxbr42'));

  writeFileSync(join(root, 'dist/hook.cjs'), whole.subarray(0, whole.length >> 1));
  const torn = host.hook('vm', 'prepare', 'begin', xml);
  assert.is(torn.status, 1, 'a start that loads half a bundle fails');
  assert.match(torn.stderr, /SyntaxError/);
  assert.not.ok(host.linkNames().includes('vxbr42'));

  writeFileSync(join(root, 'dist/hook.cjs'), whole);
  const r = host.hook('vm', 'prepare', 'begin', xml);
  assert.is(r.status, 0, r.stderr);
  assert.ok(host.linkNames().includes('vxbr42'));
  assert.is(host.hook('vm', 'release', 'end', xml).status, 0);
});

it(`build over build: npm run build's swaps, two versions alternating, under ${DOMAINS} guests x ${ROUNDS}+ rounds: no failed start, no leak, no lost user`, async (ctx) => {
  const root = installRoot(join(ctx.dir, 'build'));
  const versions = ['0.1.0-upgrade.a', '0.1.0-upgrade.b'];
  const first = await build(root, versions[0]!);
  assert.is(first.status, 0, first.stderr);
  assert.is(bundleVersion(root), versions[0]);
  const host = new TestHost('build');
  ctx.hosts.push(host);
  host.addUnderlay();
  useInstallation(host, root);
  defineNetworks(host);

  const tally = emptyTally();
  const { rounds, seconds, swapErrors, swapsDuring, acrossSwap } = await stormWhileSwapping(host, tally, async (i) => {
    const version = versions[i % 2]!;
    const r = await build(root, version);
    if (r.status !== 0) return `build ${version}: ${r.stderr.trim()}`;
    if (bundleVersion(root) !== version) return `after building ${version}, dist/hook.cjs says ${bundleVersion(root)}`;
    return undefined;
  });
  const left = leftovers(host);
  console.log(
    `  build over build: ${tally.prepares} prepares, ${tally.releases} releases (${DOMAINS} guests x ${rounds} rounds, ${WORKERS} at a time) during ${swapsDuring} swaps in ${seconds.toFixed(1)} s; ` +
      `${acrossSwap} hook runs had a swap happen while they ran; ${tally.failures.length} failures, ${left.devices.length} devices, ${left.users.length} users, ${left.stateFiles.length} state files left`,
  );

  assert.equal(swapErrors, [], 'every build succeeded and put its version in place');
  assert.ok(swapsDuring >= MIN_SWAPS, `${swapsDuring} swaps during the storm`);
  assert.ok(acrossSwap > 0, 'hooks ran across swaps');
  assertStormLeftNothing(tally, left, rounds);
  assert.not.ok(left.statusSeesDevices);
  // Only the built bundles are in dist/: no file written beside was left.
  assert.equal(readdirSync(join(root, 'dist')).sort(), ['cli.js', 'hook.cjs', 'network-hook.cjs']);
});

/**
 * A private mount namespace whose /usr, /etc and /var are overlays on the
 * machine's own, their changes going to `dir`/up: dpkg installs into it as
 * into the machine, maintainer scripts and all, and the machine's own files
 * never change. What dpkg writes is seen from outside in `dir`/up (renames
 * there are renames in one directory, as on a real /usr).
 */
async function overlayNamespace(dir: string): Promise<{ run(cmd: string, args: readonly string[]): Promise<Result>; upper(path: string): string; end(): void }> {
  const mounts = ['usr', 'etc', 'var']
    .map((d) => {
      for (const sub of ['up', 'work']) mkdirSync(join(dir, sub, d), { recursive: true });
      return `mount -t overlay overlay -o lowerdir=/${d},upperdir=${dir}/up/${d},workdir=${dir}/work/${d} /${d}`;
    })
    .join(' && ');
  const holder = spawn('unshare', ['--mount', '--propagation', 'private', 'sh', '-c', `${mounts} && echo ready && exec sleep 100000`], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  holder.stderr.on('data', (d) => (stderr += d));
  const ready = await new Promise<boolean>((resolve) => {
    holder.stdout.on('data', (d) => String(d).includes('ready') && resolve(true));
    holder.on('close', () => resolve(false));
  });
  assert.ok(ready, `mount namespace with overlays: ${stderr}`);
  return {
    run: (cmd, args) => runAsync('nsenter', ['--target', String(holder.pid), '--mount', cmd, ...args]),
    upper: (path) => join(dir, 'up', path),
    end: () => void holder.kill('SIGKILL'),
  };
}

/** Package B: package A with another version, in control and in its bundles (other code, as a newer release is). */
function repackAs(debA: string, version: string, upstream: string, out: string, work: string): string {
  const tree = join(work, `tree-${version}`);
  must('dpkg-deb', ['-R', debA, tree]);
  const control = join(tree, 'DEBIAN/control');
  writeFileSync(control, readFileSync(control, 'utf8').replace(/^Version: .*$/m, `Version: ${version}`));
  for (const f of ['cli.js', 'hook.cjs', 'network-hook.cjs']) {
    const path = join(tree, 'usr/lib/vxvirt/dist', f);
    const text = readFileSync(path, 'utf8');
    assert.match(text, /VERSION = "[^"]+"/, `${f} carries its version`);
    writeFileSync(path, text.replace(/VERSION = "[^"]+"/, `VERSION = "${upstream}"`));
  }
  const sums = must('sh', ['-c', `cd ${tree} && find . -path ./DEBIAN -prune -o -type f -printf '%P\\0' | sort -z | xargs -0 md5sum`]);
  writeFileSync(join(tree, 'DEBIAN/md5sums'), sums);
  const deb = join(out, `vxvirt_${version}_all.deb`);
  must('dpkg-deb', ['--root-owner-group', '-Zxz', '--build', tree, deb]);
  return deb;
}

it(`package over package: dpkg -i of one package over the other, back and forth, under ${DOMAINS} guests x ${ROUNDS}+ rounds: no failed start, no leak, no lost user`, async (ctx) => {
  const work = join(ctx.dir, 'deb');
  mkdirSync(work, { recursive: true });
  const packaged = await runAsync(process.execPath, [join(repo, 'scripts/package.mjs'), '--version', '0.1.0-1', '--out', work]);
  assert.is(packaged.status, 0, `npm run package: ${packaged.stderr}`);
  const debs = [join(work, 'vxvirt_0.1.0-1_all.deb'), repackAs(join(work, 'vxvirt_0.1.0-1_all.deb'), '0.1.1-1', '0.1.1', work, work)];
  const machineHadIt = existsSync('/usr/lib/vxvirt');
  const ns = await overlayNamespace(join(work, 'root'));
  try {
    // --no-triggers: man-db's index is not this test's business (and costs a minute a run on a busy machine).
    const dpkg = (deb: string) => ns.run('dpkg', ['--force-downgrade', '--force-confold', '--no-triggers', '-i', deb]);
    const first = await dpkg(debs[0]!);
    assert.is(first.status, 0, `dpkg -i: ${first.stderr}`);
    const lib = ns.upper('usr/lib/vxvirt');
    assert.ok(existsSync(join(lib, 'hooks/qemu')) && existsSync(join(lib, 'dist/hook.cjs')), 'the package is installed in the namespace');
    assert.is(existsSync('/usr/lib/vxvirt'), machineHadIt, "the machine's own /usr is not touched");
    assert.is(bundleVersion(lib), '0.1.0');

    const host = new TestHost('deb');
    ctx.hosts.push(host);
    host.addUnderlay();
    useInstallation(host, lib);
    defineNetworks(host);

    const tally = emptyTally();
    const { rounds, seconds, swapErrors, swapsDuring, acrossSwap } = await stormWhileSwapping(host, tally, async (i) => {
      const want = ['0.1.0', '0.1.1'][i % 2]!;
      const r = await dpkg(debs[i % 2]!);
      if (r.status !== 0) return `dpkg -i ${debs[i % 2]}: ${r.stderr.trim()}`;
      if (bundleVersion(lib) !== want) return `after installing ${want}, dist/hook.cjs says ${bundleVersion(lib)}`;
      return undefined;
    });
    const left = leftovers(host);
    console.log(
      `  package over package: ${tally.prepares} prepares, ${tally.releases} releases (${DOMAINS} guests x ${rounds} rounds, ${WORKERS} at a time) during ${swapsDuring} dpkg -i in ${seconds.toFixed(1)} s; ` +
        `${acrossSwap} hook runs had an upgrade finish while they ran; ${tally.failures.length} failures, ${left.devices.length} devices, ${left.users.length} users, ${left.stateFiles.length} state files left`,
    );
    assert.equal(swapErrors, [], 'every dpkg -i succeeded and put its version in place');
    assert.ok(swapsDuring >= MIN_SWAPS, `${swapsDuring} upgrades during the storm`);
    assert.ok(acrossSwap > 0, 'hooks ran across upgrades');
    assertStormLeftNothing(tally, left, rounds);
    // dpkg left nothing beside the files (no .dpkg-new, .dpkg-tmp).
    assert.equal(readdirSync(join(lib, 'dist')).sort(), ['cli.js', 'hook.cjs', 'network-hook.cjs']);
    assert.equal(readdirSync(join(lib, 'hooks')).sort(), ['network', 'qemu']);
  } finally {
    ns.end();
  }
  assert.is(existsSync('/usr/lib/vxvirt'), machineHadIt, "the machine's own /usr is not touched");
});

/** Every file under `dir`, relative path -> content (the directory's state, to compare). */
function snapshot(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (d: string): void => {
    if (!existsSync(d)) return;
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.isFile() && e.name !== 'lock') out[relative(dir, p)] = readFileSync(p, 'utf8');
    }
  };
  walk(dir);
  return out;
}

/** Rewrite a JSON file as a newer vxvirt would have written it: format version 2. */
function asNewerFormat(path: string): void {
  const mode = statSync(path).mode & 0o777;
  const raw = JSON.parse(readFileSync(path, 'utf8')) as Record<string, unknown>;
  writeFileSync(path, `${JSON.stringify({ ...raw, version: 2, addedLater: true }, null, 2)}\n`, { mode });
}

it('a downgrade: state in a newer format is refused with one line, nothing is changed, and the stop is journaled, not leaked', (ctx) => {
  const host = new TestHost('down');
  ctx.hosts.push(host);
  host.addUnderlay();
  const { VXVIRT_STATE_DIR: state, VXVIRT_CONFIG_DIR: config } = host.env;
  assert.is(host.vxvirt('define-network', '--no-libvirt', 'tut', '--vni', '42', '--dev', 'ens47f1', '--remote', '192.168.8.101').status, 0);
  assert.is(host.vxvirt('define-network', '--no-libvirt', 'later', '--vni', '43', '--dev', 'ens47f1', '--remote', '192.168.8.101').status, 0);
  const a = domainXml('vm-a', '00000000-0000-4000-8000-00000000000a', bridgeNic('vxbr42', '52:54:00:00:00:0a'));
  const b = domainXml('vm-b', '00000000-0000-4000-8000-00000000000b', bridgeNic('vxbr42', '52:54:00:00:00:0b'));
  const c = domainXml('vm-c', '00000000-0000-4000-8000-00000000000c', bridgeNic('vxbr43', '52:54:00:00:00:0c'));
  assert.is(host.hook('vm-a', 'prepare', 'begin', a).status, 0);
  const usersFile = join(state, 'users/tut.json');
  assert.is(JSON.parse(readFileSync(usersFile, 'utf8')).version, 1, 'state files carry their format version');
  assert.is(JSON.parse(readFileSync(join(state, 'domains/00000000-0000-4000-8000-00000000000a.json'), 'utf8')).version, 1);

  // A newer vxvirt ran here and wrote its format; this (older) one is back.
  asNewerFormat(usersFile);
  asNewerFormat(join(config, 'networks/later.json'));
  const before = { state: snapshot(state), config: snapshot(config), links: host.linkNames() };
  const unchanged = (what: string) => {
    assert.equal(snapshot(state), before.state, `${what}: state files unchanged`);
    assert.equal(snapshot(config), before.config, `${what}: definitions unchanged`);
    assert.equal(host.linkNames(), before.links, `${what}: devices unchanged`);
  };
  const oneLine = (r: Result, file: string, what: string) => {
    const lines = r.stderr.split('\n').filter(Boolean);
    assert.is(lines.length, 1, `one line: ${r.stderr}`);
    assert.match(lines[0]!, new RegExp(`^vxvirt: ${file.replace(/[.]/g, '\\.')}: ${what} in format version 2, but this vxvirt \\(0\\.1\\.0\\) reads version 1 only: a newer vxvirt wrote it; upgrade vxvirt`));
  };

  const startB = host.hook('vm-b', 'prepare', 'begin', b);
  assert.is(startB.status, 1, 'the start fails');
  oneLine(startB, usersFile, 'users state file');
  unchanged('a refused start');

  const startC = host.hook('vm-c', 'prepare', 'begin', c);
  assert.is(startC.status, 1);
  oneLine(startC, join(config, 'networks/later.json'), 'network definition');
  unchanged('a start on a newer definition');

  const status = host.vxvirt('status');
  assert.is(status.status, 12, 'the CLI exits 12');
  // status reports each unreadable definition as a warning, then fails on the users file.
  assert.match(status.stderr, /^vxvirt: warning: skipping network later: .*later\.json: network definition in format version 2/m);
  oneLine({ ...status, stderr: status.stderr.split('\n').filter((l) => !l.includes('warning')).join('\n') }, usersFile, 'users state file');

  // The stop: journaled (the record moves to releasing/), the pair and the users file left as they are.
  const stopA = host.hook('vm-a', 'release', 'end', a);
  assert.is(stopA.status, 0, 'release always exits 0');
  // hooks/qemu journaled it and left the rest to node in the background, whose error is in the change log.
  assert.is(stopA.stderr, '', 'libvirt gets nothing on stderr');
  const failed = readFileSync(host.env.VXVIRT_LOG_FILE, 'utf8')
    .split('\n')
    .filter((l) => l.includes('domain=vm-a action=failed operation="release end"'));
  assert.is(failed.length, 1, `one failed release in the change log: ${failed.join('\n')}`);
  oneLine({ ...stopA, stderr: `${/ error="(.*)"$/.exec(failed[0]!)![1]!.replace(/\\"/g, '"')}\n` }, usersFile, 'users state file');
  assert.equal(host.linkNames(), before.links, 'the pair is kept: this vxvirt cannot tell who uses it');
  assert.is(readFileSync(usersFile, 'utf8'), before.state['users/tut.json'], 'users file unchanged');
  assert.ok(existsSync(join(state, 'releasing/00000000-0000-4000-8000-00000000000a.json')), 'the stop is journaled in releasing/');
  assert.not.ok(existsSync(join(state, 'domains/00000000-0000-4000-8000-00000000000a.json')));

  // A vxvirt that reads the state (here: the file back in version 1) finishes the journaled stop at its next run.
  const raw = JSON.parse(readFileSync(usersFile, 'utf8')) as Record<string, unknown>;
  writeFileSync(usersFile, `${JSON.stringify({ ...raw, version: 1 }, null, 2)}\n`, { mode: 0o600 });
  const next = host.hook('vm-b', 'release', 'end', b);
  assert.is(next.status, 0, next.stderr);
  assert.is(next.stderr, '');
  assert.not.ok(host.linkNames().includes('vxbr42'), 'the pair goes with its last user');
  assert.equal(Object.keys(snapshot(state)), [], 'no state file left');
});

it.run();
