import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { diagnose, formatFindings, iprouteVersion, summary, type Facts, type FileFacts, type Finding, type NetworkFacts } from '../../src/check.ts';
import type { HooksDir } from '../../src/hook-install.ts';
import { describeAccess, type Access } from '../../src/libvirt/choice.ts';
import { validateDefinition, type DefinitionInput } from '../../src/network-definition.ts';

const HOOK = '/opt/vxvirt/hooks/qemu';
const hooksDir = (over: Partial<HooksDir> = {}): HooksDir => ({
  dir: '/etc/libvirt/hooks',
  exists: true,
  main: { kind: 'vxvirt', link: HOOK, current: true },
  dropInDir: 'absent',
  dropIn: { kind: 'absent' },
  ...over,
});

const def = (extra: Partial<DefinitionInput> = {}) =>
  validateDefinition({ name: 'tut', vni: 42, dev: 'ens47f1', local: '192.168.8.100', remotes: ['192.168.8.101'], ...extra });
const goodUnderlay = { up: true, lowerUp: true, multicast: true, mtu: 1550 };
const net = (over: Partial<NetworkFacts> = {}): NetworkFacts => ({
  def: def(),
  underlay: goodUnderlay,
  local: [{ dev: 'ens47f1', tentative: false, dadfailed: false }],
  foreignDevices: [],
  ...over,
});
const file = (path: string, role: FileFacts['role'], mode: number, isDir = true, uid = 0): FileFacts => ({ path, role, isDir, uid, mode });

/** A host where everything is right. */
const healthy = (): Facts => ({
  iproute: { version: 'ip utility, iproute2-6.1.0, libbpf 1.1.2', json: true },
  flock: { version: 'flock from util-linux 2.38.1', conflictExitCode: true },
  vxlan: { ok: true },
  networksDir: '/etc/vxvirt/networks',
  broken: [],
  networks: [net()],
  hook: {
    state: hooksDir(),
    checkout: '/opt/vxvirt',
    executable: true,
    node: { path: '/usr/bin/node', version: 'v20.19.0' },
    bundle: { checkout: '/opt/vxvirt', path: '/opt/vxvirt/dist/hook.js', exists: true },
  },
  files: [
    file('/etc/vxvirt', 'config', 0o755),
    file('/etc/vxvirt/networks/tut.json', 'config', 0o644, false),
    file('/run/vxvirt', 'state', 0o700),
    file('/tmp', 'hook', 0o1777),
    file('/opt/vxvirt/hooks/qemu', 'hook', 0o755, false),
  ],
  libvirt: {
    access: { setting: 'auto', backend: 'bindings', description: describeAccess({ setting: 'auto', backend: 'bindings' }) },
    virsh: { path: '/usr/bin/virsh' },
  },
});

const problems = (findings: Finding[]) => findings.filter((f) => f.level !== 'OK');
const only = (facts: Facts): Finding => {
  const p = problems(diagnose(facts));
  assert.is(p.length, 1, JSON.stringify(p, null, 1));
  return p[0] as Finding;
};
const with_ = (change: (f: Facts) => void): Facts => {
  const f = healthy();
  change(f);
  return f;
};

test('a healthy host: every finding OK, none with a hint', () => {
  const findings = diagnose(healthy());
  assert.equal(problems(findings), []);
  assert.ok(findings.every((f) => f.hint === undefined));
  assert.equal(
    findings.map((f) => f.subject),
    ['iproute2', 'flock', 'kernel', 'libvirt access', 'hook', 'node', 'hook bundle', 'network tut', 'network tut', 'network tut', 'definitions', 'state', 'hook files'],
  );
  assert.equal(summary(findings), { fail: 0, warn: 0 });
  assert.ok(findings.some((f) => f.subject === 'state' && f.message === '/run/vxvirt: owned by root, accessible only by root'));
});

