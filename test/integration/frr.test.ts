// The evpn mode with real FRR: two simulated hosts (network namespaces joined
// by a veth underlay), each running Debian's FRR 8.4 zebra + bgpd in its own
// namespace and pathspace (-N), configured with what `vxvirt frr-config`
// prints. A guest's prepare on each host makes the evpn pair; zebra learns the
// VNI, BGP carries it, and each host gets the other's flood entry
// (00:00:00:00:00:00 dst OTHER); `vxvirt check` reports the session and the
// VNI; the other side's release withdraws it and the entry disappears.
// The daemons are killed by pid (from their pid files) after the test, pass
// or fail, and when the test process exits.
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { needs } from '../support/require.ts';
import { bridgeNic, domainXml, must, repo, sh, TestHost, type Result } from '../support/netns.ts';

const NO_LIBVIRT = { LIBVIRT_DEFAULT_URI: 'qemu:///system?socket=/nonexistent/libvirt-sock' };
const ZEBRA = '/usr/lib/frr/zebra';
const BGPD = '/usr/lib/frr/bgpd';
/** BGP connects, zebra installs: seconds; 60 s is far beyond it, also on a loaded machine. */
const CONVERGE_MS = 60_000;
const UNDERLAY = { a: '192.168.8.100', b: '192.168.8.101' };

interface Host {
  host: TestHost;
  address: string;
  /** FRR's pathspace: /var/run/frr/NAME holds its pid files and vty sockets. */
  pathspace: string;
  pidFiles: string[];
}

interface Ctx {
  a: Host;
  b: Host;
}

const started = new Set<string>();

/** Kill the daemons of these pid files, by pid; remove their pathspace directory. */
function stopFrr(h: Host | undefined): void {
  if (!h) return;
  for (const file of h.pidFiles) {
    let pid: number;
    try {
      pid = Number(readFileSync(file, 'utf8').trim());
    } catch {
      continue; // never started
    }
    if (Number.isInteger(pid) && pid > 1) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
  }
  rmSync(join('/var/run/frr', h.pathspace), { recursive: true, force: true });
  started.delete(h.pathspace);
}
const running: Host[] = [];
process.on('exit', () => running.forEach(stopFrr));

const cli = (h: Host, args: string[], env: Record<string, string> = {}): Result =>
  h.host.exec(process.execPath, [join(repo, 'dist/cli.js'), ...args], '', { ...NO_LIBVIRT, ...env });

function ok(r: Result, what: string): string {
  assert.is(r.status, 0, `${what}: exit ${r.status}, stdout: ${r.stdout} stderr: ${r.stderr}`);
  return r.stdout;
}

/** zebra + bgpd in the host's namespace, pathspace = its name, bgpd's configuration from `vxvirt frr-config`. */
function startFrr(h: Host): void {
  const dir = join('/var/run/frr', h.pathspace);
  mkdirSync(dir, { recursive: true });
  started.add(h.pathspace);
  // FRR drops to user frr: its configuration and pathspace are frr's, as the package makes /etc/frr and /var/run/frr.
  const conf = dir;
  const bgpConf = ok(cli(h, ['frr-config', '--asn', '65000', '--neighbor', UNDERLAY.a, '--neighbor', UNDERLAY.b]), 'frr-config');
  writeFileSync(join(conf, 'bgpd.conf'), bgpConf);
  writeFileSync(join(conf, 'zebra.conf'), '');
  must('chown', ['-R', 'frr:frr', dir]);
  for (const [daemon, file] of [
    [ZEBRA, 'zebra.conf'],
    [BGPD, 'bgpd.conf'],
  ] as const) {
    const name = daemon.split('/').pop()!;
    const pidFile = join(dir, `${name}.pid`);
    h.pidFiles.push(pidFile);
    // -d returns once the daemon is ready (zebra accepts bgpd then); -P 0: no TCP vty.
    const r = sh('ip', ['netns', 'exec', h.host.ns, daemon, '-N', h.pathspace, '-d', '-f', join(conf, file), '-i', pidFile, '-P', '0']);
    assert.is(r.status, 0, `${name} -N ${h.pathspace}: ${r.stderr}`);
  }
}

const floodDsts = (h: Host): string[] => {
  if (!h.host.link('vxlan42')) return [];
  return h.host
    .fdb('vxlan42')
    .filter((e) => e.mac === '00:00:00:00:00:00' && e.dst)
    .map((e) => e.dst!)
    .sort();
};

async function until(what: string, cond: () => boolean): Promise<number> {
  const start = Date.now();
  while (!cond()) {
    if (Date.now() - start > CONVERGE_MS) assert.unreachable(`${what}: not within ${CONVERGE_MS / 1000} s`);
    await new Promise((r) => setTimeout(r, 250));
  }
  return Date.now() - start;
}

