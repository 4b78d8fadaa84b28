// `vxvirt reconcile` and the drift part of `vxvirt status` against real
// devices in a private network namespace: each kind of drift is shown by
// status, listed by --dry-run without a change to the kernel, repaired by
// reconcile; a simulated host reboot (the state directory wiped, with and
// without the devices) converges. libvirt is unreachable here (its URI names
// a socket that does not exist), so users are judged by age and bridge ports.
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { bridgeNic, domainXml, repo, TestHost, type Result } from '../support/netns.ts';

const NO_LIBVIRT = { LIBVIRT_DEFAULT_URI: 'qemu:///system?socket=/nonexistent/libvirt-sock' };
const GROUP = (vni: number) => String(0x76000000 + vni);
const A = '00000000-0000-4000-8000-00000000000a';
const vmA = domainXml('vm-a', A, `${bridgeNic('vxbr42')}\n${bridgeNic('vxbr43', '52:54:00:00:00:43')}`);
const vmB = domainXml('vm-b', '00000000-0000-4000-8000-00000000000b', bridgeNic('vxbr42', '52:54:00:00:00:0b'));

interface Ctx {
  host: TestHost;
}

/** vxvirt with libvirt unreachable. */
const cli = (host: TestHost, ...args: string[]): Result => host.exec(process.execPath, [join(repo, 'dist/cli.js'), ...args], '', NO_LIBVIRT);

function ok(r: Result, what: string): void {
  assert.is(r.status, 0, `${what}: exit ${r.status}, stdout: ${r.stdout} stderr: ${r.stderr}`);
}

/** What vxvirt manages of the kernel's state (ip's JSON also has timers that tick). */
function kernelView(host: TestHost): unknown {
  const links = JSON.parse(host.ip('-d', '-j', 'link', 'show')) as Array<Record<string, any>>;
  return links
    .filter((l) => /^vx|^vnet/.test(l.ifname))
    .map((l) => ({
      name: l.ifname,
      mtu: l.mtu,
      up: l.flags.includes('UP'),
      master: l.master,
      group: l.group,
      alias: l.ifalias,
      kind: l.linkinfo?.info_kind,
      vxlan: l.linkinfo?.info_kind === 'vxlan' ? l.linkinfo.info_data : undefined,
      flood: l.linkinfo?.info_kind === 'vxlan' ? host.fdb(l.ifname).filter((e) => e.mac === '00:00:00:00:00:00').map((e) => e.dst).sort() : undefined,
    }));
}

interface StatusRow {
  name: string | null;
  vni: number;
  defined: boolean;
  domains: Array<{ name: string }>;
  drift: Array<{ kind: string; devices: string[]; detail: string }>;
}
const statusJson = (host: TestHost): StatusRow[] => JSON.parse(cli(host, 'status', '--json').stdout);
const driftOf = (host: TestHost, name: string) => statusJson(host).find((r) => r.name === name)?.drift.map((d) => `${d.kind}: ${d.detail}`) ?? [];

function files(host: TestHost): string[] {
  return host.exec('find', [host.env.VXVIRT_STATE_DIR, '-name', '*.json']).stdout.split('\n').filter(Boolean);
}

// ---- drift -------------------------------------------------------------------

const drift = suite<Ctx>('reconcile: drift');

drift.before.each((ctx) => {
  ctx.host = new TestHost();
  const host = ctx.host;
  host.addUnderlay();
  ok(cli(host, 'define-network', '--no-libvirt', 'tut', '--vni', '42', '--dev', 'ens47f1', '--local', '192.168.8.100', '--remote', '192.168.8.101', '--remote', '192.168.8.102'), 'define tut');
  ok(cli(host, 'define-network', '--no-libvirt', 'mc', '--vni', '43', '--dev', 'ens47f1', '--group', '239.1.1.1'), 'define mc');
  ok(host.hook('vm-a', 'prepare', 'begin', vmA), 'prepare');
  // A guest's tap, so the users look in use whatever their age.
  host.ip('link', 'add', 'vnet0', 'type', 'veth', 'peer', 'name', 'vnet0p');
  host.ip('link', 'set', 'vnet0', 'master', 'vxbr42');
  host.ip('link', 'set', 'vnet0', 'up');
});
drift.after.each((ctx) => ctx.host.destroy());

interface DriftCase {
  name: string;
  make: (host: TestHost) => void;
  /** The status drift entry and the reconcile line it must produce (among others the kernel may add). */
  status: RegExp;
  line: RegExp;
  fixed: (host: TestHost) => void;
}