test('iproute2 versions: both spellings, and the 4.14 minimum', () => {
  assert.equal(iprouteVersion('ip utility, iproute2-6.1.0, libbpf 1.1.2'), { release: [6, 1] });
  assert.equal(iprouteVersion('ip utility, iproute2-ss171112'), { snapshot: 171112 });
  assert.equal(iprouteVersion('ip utility, iproute2-v5.7.0-77-gb687d1067169'), { release: [5, 7] });
  assert.is(iprouteVersion('BusyBox v1.36.1 multi-call binary'), undefined);
  const verdict = (version: string, json = true) => diagnose(with_((f) => (f.iproute = { version, json })))[0]?.level;
  const cases: Array<[string, boolean, string]> = [
    ['ip utility, iproute2-ss171112', true, 'OK'],
    ['ip utility, iproute2-ss170905', true, 'FAIL'],
    ['ip utility, iproute2-4.14.1', true, 'OK'],
    ['ip utility, iproute2-4.13.0', true, 'FAIL'],
    ['ip utility, iproute2-10.0.0', true, 'OK'],
    ['ip utility, iproute2-6.1.0', false, 'FAIL'],
    ['something else', true, 'OK'],
  ];
  for (const [version, json, level] of cases) assert.is(verdict(version, json), level, version);
  const missing = only(with_((f) => (f.iproute = { error: 'ip not found on PATH' })));
  assert.equal([missing.level, missing.subject], ['FAIL', 'iproute2']);
  assert.match(missing.hint ?? '', /apt-get install iproute2.*dnf install iproute/);
});

test('flock, the kernel and node: each failure with its remedy', () => {
  const cases: Array<[(f: Facts) => void, string, string, RegExp, RegExp]> = [
    [(f) => (f.flock = { error: "flock(1) not found on libvirt's hook PATH" }), 'FAIL', 'flock', /not found/, /util-linux/],
    [(f) => (f.flock = { version: 'flock from util-linux 2.23.2', conflictExitCode: false }), 'FAIL', 'flock', /--conflict-exit-code/, /upgrade util-linux/],
    [(f) => (f.vxlan = { error: 'Error: Unknown device type.' }), 'FAIL', 'kernel', /cannot create a VXLAN device/, /modprobe vxlan/],
    [(f) => (f.vxlan = { error: 'unshare: unshare failed: Operation not permitted' }), 'WARN', 'kernel', /could not try/, /as root/],
    [(f) => (f.hook.node = { error: "node not found on libvirt's hook PATH" }), 'FAIL', 'node', /not found/, /ln -s "\$\(command -v node\)" \/usr\/local\/bin\/node/],
    [(f) => (f.hook.node = { path: '/usr/bin/node', version: 'v18.18.2' }), 'FAIL', 'node', /v18\.18\.2; the hook needs Node\.js 18\.19/, /Node\.js 18\.19/],
    [(f) => (f.hook.node = { path: '/usr/bin/node', version: 'v16.20.2' }), 'FAIL', 'node', /v16\.20\.2; the hook needs Node\.js 18\.19/, /Node\.js 18\.19/],
    [(f) => (f.hook.bundle.exists = false), 'FAIL', 'hook bundle', /dist\/hook\.js is missing/, /cd \/opt\/vxvirt && npm ci && npm run build/],
  ];
  for (const [change, level, subject, message, hint] of cases) {
    const x = only(with_(change));
    assert.equal([x.level, x.subject], [level, subject], x.message);
    assert.match(x.message, message);
    assert.match(x.hint ?? '', hint);
  }
});

test("node: Debian 12's and Ubuntu 24.04's own Node.js 18 (18.19, 18.20) and anything newer pass", () => {
  for (const version of ['v18.19.0', 'v18.20.4', 'v20.19.0', 'v22.1.0', 'v100.0.0']) {
    const x = diagnose(with_((f) => (f.hook.node = { path: '/usr/bin/node', version }))).find((y) => y.subject === 'node');
    assert.equal([x?.level, x?.message], ['OK', `/usr/bin/node ${version} (on libvirt's hook PATH)`], version);
  }
});

