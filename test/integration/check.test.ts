// vxvirt check on a healthy host and on hosts broken one way at a time:
// real devices, addresses and routes in a private network namespace, a
// private hooks directory, the CLI run as an operator runs it.
import { chmodSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import type { Finding } from '../../src/check.ts';
import { TestHost } from '../support/netns.ts';

const it = suite<{ host: TestHost; hooks: string }>('vxvirt check');
it.before.each((ctx) => {
  ctx.host = new TestHost();
  ctx.hooks = join(ctx.host.dir, 'hooks');
});
it.after.each(({ host }) => host.destroy());

/** Two networks on an underlay with jumbo-enough frames, the group routed, the hook installed. */
function healthy(host: TestHost, hooks: string): void {
  host.addUnderlay('ens47f1', '192.168.8.100/24', 1550);
  host.ip('route', 'add', '239.1.1.1/32', 'dev', 'ens47f1');
  for (const args of [
    ['tut', '--vni', '42', '--dev', 'ens47f1', '--local', '192.168.8.100', '--remote', '192.168.8.101'],
    ['mc', '--vni', '43', '--dev', 'ens47f1', '--group', '239.1.1.1'],
  ]) {
    const r = host.vxvirt('define-network', '--no-libvirt', ...args);
    assert.is(r.status, 0, r.stderr);
  }
  assert.is(host.vxvirt('install-hook', '--hooks-dir', hooks).status, 0);
}

function check(host: TestHost, hooks: string): { status: number; stderr: string; findings: Finding[] } {
  const r = host.vxvirt('check', '--json', '--hooks-dir', hooks);
  return { status: r.status, stderr: r.stderr, findings: JSON.parse(r.stdout) as Finding[] };
}
const problems = (findings: Finding[]) => findings.filter((f) => f.level !== 'OK').map((f) => `${f.level} ${f.subject}: ${f.message}`);

it('a healthy host: everything OK, exit status 0, the same in text', ({ host, hooks }) => {
  healthy(host, hooks);
  const { status, findings } = check(host, hooks);
  assert.equal(problems(findings), []);
  assert.is(status, 0);
  const subjects = new Set(findings.map((f) => f.subject));
  for (const s of ['iproute2', 'flock', 'kernel', 'libvirt access', 'hook', 'node', 'hook bundle', 'network hook', 'network tut', 'network mc', 'definitions', 'state', 'hook files']) {
    assert.ok(subjects.has(s), `a finding about ${s}`);
  }
  assert.ok(findings.some((f) => f.message === 'multicast group 239.1.1.1 is routed through ens47f1'));
  assert.ok(findings.some((f) => f.subject === 'network tut' && f.message === 'guests get MTU 1500'));
  assert.ok(findings.some((f) => f.message === 'local address 192.168.8.100 is assigned on ens47f1'));
  const text = host.vxvirt('check', '--hooks-dir', hooks);
  assert.is(text.status, 0, text.stderr);
  const lines = text.stdout.trimEnd().split('\n');
  assert.is(lines.at(-1), 'no failures, 0 warnings');
  for (const line of lines.slice(0, -2)) assert.match(line, /^OK {4}[a-z0-9 ]+: \S/);
});

it('underlay missing, underlay down, MTU 1500: each named, with its hint; status 10 and one stderr line', ({ host, hooks }) => {
  healthy(host, hooks);
  assert.is(host.vxvirt('define-network', '--no-libvirt', 'later', '--vni', '44', '--dev', 'ens9', '--remote', '192.168.8.101').status, 0);
  let r = check(host, hooks);
  assert.equal(problems(r.findings), ['FAIL network later: underlay device ens9 does not exist: guests on later cannot start']);
  assert.is(r.status, 10);
  assert.is(r.stderr, 'vxvirt: check found 1 failure: see the FAIL entries above\n');

  host.ip('link', 'set', 'ens47f1', 'down');
  r = check(host, hooks);
  assert.ok(problems(r.findings).includes('FAIL network tut: underlay device ens47f1 is down'));
  assert.ok(problems(r.findings).includes('FAIL network mc: underlay device ens47f1 is down'));
  assert.is(r.findings.find((f) => /ens47f1 is down/.test(f.message))?.hint, "ip link set ens47f1 up (and make it persistent in the host's network configuration)");

  host.ip('link', 'set', 'ens47f1', 'up', 'mtu', '1500');
  r = check(host, hooks);
  const mtu = r.findings.find((f) => f.subject === 'network tut' && /MTU 1450/.test(f.message));
  assert.is(mtu?.level, 'WARN');
  assert.match(mtu?.hint ?? '', /at least 1550 \(jumbo frames\)/);
});

it('a --local address this host does not have', ({ host, hooks }) => {
  healthy(host, hooks);
  // Another address first: with its last IPv4 address the kernel would also drop the device's routes.
  host.ip('addr', 'add', '10.0.0.1/24', 'dev', 'ens47f1');
  host.ip('addr', 'del', '192.168.8.100/24', 'dev', 'ens47f1');
  const r = check(host, hooks);
  assert.equal(problems(r.findings), ['FAIL network tut: local address 192.168.8.100 is not assigned on this host: the kernel cannot send from it']);
  assert.is(r.status, 10);
});

it('a multicast group without a route: a warning, not a failure', ({ host, hooks }) => {
  healthy(host, hooks);
  host.ip('route', 'del', '239.1.1.1/32', 'dev', 'ens47f1');
  const r = check(host, hooks);
  assert.is(r.status, 0);
  const [p] = r.findings.filter((f) => f.level !== 'OK');
  assert.equal([p?.level, p?.subject], ['WARN', 'network mc']);
  assert.match(p?.message ?? '', /^no route for multicast group 239\.1\.1\.1 through ens47f1 \(RTNETLINK answers: Network is unreachable\): vxvirt's VXLAN device is bound to ens47f1/);
  assert.is(p?.hint, "ip route add 239.1.1.1/32 dev ens47f1, and make it persistent in the host's network configuration");
});

it("multicast groups against this namespace's igmp_max_memberships: OK, WARN from 80 %, FAIL past it, a shared group counted once", ({ host, hooks }) => {
  healthy(host, hooks); // one group, 239.1.1.1
  const limit = host.exec('sysctl', ['-q', '-w', 'net.ipv4.igmp_max_memberships=2']);
  assert.is(limit.status, 0, limit.stderr);
  const groupFinding = (): Finding | undefined => check(host, hooks).findings.find((f) => f.subject === 'multicast groups');
  assert.equal(
    [groupFinding()?.level, groupFinding()?.message],
    ['OK', "the networks' IPv4 multicast groups need 1 membership of the VXLAN socket of UDP port 4789 on ens47f1, within net.ipv4.igmp_max_memberships = 2"],
  );
  const define = (name: string, vni: string, group: string): void => {
    host.ip('route', 'replace', `${group}/32`, 'dev', 'ens47f1');
    const r = host.vxvirt('define-network', '--no-libvirt', name, '--vni', vni, '--dev', 'ens47f1', '--group', group);
    assert.is(r.status, 0, r.stderr);
  };
  define('mc2', '45', '239.1.1.2');
  let r = check(host, hooks);
  assert.equal(problems(r.findings), [
    "WARN multicast groups: the networks' IPv4 multicast groups need 2 memberships of the VXLAN socket of UDP port 4789 on ens47f1, close to net.ipv4.igmp_max_memberships = 2: a network with a new group past 2 cannot start",
  ]);
  assert.is(r.status, 0);
  define('shares', '46', '239.1.1.1');
  assert.equal(groupFinding()?.level, 'WARN', 'a shared group adds no membership');
  define('mc3', '47', '239.1.1.3');
  r = check(host, hooks);
  const fail = r.findings.find((f) => f.subject === 'multicast groups');
  assert.is(fail?.level, 'FAIL');
  assert.match(fail?.message ?? '', /need 3 memberships .*, more than net\.ipv4\.igmp_max_memberships = 2 allows/);
  assert.match(fail?.hint ?? '', /^raise net\.ipv4\.igmp_max_memberships \(sysctl -w net\.ipv4\.igmp_max_memberships=5; .*\), or let several networks share one group/);
  assert.is(r.status, 10);
});

it('a world-writable definitions directory fails; a state directory others can enter warns', ({ host, hooks }) => {
  healthy(host, hooks);
  const networks = join(host.env.VXVIRT_CONFIG_DIR, 'networks');
  chmodSync(networks, 0o777);
  chmodSync(host.env.VXVIRT_STATE_DIR, 0o755);
  const r = check(host, hooks);
  // The definitions themselves are refused too, as the hook would refuse them.
  for (const name of ['mc', 'tut']) {
    assert.ok(
      problems(r.findings).includes(`FAIL network ${name}: definition cannot be read: ${networks} is writable by its group and others (mode 0777): vxvirt runs it as root, so it must be root's and not group/other-writable (chmod go-w, chown root; VXVIRT_STRICT_MODES=no turns this check off)`),
      name,
    );
  }
  assert.equal(problems(r.findings).filter((p) => !p.startsWith('FAIL network ')), [
    `FAIL definitions: directory ${networks} is writable by everyone (0777), and the hook, running as root, creates devices from them`,
    `WARN state: ${host.env.VXVIRT_STATE_DIR} is 0755, not 0700: any local user can open the lock file in it and hold the host lock with flock(1), stalling every guest start`,
  ]);
  assert.is(r.status, 10);
});

it('the hook not installed in the hooks directory', ({ host, hooks }) => {
  healthy(host, hooks);
  const empty = join(host.dir, 'other-hooks');
  mkdirSync(empty);
  const r = check(host, empty);
  assert.equal(problems(r.findings), [
    `FAIL hook: vxvirt's hook is not installed in ${empty}: guests on vxvirt networks get no bridge`,
    `WARN network hook: vxvirt's network hook is not installed in ${empty}: NICs hot-plugged with virsh onto a vxvirt network are not recorded, and their pair may be missing`,
  ]);
  assert.is(r.findings.find((f) => f.level === 'FAIL')?.hint, `vxvirt install-hook --hooks-dir ${empty}, then restart libvirtd (or virtqemud)`);
  assert.is(r.status, 10);
});

it('a device with a network\'s bridge name that vxvirt did not create', ({ host, hooks }) => {
  healthy(host, hooks);
  host.ip('link', 'add', 'vxbr42', 'type', 'bridge');
  const r = check(host, hooks);
  assert.equal(problems(r.findings), ['FAIL network tut: device vxbr42 exists but was not created by vxvirt: guests on tut cannot start']);
});

it.run();