const cases: DriftCase[] = [
  {
    name: 'vxlan deleted',
    make: (h) => h.ip('link', 'del', 'vxlan42'),
    status: /^missing: vxlan42 is missing, used by vm-a$/,
    line: /^repaired vxlan42 \(network tut\): missing -> created$/m,
    fixed: (h) => assert.is(h.link('vxlan42')?.master, 'vxbr42'),
  },
  {
    name: 'MTU changed',
    make: (h) => h.ip('link', 'set', 'vxlan42', 'mtu', '1400'),
    status: /^device: vxlan42: mtu 1400 -> 1450$/,
    line: /^repaired vxlan42 \(network tut\): mtu 1400 -> 1450$/m,
    fixed: (h) => assert.is(h.link('vxlan42')?.mtu, 1450),
  },
  {
    name: 'vxlan detached from the bridge (nomaster)',
    make: (h) => h.ip('link', 'set', 'vxlan42', 'nomaster'),
    status: /^device: vxlan42: not a port of any bridge -> port of vxbr42$/,
    line: /^repaired vxlan42 \(network tut\): not a port of any bridge -> port of vxbr42$/m,
    fixed: (h) => assert.is(h.link('vxlan42')?.master, 'vxbr42'),
  },
  {
    name: 'bridge down',
    make: (h) => h.ip('link', 'set', 'vxbr42', 'down'),
    status: /^device: vxbr42: down -> up$/,
    line: /^repaired vxbr42 \(network tut\): down -> up$/m,
    fixed: (h) => assert.ok(h.link('vxbr42')?.flags.includes('UP')),
  },
  {
    name: 'unicast flood entry deleted',
    make: (h) => must(h, 'bridge', ['fdb', 'del', '00:00:00:00:00:00', 'dev', 'vxlan42', 'dst', '192.168.8.102']),
    status: /^device: vxlan42: no flood entry for 192\.168\.8\.102 -> added$/,
    line: /^repaired vxlan42 \(network tut\): no flood entry for 192\.168\.8\.102 -> added$/m,
    fixed: (h) => assert.equal(h.fdb('vxlan42').filter((e) => e.mac === '00:00:00:00:00:00').map((e) => e.dst).sort(), ['192.168.8.101', '192.168.8.102']),
  },
  {
    name: 'vxlan re-pointed at another remote by hand',
    make: (h) => {
      h.ip('link', 'del', 'vxlan42');
      h.ip('link', 'add', 'vxlan42', 'group', GROUP(42), 'type', 'vxlan', 'id', '42', 'dstport', '4789', 'local', '192.168.8.100', 'remote', '192.168.8.199', 'dev', 'ens47f1');
      h.ip('link', 'set', 'vxlan42', 'master', 'vxbr42', 'up');
    },
    status: /^device: vxlan42: remote 192\.168\.8\.199 -> \(none\) \(replaced\)/,
    line: /^repaired vxlan42 \(network tut\): remote 192\.168\.8\.199 -> \(none\) \(replaced\)/m,
    fixed: (h) => assert.not.ok('remote' in (h.link('vxlan42')?.linkinfo?.info_data ?? {})),
  },
];

function must(host: TestHost, cmd: string, args: string[]): void {
  const r = host.exec(cmd, args);
  assert.is(r.status, 0, `${cmd} ${args.join(' ')}: ${r.stderr}`);
}

for (const c of cases) {
  drift(`${c.name}: status shows it, --dry-run lists it and changes nothing, reconcile repairs it`, ({ host }) => {
    assert.equal(driftOf(host, 'tut'), [], 'in sync after prepare');
    c.make(host);
    const shown = driftOf(host, 'tut');
    assert.ok(shown.some((d) => c.status.test(d)), `status drift: ${JSON.stringify(shown)}`);
    assert.match(cli(host, 'status').stdout, /\ndrift \(`vxvirt reconcile` converges it\):\n {2}tut: /);

    const before = kernelView(host);
    const dry = cli(host, 'reconcile', '--dry-run');
    assert.is(dry.status, 11, `dry run exits 11 when there is something to change: ${dry.stderr}`);
    assert.match(dry.stdout, c.line);
    assert.match(dry.stdout, /\ndry run: nothing was changed\n$/);
    assert.match(dry.stderr, /^vxvirt: dry run: \d+ change\(s\) to make\n$/m);
    assert.equal(kernelView(host), before, 'the dry run changed nothing');

    const run = cli(host, 'reconcile');
    ok(run, 'reconcile');
    // The same lines as the dry run promised.
    assert.is(run.stdout, dry.stdout.replace('dry run: nothing was changed\n', ''));
    c.fixed(host);
    assert.equal(driftOf(host, 'tut'), [], 'in sync again');
    assert.is(host.link('vnet0')?.master, 'vxbr42', "the guest's tap is still on the bridge");
    const again = cli(host, 'reconcile');
    ok(again, 'second reconcile');
    assert.is(again.stdout, 'nothing to do\n');
  });
}