test('libvirt access: which backend and why; virsh missing; a bad or unmet VXVIRT_LIBVIRT', () => {
  const access = (a: Access) => ({ ...a, description: describeAccess(a) });
  const line = (f: Facts) => diagnose(f).find((x) => x.subject === 'libvirt access');
  assert.equal(line(healthy()), { level: 'OK', subject: 'libvirt access', message: 'bindings @unraid/libvirt for domains; virsh for libvirt networks and hot-plug' });
  const noBindings = "Cannot find package '@unraid/libvirt' imported from /opt/vxvirt/dist/cli.js";
  assert.equal(
    line(with_((f) => (f.libvirt.access = access({ setting: 'auto', backend: 'virsh', bindingsError: noBindings })))),
    { level: 'OK', subject: 'libvirt access', message: `virsh (the bindings @unraid/libvirt did not load: ${noBindings})` },
  );
  assert.is(line(with_((f) => (f.libvirt.access = access({ setting: 'virsh', backend: 'virsh' }))))?.message, 'virsh (VXVIRT_LIBVIRT=virsh)');
  assert.is(
    line(with_((f) => (f.libvirt.access = access({ setting: 'bindings', backend: 'bindings' }))))?.message,
    'bindings @unraid/libvirt for domains (VXVIRT_LIBVIRT=bindings); virsh for libvirt networks and hot-plug',
  );
  const forced = only(with_((f) => (f.libvirt.access = { error: `VXVIRT_LIBVIRT=bindings: the libvirt bindings @unraid/libvirt did not load: ${noBindings}: …` })));
  assert.equal([forced.level, forced.subject], ['FAIL', 'libvirt access']);
  assert.match(forced.hint!, /install libvirt-dev, python3, g\+\+ and make, then `npm rebuild @unraid\/libvirt`.*unset VXVIRT_LIBVIRT/);
  const bad = only(with_((f) => (f.libvirt.access = { error: 'VXVIRT_LIBVIRT="kvm": must be auto, bindings or virsh' })));
  assert.equal([bad.level, bad.hint], ['FAIL', 'set VXVIRT_LIBVIRT to auto, bindings or virsh, or unset it']);
  const noVirsh = only(with_((f) => (f.libvirt.virsh = { error: 'virsh not found on PATH (/usr/bin)' })));
  assert.equal(noVirsh, {
    level: 'FAIL',
    subject: 'virsh',
    message: 'virsh not found on PATH (/usr/bin): vxvirt needs it for libvirt networks and hot-plug',
    hint: 'install libvirt-clients (RHEL/Rocky/Alma: libvirt-client)',
  });
  const neither = problems(
    diagnose(
      with_((f) => {
        f.libvirt.access = access({ setting: 'auto', backend: 'virsh', bindingsError: noBindings });
        f.libvirt.virsh = { error: 'virsh not found on PATH (/usr/bin)' };
      }),
    ),
  );
  assert.equal(neither.map((x) => x.message), ['virsh not found on PATH (/usr/bin): vxvirt needs it for everything vxvirt asks libvirt (no bindings are in use)']);
});