interface Finding {
  level: string;
  subject: string;
  message: string;
}
const frrFindings = (h: Host): string[] => {
  const r = cli(h, ['check', '--json'], { VXVIRT_FRR_PATHSPACE: h.pathspace });
  return (JSON.parse(r.stdout) as Finding[]).filter((f) => f.subject.startsWith('FRR') || /zebra/.test(f.message)).map((f) => `${f.level} ${f.subject}: ${f.message}`);
};

const it = suite<Ctx>('evpn with FRR');

it.before.each((ctx) => {
  needs('vtysh', ZEBRA, BGPD);
  const a: Host = { host: new TestHost('frra'), address: UNDERLAY.a, pathspace: '', pidFiles: [] };
  const b: Host = { host: new TestHost('frrb'), address: UNDERLAY.b, pathspace: '', pidFiles: [] };
  a.pathspace = a.host.ns;
  b.pathspace = b.host.ns;
  ctx.a = a;
  ctx.b = b;
  // The underlay: one veth between the two namespaces.
  must('ip', ['-n', a.host.ns, 'link', 'add', 'ens47f1', 'type', 'veth', 'peer', 'name', 'ens47f1', 'netns', b.host.ns]);
  for (const h of [a, b]) {
    h.host.ip('addr', 'add', `${h.address}/24`, 'dev', 'ens47f1');
    h.host.ip('link', 'set', 'ens47f1', 'up');
    ok(cli(h, ['define-network', '--no-libvirt', 'ev', '--vni', '42', '--dev', 'ens47f1', '--local', h.address, '--evpn']), 'define ev');
  }
});

it.after.each((ctx) => {
  for (const h of [ctx.a, ctx.b]) {
    stopFrr(h);
    h?.host.destroy();
  }
});

it('the other host\'s flood entry appears through BGP, check says so, and goes with its last guest', async ({ a, b }) => {
  running.push(a, b);
  startFrr(a);
  startFrr(b);
  ok(a.host.hook('vm-a', 'prepare', 'begin', domainXml('vm-a', '00000000-0000-4000-8000-00000000000a', bridgeNic('vxbr42', '52:54:00:00:00:0a'))), 'prepare on a');
  ok(b.host.hook('vm-b', 'prepare', 'begin', domainXml('vm-b', '00000000-0000-4000-8000-00000000000b', bridgeNic('vxbr42', '52:54:00:00:00:0b'))), 'prepare on b');

  await until('a has a flood entry for b', () => floodDsts(a).includes(UNDERLAY.b));
  await until('b has a flood entry for a', () => floodDsts(b).includes(UNDERLAY.a));
  assert.equal(floodDsts(a), [UNDERLAY.b], 'one flood entry per remote VTEP, nothing else');

  assert.equal(frrFindings(a), [
    `OK FRR bgpd (pathspace ${a.pathspace}): EVPN session established with ${UNDERLAY.b}`,
    `OK network ev: VNI 42 known to zebra (vxlan42, VTEP ${UNDERLAY.a}), remote VTEPs ${UNDERLAY.b}`,
  ]);
  // --frr-pathspace says the same as the environment.
  const byOption = JSON.parse(cli(a, ['check', '--json', '--frr-pathspace', a.pathspace]).stdout) as Finding[];
  assert.ok(byOption.some((f) => f.level === 'OK' && /EVPN session established/.test(f.message)));

  // b's last guest stops: its pair goes, zebra withdraws VNI 42, a's flood entry for b goes.
  ok(b.host.hook('vm-b', 'release', 'end', domainXml('vm-b', '00000000-0000-4000-8000-00000000000b', bridgeNic('vxbr42', '52:54:00:00:00:0b'))), 'release on b');
  assert.is(b.host.link('vxlan42'), undefined);
  await until("a's flood entry for b is withdrawn", () => !floodDsts(a).includes(UNDERLAY.b));
  assert.equal(frrFindings(a), [
    `OK FRR bgpd (pathspace ${a.pathspace}): EVPN session established with ${UNDERLAY.b}`,
    'OK network ev: VNI 42 known to zebra (vxlan42, VTEP 192.168.8.100), no remote VTEP yet',
  ]);
  // b has no guest on the network: only the session is checked there.
  assert.equal(frrFindings(b), [`OK FRR bgpd (pathspace ${b.pathspace}): EVPN session established with ${UNDERLAY.a}`]);

  // FRR stopped: check says FRR is not running, in one finding.
  stopFrr(a);
  const down = frrFindings(a);
  assert.is(down.length, 1, down.join('\n'));
  assert.match(down[0]!, new RegExp(`^FAIL FRR bgpd \\(pathspace ${a.pathspace}\\): FRR is not running`));
});

it.run();