drift('status: devices nobody uses, and devices of a network no longer defined', ({ host }) => {
  ok(host.hook('vm-a', 'release', 'end', vmA), 'release');
  // vnet0 keeps vxbr42 and vxlan42 (a port vxvirt does not know); vxbr43 went with the release.
  assert.equal(driftOf(host, 'tut'), ['unused: vxbr42+vxlan42 exist but no domain uses them']);
  // A network undefined while a guest used it: its devices stay, known by their group.
  ok(host.hook('vm-a', 'prepare', 'begin', vmA), 'prepare again');
  ok(cli(host, 'undefine-network', '--no-libvirt', '--force', 'mc'), 'undefine --force');
  const orphan = statusJson(host).find((r) => r.vni === 43);
  assert.equal(orphan && { name: orphan.name, defined: orphan.defined, domains: orphan.domains.map((d) => d.name), drift: orphan.drift.map((d) => d.kind) }, {
    name: 'mc',
    defined: false,
    domains: ['vm-a'],
    drift: ['undefined'],
  });
  const text = cli(host, 'status').stdout;
  assert.match(text, /\nvxvirt's devices of networks no longer defined:\nVNI\s+NETWORK\s+DEVICES\s+PORTS\s+DOMAINS\n43\s+mc\s+vxbr43\+vxlan43\s+-\s+vm-a\n/);
  assert.match(text, /\n {2}VNI 43 \(network mc\): vxbr43\+vxlan43 belong to a network that is not defined, used by vm-a\n/);
  // Used: reconcile leaves them and says so.
  const r = cli(host, 'reconcile');
  assert.is(r.status, 11);
  assert.match(r.stdout, /^left vxbr43\+vxlan43 \(network mc, VNI 43, not defined\) in place: used by vm-a$/m);
  // Its release removes them (the record has the VNI), and status is clean.
  ok(host.hook('vm-a', 'release', 'end', vmA), 'release');
  assert.is(host.link('vxbr43'), undefined);
  assert.is(statusJson(host).find((r) => r.vni === 43), undefined);
});

drift('a broken definition is reported, never acted on, and does not hide the others', ({ host }) => {
  host.exec('sh', ['-c', `printf '{"name": "bad", "vni": ' > ${host.env.VXVIRT_CONFIG_DIR}/networks/bad.json`]);
  host.ip('link', 'set', 'vxbr42', 'down');
  const s = cli(host, 'status');
  assert.match(s.stderr, /^vxvirt: warning: skipping network bad: \S+bad.json: not valid JSON/m);
  assert.match(s.stdout, /\n {2}tut: vxbr42: down -> up\n/);
  const r = cli(host, 'reconcile');
  assert.is(r.status, 11, 'not converged while a definition is broken');
  assert.match(r.stdout, /^repaired vxbr42 \(network tut\): down -> up$/m);
  assert.match(r.stdout, /^left network bad alone: \S+bad.json: not valid JSON/m);
  assert.ok(host.link('vxbr42')?.flags.includes('UP'));
});

drift('bad input: --grace must be a number of seconds', ({ host }) => {
  const r = cli(host, 'reconcile', '--grace', 'soon');
  assert.is(r.status, 2);
  assert.match(r.stderr, /^vxvirt: --grace "soon": must be a number of seconds >= 0\n$/);
});

drift.run();

// ---- a host reboot -------------------------------------------------------------

// Run with each way vxvirt reaches libvirt (src/libvirt/): both must find it
// unreachable and say so in the same words.
for (const backend of ['bindings', 'virsh'] as const) {
const reboot = suite<Ctx>(`reconcile: host reboot (VXVIRT_LIBVIRT=${backend})`);
const cli = (host: TestHost, ...args: string[]): Result =>
  host.exec(process.execPath, [join(repo, 'dist/cli.js'), ...args], '', { ...NO_LIBVIRT, VXVIRT_LIBVIRT: backend });

reboot.before.each((ctx) => {
  ctx.host = new TestHost();
  const host = ctx.host;
  host.addUnderlay();
  ok(cli(host, 'define-network', '--no-libvirt', 'tut', '--vni', '42', '--dev', 'ens47f1', '--remote', '192.168.8.101'), 'define tut');
  ok(cli(host, 'define-network', '--no-libvirt', 'mc', '--vni', '43', '--dev', 'ens47f1', '--group', '239.1.1.1'), 'define mc');
  ok(host.hook('vm-a', 'prepare', 'begin', vmA), 'prepare a');
  ok(host.hook('vm-b', 'prepare', 'begin', vmB), 'prepare b');
});
reboot.after.each((ctx) => ctx.host.destroy());

const wipeState = (host: TestHost) => assert.is(host.exec('rm', ['-rf', host.env.VXVIRT_STATE_DIR]).status, 0);
const vxDevices = (host: TestHost) => host.linkNames().filter((n) => /^vx/.test(n));

reboot('state wiped while the devices exist: no records, no users, the devices go', ({ host }) => {
  wipeState(host);
  const dry = cli(host, 'reconcile', '--dry-run');
  assert.is(dry.status, 11);
  assert.is(dry.stdout, 'removed vxbr43+vxlan43 (network mc): no users\nremoved vxbr42+vxlan42 (network tut): no users\ndry run: nothing was changed\n');
  assert.equal(vxDevices(host), ['vxbr42', 'vxbr43', 'vxlan42', 'vxlan43']);
  const r = cli(host, 'reconcile');
  ok(r, 'reconcile');
  assert.is(r.stdout, 'removed vxbr43+vxlan43 (network mc): no users\nremoved vxbr42+vxlan42 (network tut): no users\n');
  assert.equal(vxDevices(host), []);
  assert.equal(files(host), []);
  // The guests start again after the reboot: the hook works on the fresh state.
  ok(host.hook('vm-a', 'prepare', 'begin', vmA), 'prepare after reboot');
  assert.equal(vxDevices(host), ['vxbr42', 'vxbr43', 'vxlan42', 'vxlan43']);
});

reboot('state wiped and the devices gone (a real reboot): nothing to do', ({ host }) => {
  wipeState(host);
  for (const d of ['vxlan42', 'vxbr42', 'vxlan43', 'vxbr43']) host.ip('link', 'del', d);
  const r = cli(host, 'reconcile');
  ok(r, 'reconcile');
  assert.is(r.stdout, 'nothing to do\n');
  assert.is(r.stderr, '', 'no users to judge, so no word about libvirt');
});

reboot('state kept but the devices gone (state on disk): old users with no port are dropped, nothing is made', ({ host }) => {
  for (const d of ['vxlan42', 'vxbr42', 'vxlan43', 'vxbr43']) host.ip('link', 'del', d);
  const young = cli(host, 'reconcile', '--dry-run');
  assert.is(young.status, 11, 'within the grace period the users are kept, so their devices would be made');
  assert.match(young.stdout, /^repaired vxbr42 \(network tut\): missing -> created$/m);
  assert.match(young.stderr, /warning: libvirt is unreachable \(cannot connect to libvirt at .*\): a user counts as gone only when recorded over 120 s ago/);
  const r = cli(host, 'reconcile', '--grace', '0');
  ok(r, 'reconcile --grace 0');
  assert.match(r.stdout, /^dropped user vm-a from mc: vxbr43 has no port but the vxlan and it was recorded \d+ s ago \(libvirt unreachable\)$/m);
  assert.match(r.stdout, /^dropped user vm-b from tut: vxbr42 has no port but the vxlan/m);
  assert.match(r.stdout, /^dropped the record of vm-a on tut: vxbr42 has no port but the vxlan and it was recorded \d+ s ago \(libvirt unreachable\)$/m);
  assert.not.match(r.stdout, /repaired|removed/);
  assert.equal(vxDevices(host), []);
  assert.equal(files(host), [], 'no users, no records left');
});

reboot('state wiped while a guest is still on a bridge: that pair stays, and reconcile says so', ({ host }) => {
  host.ip('link', 'add', 'vnet0', 'type', 'veth', 'peer', 'name', 'vnet0p');
  host.ip('link', 'set', 'vnet0', 'master', 'vxbr42');
  wipeState(host);
  const r = cli(host, 'reconcile');
  assert.is(r.status, 11, r.stderr);
  assert.match(r.stdout, /^removed vxbr43\+vxlan43 \(network mc\): no users$/m);
  assert.match(r.stdout, /^left vxbr42\+vxlan42 \(network tut\) in place: no users, but bridge vxbr42 still has ports vnet0/m);
  assert.match(r.stderr, /^vxvirt: not converged: 1 thing\(s\) left for a person$/m);
  assert.equal(vxDevices(host), ['vxbr42', 'vxlan42']);
});

reboot('devices of a network undefined while in use go once nobody uses them; devices vxvirt did not make stay', ({ host }) => {
  ok(cli(host, 'undefine-network', '--no-libvirt', '--force', 'mc'), 'undefine --force');
  host.ip('link', 'add', 'vxbr50', 'type', 'bridge');
  host.ip('link', 'add', 'vxlan51', 'group', '7', 'type', 'vxlan', 'id', '51', 'dstport', '4789', 'remote', '192.168.8.101', 'dev', 'ens47f1');
  wipeState(host);
  const json = cli(host, 'reconcile', '--json');
  ok(json, 'reconcile --json');
  const report = JSON.parse(json.stdout);
  assert.equal(report.actions.map((a: { lines: string[] }) => a.lines).flat(), [
    'removed vxbr42+vxlan42 (network tut): no users',
    'removed vxbr43+vxlan43 (network mc, VNI 43, not defined): no users',
  ]);
  assert.equal([report.converged, report.libvirt.reachable, report.dryRun], [true, false, false]);
  assert.equal(vxDevices(host), ['vxbr50', 'vxlan51']);
});

reboot.run();
}

// ---- libvirtd unreachable: definitions go on, reconcile makes up later ----------------

const later = suite<Ctx>('define-network and undefine-network while libvirtd is unreachable');
later.before.each((ctx) => {
  ctx.host = new TestHost();
  ctx.host.addUnderlay();
});
later.after.each((ctx) => ctx.host.destroy());

const UNREACHABLE = /cannot connect to libvirt at qemu:\/\/\/system\?socket=\/nonexistent\/libvirt-sock: Failed to connect socket to '\/nonexistent\/libvirt-sock': No such file or directory/;

later('define-network writes the definition, warns once, exits 0; status and reconcile say the libvirt network is not checked; undefine-network forgets it and warns', ({ host }) => {
  const def = cli(host, 'define-network', 'tut', '--vni', '42', '--dev', 'ens47f1', '--remote', '192.168.8.101');
  ok(def, 'define-network');
  assert.is(def.stdout, 'defined network tut: VNI 42 on ens47f1, MTU 1450; libvirt network not created yet\n');
  const warning = def.stderr.split('\n').filter(Boolean);
  assert.is(warning.length, 1, def.stderr);
  assert.match(warning[0]!, /^vxvirt: warning: libvirt network tut was not created \(/);
  assert.match(warning[0]!, UNREACHABLE);
  assert.match(warning[0]!, /\): `vxvirt reconcile` creates it once libvirt is reachable, or run this command again with --replace$/);
  const file = JSON.parse(host.exec('cat', [join(host.env.VXVIRT_CONFIG_DIR, 'networks/tut.json')]).stdout);
  assert.is(file.libvirt, true, 'the wish for a libvirt network is recorded');
  ok(cli(host, 'define-network', '--no-libvirt', 'mc', '--vni', '43', '--dev', 'ens47f1', '--group', '239.1.1.1'), 'define mc');
  assert.is(JSON.parse(host.exec('cat', [join(host.env.VXVIRT_CONFIG_DIR, 'networks/mc.json')]).stdout).libvirt, false);

  const status = cli(host, 'status');
  ok(status, 'status');
  assert.match(status.stderr, /^vxvirt: warning: libvirt networks not shown: cannot connect to libvirt at /);
  assert.match(status.stdout, /\ntut\s+42\s+point-to-point\s+ens47f1\s+vxbr42 absent\s+vxlan42 absent\s+-\s+-\s+\?\n/);
  const json = JSON.parse(cli(host, 'status', '--json').stdout) as Array<{ name: string; libvirtNetwork: { wanted: boolean; checked: boolean } }>;
  assert.equal(json.map((r) => [r.name, r.libvirtNetwork.wanted, r.libvirtNetwork.checked]), [['mc', false, false], ['tut', true, false]]);

  const rec = cli(host, 'reconcile', '--dry-run');
  assert.is(rec.status, 0, rec.stderr);
  assert.is(rec.stdout, 'nothing to do\n');
  assert.match(rec.stderr, /^vxvirt: warning: libvirt is unreachable \(cannot connect to libvirt at .*\): the libvirt networks of tut were not checked$/m);

  const undef = cli(host, 'undefine-network', 'tut');
  ok(undef, 'undefine-network');
  assert.is(undef.stdout, 'undefined network tut\n');
  assert.match(undef.stderr, /^vxvirt: warning: libvirt network tut was not removed \(cannot connect to libvirt at .*\): `vxvirt reconcile` removes it, if vxvirt made it, once libvirt is reachable\n$/);
  assert.is(host.exec('test', ['-e', join(host.env.VXVIRT_CONFIG_DIR, 'networks/tut.json')]).status, 1, 'the definition is gone');
});

later.run();