test('the hook: not installed, beside another hook, stale, copied, not executable, twice', () => {
  const foreign = { kind: 'other' as const, what: 'a file' };
  const older = { kind: 'vxvirt' as const, link: '/srv/old/hooks/qemu', current: false };
  const cases: Array<[Partial<HooksDir>, boolean, string, RegExp, RegExp?]> = [
    [{ main: { kind: 'absent' } }, true, 'FAIL', /not installed in \/etc\/libvirt\/hooks: guests on vxvirt networks get no bridge/, /^vxvirt install-hook, then restart/],
    [{ main: foreign }, true, 'FAIL', /not installed .*\(\/etc\/libvirt\/hooks\/qemu is another hook: a file; vxvirt's goes to .*qemu\.d\/vxvirt\)/, /install-hook/],
    [{ main: older }, true, 'WARN', /runs the vxvirt at \/srv\/old\/hooks\/qemu, not this one \(\/opt\/vxvirt\)/, /install-hook/],
    [{ main: { kind: 'vxvirt', current: false } }, true, 'FAIL', /is a copy of vxvirt's hook: from there it cannot find dist\/hook\.js/, /replaces the copy by a link/],
    [{}, false, 'FAIL', /is not executable: libvirt skips it/, /chmod 755 \/opt\/vxvirt\/hooks\/qemu/],
  ];
  for (const [state, executable, level, message, hint] of cases) {
    const x = only(
      with_((f) => {
        f.hook.state = hooksDir(state);
        f.hook.executable = executable;
      }),
    );
    assert.equal([x.level, x.subject], [level, 'hook'], x.message);
    assert.match(x.message, message);
    if (hint) assert.match(x.hint ?? '', hint);
  }
  const dropIn = diagnose(with_((f) => (f.hook.state = hooksDir({ main: foreign, dropInDir: 'directory', dropIn: { kind: 'vxvirt', link: HOOK, current: true } }))));
  assert.equal(problems(dropIn), []);
  assert.ok(dropIn.some((x) => x.message === `/etc/libvirt/hooks/qemu.d/vxvirt -> ${HOOK} (libvirt >= 6.5 runs it after /etc/libvirt/hooks/qemu)`));
  const twice = only(with_((f) => (f.hook.state = hooksDir({ dropInDir: 'directory', dropIn: older }))));
  assert.equal(twice.level, 'WARN');
  assert.match(twice.message, /installed twice \(.*qemu and .*qemu\.d\/vxvirt\): libvirt runs it twice/);
});

test('a network: underlay, local address, foreign devices', () => {
  const cases: Array<[Partial<NetworkFacts>, string, RegExp, RegExp]> = [
    [{ underlay: undefined }, 'FAIL', /underlay device ens47f1 does not exist: guests on tut cannot start/, /ip link/],
    [{ underlay: { ...goodUnderlay, up: false } }, 'FAIL', /underlay device ens47f1 is down/, /ip link set ens47f1 up/],
    [{ underlay: { ...goodUnderlay, lowerUp: false } }, 'WARN', /up but has no carrier/, /cable/],
    [{ local: [] }, 'FAIL', /local address 192\.168\.8\.100 is not assigned on this host/, /ip addr add 192\.168\.8\.100\/PREFIX dev ens47f1/],
    [{ local: [{ dev: 'ens47f1', tentative: false, dadfailed: true }] }, 'FAIL', /failed duplicate address detection/, /another host/],
    [{ local: [{ dev: 'ens47f1', tentative: true, dadfailed: false }] }, 'WARN', /still tentative/, /again/],
    [{ foreignDevices: ['vxbr42'] }, 'FAIL', /device vxbr42 exists but was not created by vxvirt/, /ip link del vxbr42/],
  ];
  for (const [over, level, message, hint] of cases) {
    const x = only(with_((f) => (f.networks = [net(over)])));
    assert.equal([x.level, x.subject], [level, 'network tut'], x.message);
    assert.match(x.message, message);
    assert.match(x.hint ?? '', hint);
  }
  const elsewhere = diagnose(with_((f) => (f.networks = [net({ local: [{ dev: 'lo', tentative: false, dadfailed: false }] })])));
  assert.ok(elsewhere.some((x) => x.level === 'OK' && x.message === 'local address 192.168.8.100 is assigned on lo'), 'a routed underlay may source from lo');
  const noLocal = diagnose(with_((f) => (f.networks = [net({ def: def({ local: undefined }), local: undefined })])));
  assert.not.ok(noLocal.some((x) => /local address/.test(x.message)));
});

test('a multicast network: the route the VXLAN device uses decides, the table only warns', () => {
  const mc = def({ local: undefined, remotes: undefined, group: '239.1.1.1' });
  const cases: Array<[Partial<NetworkFacts>, string, RegExp, RegExp?]> = [
    [{ groupRoute: { bound: { dev: 'ens47f1' }, table: { dev: 'ens47f1' } } }, 'OK', /^multicast group 239\.1\.1\.1 is routed through ens47f1$/],
    [
      { groupRoute: { bound: { dev: 'ens47f1' }, table: { error: 'RTNETLINK answers: Network is unreachable' } } },
      'WARN',
      /no route for multicast group 239\.1\.1\.1 through ens47f1 \(RTNETLINK answers: Network is unreachable\): vxvirt's VXLAN device is bound to ens47f1 and does not need one/,
      /^ip route add 239\.1\.1\.1\/32 dev ens47f1/,
    ],
    [{ groupRoute: { bound: { dev: 'ens47f1' }, table: { dev: 'eth0' } } }, 'WARN', /the routing table sends it through eth0/, /ip route add/],
    [{ groupRoute: { bound: { error: 'RTNETLINK answers: No route to host' }, table: { dev: 'eth0' } } }, 'FAIL', /the kernel does not send to multicast group 239\.1\.1\.1 through ens47f1/, /ip rule/],
    [{ underlay: { ...goodUnderlay, multicast: false }, groupRoute: { bound: { dev: 'ens47f1' }, table: { dev: 'ens47f1' } } }, 'FAIL', /multicast switched off/, /ip link set ens47f1 multicast on/],
  ];
  for (const [over, level, message, hint] of cases) {
    const findings = diagnose(with_((f) => (f.networks = [net({ def: mc, local: undefined, ...over })])));
    const x = findings.find((f) => f.subject === 'network tut' && /multicast/.test(f.message));
    assert.ok(x, JSON.stringify(findings));
    assert.equal(x?.level, level, x?.message);
    assert.match(x?.message ?? '', message);
    if (hint) assert.match(x?.hint ?? '', hint);
  }
  const v6 = def({ local: undefined, remotes: undefined, group: 'ff05::42' });
  const x = diagnose(with_((f) => (f.networks = [net({ def: v6, local: undefined, groupRoute: { bound: { dev: 'ens47f1' }, table: { error: 'unreachable' } } })]))).find((f) => f.level === 'WARN');
  assert.match(x?.hint ?? '', /^ip -6 route add ff05::42\/128 dev ens47f1/);
});

test('multicast groups: OK under 80 % of igmp_max_memberships, WARN from 80 %, FAIL past it; counted per VXLAN port, a group once per underlay', () => {
  const mcNet = (name: string, vni: number, group: string, extra: Partial<DefinitionInput> = {}): NetworkFacts =>
    net({ def: validateDefinition({ name, vni, dev: 'ens47f1', group, ...extra }), local: undefined, groupRoute: { bound: { dev: 'ens47f1' }, table: { dev: 'ens47f1' } } });
  const groups = (n: number, port?: number): NetworkFacts[] =>
    Array.from({ length: n }, (_, i) => mcNet(`mc${i}${port ?? ''}`, 100 + i + (port ?? 0), `239.1.1.${i + 1}`, port ? { dstport: port } : {}));
  const finding = (networks: NetworkFacts[], value: number): Finding[] =>
    diagnose(with_((f) => ((f.networks = networks), (f.igmpMaxMemberships = { value })))).filter((x) => x.subject === 'multicast groups');

  const [ok] = finding(groups(15), 20);
  assert.is(ok?.level, 'OK');
  assert.is(ok?.message, "the networks' IPv4 multicast groups need 15 memberships of the VXLAN socket of UDP port 4789 on ens47f1, within net.ipv4.igmp_max_memberships = 20");
  assert.is(ok?.hint, undefined);

  const [warn] = finding(groups(16), 20);
  assert.is(warn?.level, 'WARN');
  assert.match(warn?.message ?? '', /need 16 memberships .*, close to net\.ipv4\.igmp_max_memberships = 20: a network with a new group past 20 cannot start$/);
  assert.match(warn?.hint ?? '', /^raise net\.ipv4\.igmp_max_memberships \(sysctl -w net\.ipv4\.igmp_max_memberships=40; .*\/etc\/sysctl\.d\/90-vxvirt\.conf\), or let several networks share one group \(--group may be the same/);
  assert.is(finding(groups(20), 20)[0]?.level, 'WARN', 'at the limit: all start, the next cannot');

  const [fail] = finding(groups(21), 20);
  assert.is(fail?.level, 'FAIL');
  assert.match(fail?.message ?? '', /need 21 memberships .*, more than net\.ipv4\.igmp_max_memberships = 20 allows: with all of them in use, guests of the networks past 20 groups cannot start/);
  assert.match(fail?.hint ?? '', /sysctl -w net\.ipv4\.igmp_max_memberships=40;/);
  assert.match(finding(groups(50), 20)[0]?.hint ?? '', /igmp_max_memberships=64;/, 'the value suggested leaves room');
  assert.is(summary(diagnose(with_((f) => ((f.networks = groups(21)), (f.igmpMaxMemberships = { value: 20 }))))).fail, 1);

  // Sharing a group: 30 VNIs on 3 groups are 3 memberships.
  const shared = Array.from({ length: 30 }, (_, i) => mcNet(`s${i}`, 300 + i, `239.2.2.${i % 3}`));
  assert.match(finding(shared, 20)[0]?.message ?? '', /need 3 memberships/);
  // The same group on two underlays is two memberships; each port is a socket of its own; IPv6 groups are not counted.
  const split = [mcNet('a', 1, '239.3.3.3'), mcNet('b', 2, '239.3.3.3', { dev: 'ens47f2' }), ...groups(2, 8472), mcNet('v6', 9, 'ff05::9')];
  const byPort = finding(split, 2);
  assert.equal(byPort.map((x) => x.level), ['WARN', 'WARN']);
  assert.match(byPort[0]?.message ?? '', /need 2 memberships of the VXLAN socket of UDP port 4789 \(ens47f1: 1, ens47f2: 1\)/);
  assert.match(byPort[1]?.message ?? '', /need 2 memberships of the VXLAN socket of UDP port 8472 on ens47f1/);

  // No IPv4 group, or the limit not gathered: no finding; unreadable: a warning.
  assert.equal(finding([net()], 20), []);
  assert.equal(diagnose(with_((f) => (f.networks = groups(3)))).filter((x) => x.subject === 'multicast groups'), []);
  const unread = diagnose(with_((f) => ((f.networks = groups(3)), (f.igmpMaxMemberships = { error: '/proc/sys/net/ipv4/igmp_max_memberships cannot be read' })))).find((x) => x.subject === 'multicast groups');
  assert.is(unread?.level, 'WARN');
});

test('MTU: what guests get, and when that deserves a warning', () => {
  const mtu = (underlayMtu: number, extra: Partial<DefinitionInput> = {}): Finding | undefined =>
    diagnose(with_((f) => (f.networks = [net({ def: def(extra), underlay: { ...goodUnderlay, mtu: underlayMtu } })]))).find((x) => /MTU|--mtu/.test(x.message) && x.subject === 'network tut' && !/underlay device/.test(x.message));
  const cases: Array<[number, Partial<DefinitionInput>, string, RegExp]> = [
    [1550, {}, 'OK', /^guests get MTU 1500$/],
    [9000, {}, 'OK', /^guests get MTU 8950$/],
    [1500, {}, 'WARN', /^guests get MTU 1450 \(ens47f1's MTU 1500 minus 50 for VXLAN over IPv4\): a guest that does not use it/],
    [1500, { local: 'fd00::100', remotes: ['fd00::101'] }, 'WARN', /^guests get MTU 1430 \(ens47f1's MTU 1500 minus 70 for VXLAN over IPv6\)/],
    [9000, { mtu: 1450 }, 'OK', /^guests get MTU 1450$/],
    [9000, { mtu: 1400 }, 'WARN', /^guests get MTU 1400 \(--mtu\)/],
    [1300, {}, 'WARN', /^guests get MTU 1250 .*below 1280, IPv6 does not work in the guests/],
    [1500, { mtu: 1500 }, 'FAIL', /--mtu 1500 is larger than 1450 \(underlay ens47f1 MTU 1500 minus 50 for VXLAN over IPv4\): guests on tut cannot start/],
  ];
  for (const [underlayMtu, extra, level, message] of cases) {
    const x = mtu(underlayMtu, extra);
    assert.equal(x?.level, level, `${underlayMtu} ${JSON.stringify(extra)}: ${x?.message}`);
    assert.match(x?.message ?? '', message);
    if (level === 'WARN') assert.match(x?.hint ?? '', /at least 15[57]0 \(jumbo frames\) and guests can keep 1500/);
  }
  assert.is(mtu(1500, { mtu: 1500 })?.hint, "raise ens47f1's MTU to at least 1550, or lower --mtu: vxvirt define-network tut --vni 42 --dev ens47f1 … --replace --mtu 1450");
});

test('definitions that cannot be read, and no definitions at all', () => {
  const x = only(with_((f) => (f.broken = [{ name: 'bad', error: '/etc/vxvirt/networks/bad.json: not valid JSON (Unexpected token)' }])));
  assert.equal([x.level, x.subject], ['FAIL', 'network bad']);
  assert.match(x.message, /^definition cannot be read: .*bad\.json: not valid JSON/);
  const none = diagnose(with_((f) => (f.networks = [])));
  assert.ok(none.some((f) => f.level === 'OK' && f.message === 'none defined (in /etc/vxvirt/networks)'));
});

test('files: owner and write permission decide; the state directory should be 0700; sticky directories are fine', () => {
  const cases: Array<[FileFacts, string, RegExp, RegExp]> = [
    [file('/etc/vxvirt/networks', 'config', 0o777), 'FAIL', /^directory \/etc\/vxvirt\/networks is writable by everyone \(0777\), and the hook, running as root, creates devices from them$/, /^chmod go-w \/etc\/vxvirt\/networks$/],
    [file('/etc/vxvirt/networks/tut.json', 'config', 0o664, false), 'FAIL', /^file .* is writable by its group \(0664\)/, /chmod go-w/],
    [file('/etc/vxvirt/networks/tut.json', 'config', 0o644, false, 1000), 'FAIL', /owned by uid 1000, not root/, /^chown root: /],
    [file('/run/vxvirt', 'state', 0o755), 'WARN', /is 0755, not 0700: any local user can open the lock file in it and hold the host lock with flock\(1\)/, /^chmod 700 \/run\/vxvirt$/],
    [file('/run/vxvirt', 'state', 0o777), 'FAIL', /writable by everyone/, /chmod go-w/],
    [file('/home/alice', 'hook', 0o755, true, 1000), 'FAIL', /^\/home\/alice is owned by uid 1000, not root: its owner can change it, and libvirt runs them as root$/, /chown root:/],
    [file('/opt', 'hook', 0o775), 'FAIL', /writable by its group/, /chmod go-w \/opt/],
  ];
  for (const [bad, level, message, hint] of cases) {
    const x = only(with_((f) => f.files.push(bad)));
    assert.equal(x.level, level, x.message);
    assert.match(x.message, message);
    assert.match(x.hint ?? '', hint);
  }
  assert.equal(problems(diagnose(with_((f) => f.files.push(file('/var/tmp', 'hook', 0o1777))))), []);
});

test('the text form: one line per finding, a hint line under each problem', () => {
  const text = formatFindings([
    { level: 'OK', subject: 'flock', message: 'flock from util-linux 2.38.1' },
    { level: 'FAIL', subject: 'network tut', message: 'underlay device ens9 does not exist', hint: 'check the name' },
  ]);
  assert.is(text, 'OK    flock: flock from util-linux 2.38.1\nFAIL  network tut: underlay device ens9 does not exist\n      hint: check the name\n');
});

test('the network hook: installed is OK; missing is a warning with the install hint; a copy fails', () => {
  const netDir = (over: Partial<HooksDir> = {}): HooksDir => hooksDir({ kind: 'network', main: { kind: 'vxvirt', link: '/opt/vxvirt/hooks/network', current: true }, ...over });
  const withNet = (state: HooksDir, exists = true) =>
    with_((f) => {
      f.hook.network = { state, executable: true, bundle: { checkout: '/opt/vxvirt', path: '/opt/vxvirt/dist/network-hook.js', exists } };
    });
  assert.equal(problems(diagnose(withNet(netDir()))), []);
  assert.ok(diagnose(withNet(netDir())).some((f) => f.subject === 'network hook' && f.level === 'OK' && f.message === '/etc/libvirt/hooks/network -> /opt/vxvirt/hooks/network'));
  const missing = only(withNet(netDir({ main: { kind: 'absent' } })));
  assert.equal([missing.level, missing.subject], ['WARN', 'network hook']);
  assert.match(missing.message, /not installed in \/etc\/libvirt\/hooks: NICs hot-plugged with virsh onto a vxvirt network are not recorded/);
  assert.match(missing.hint ?? '', /^vxvirt install-hook, then restart libvirtd \(or virtnetworkd\)$/);
  const beside = only(withNet(netDir({ main: { kind: 'other', what: 'a file' } })));
  assert.match(beside.message, /\/etc\/libvirt\/hooks\/network is another hook: a file; vxvirt's goes to \/etc\/libvirt\/hooks\/network.d\/vxvirt/);
  const copy = only(withNet(netDir({ main: { kind: 'vxvirt', current: false } })));
  assert.equal([copy.level, copy.subject], ['FAIL', 'network hook']);
  const noBundle = only(withNet(netDir(), false));
  assert.equal([noBundle.level, noBundle.subject], ['FAIL', 'network hook bundle']);
});

test('running guests on a vxvirt bridge that are not recorded: a WARN naming each, with reconcile as the fix', () => {
  const w = only(with_((f) => (f.unrecorded = [{ network: 'tut', bridge: 'vxbr42', domain: 'plain', uuid: 'u' }])));
  assert.equal([w.level, w.subject], ['WARN', 'guests']);
  assert.match(w.message, /^plain runs on vxbr42 \(network tut\) but is not recorded as a user/);
  assert.match(w.hint ?? '', /^vxvirt reconcile records it/);
  assert.equal(problems(diagnose(with_((f) => (f.unrecorded = [])))), []);
  assert.ok(diagnose(with_((f) => (f.unrecorded = { error: 'libvirt bindings not installed' }))).some((f) => f.subject === 'guests' && f.level === 'OK' && /not checked/.test(f.message)));
});

test.run();
