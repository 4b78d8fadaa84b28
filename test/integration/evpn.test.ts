// The evpn flooding mode against real devices in a private network
// namespace: the hook makes a vxlan with nolearning, the local address and
// the port only, a bridge port with learning off and neigh_suppress on, and
// a bridge with arp_accept; status shows a port or bridge that lost them as
// drift and reconcile repairs it; set-peers and redefine refuse what the
// mode cannot take. (FRR on top of it: test/integration/frr.test.ts.)
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { bridgeNic, domainXml, repo, TestHost, type Result } from '../support/netns.ts';

const NO_LIBVIRT = { LIBVIRT_DEFAULT_URI: 'qemu:///system?socket=/nonexistent/libvirt-sock' };
const GROUP = String(0x76000000 + 42);
const vmA = domainXml('vm-a', '00000000-0000-4000-8000-00000000000a', bridgeNic('vxbr42'));

interface Ctx {
  host: TestHost;
}

const cli = (host: TestHost, ...args: string[]): Result => host.exec(process.execPath, [join(repo, 'dist/cli.js'), ...args], '', NO_LIBVIRT);

function ok(r: Result, what: string): void {
  assert.is(r.status, 0, `${what}: exit ${r.status}, stdout: ${r.stdout} stderr: ${r.stderr}`);
}

/** The vxlan's bridge port flags as `bridge -d -j link` shows them. */
function portFlags(host: TestHost): { learning: boolean; neigh_suppress: boolean } {
  const [port] = JSON.parse(host.exec('bridge', ['-d', '-j', 'link', 'show', 'dev', 'vxlan42']).stdout) as Array<{ learning: boolean; neigh_suppress: boolean }>;
  return { learning: port!.learning, neigh_suppress: port!.neigh_suppress };
}

const arpAccept = (host: TestHost): string => host.exec('cat', ['/proc/sys/net/ipv4/conf/vxbr42/arp_accept']).stdout.trim();

interface StatusRow {
  name: string | null;
  mode?: string;
  drift: Array<{ kind: string; detail: string }>;
}
const driftOf = (host: TestHost): string[] =>
  (JSON.parse(cli(host, 'status', '--json').stdout) as StatusRow[]).find((r) => r.name === 'ev')?.drift.map((d) => `${d.kind}: ${d.detail}`) ?? [];

const it = suite<Ctx>('evpn mode: devices');

it.before.each((ctx) => {
  ctx.host = new TestHost('evpn');
  ctx.host.addUnderlay();
  ok(cli(ctx.host, 'define-network', '--no-libvirt', 'ev', '--vni', '42', '--dev', 'ens47f1', '--local', '192.168.8.100', '--evpn'), 'define ev');
});
it.after.each((ctx) => ctx.host.destroy());

it('prepare makes a nolearning vxlan with local and port only, a suppressing port, an arp_accept bridge; release removes them', ({ host }) => {
  ok(host.hook('vm-a', 'prepare', 'begin', vmA), 'prepare');
  const vx = host.link('vxlan42');
  assert.ok(vx, 'vxlan42 exists');
  const data = vx!.linkinfo!.info_data!;
  assert.is(data.id, 42);
  assert.is(data.local, '192.168.8.100');
  assert.is(data.port, 4789);
  assert.is(data.link, 'ens47f1');
  assert.is(data.learning, false);
  assert.not.ok('remote' in data, 'no remote');
  assert.not.ok('group' in data, 'no group');
  assert.is(vx!.master, 'vxbr42');
  assert.is(vx!.mtu, 1450);
  assert.is(vx!.group, GROUP);
  assert.equal(portFlags(host), { learning: false, neigh_suppress: true });
  assert.is(arpAccept(host), '1');
  assert.equal(
    host.fdb('vxlan42').filter((e) => e.mac === '00:00:00:00:00:00'),
    [],
    'no flood entry: they come from FRR',
  );
  assert.equal(driftOf(host), []);
  const listed = JSON.parse(cli(host, 'list-networks', '--json').stdout) as Array<{ name: string; mode: string; evpn: boolean; remotes: string[]; group: null }>;
  assert.equal(
    listed.map((n) => [n.name, n.mode, n.evpn, n.remotes, n.group]),
    [['ev', 'evpn', true, [], null]],
  );
  assert.match(cli(host, 'list-networks').stdout, /^ev\s+42\s+evpn\s+ens47f1\s+192\.168\.8\.100\s+BGP\s/m);
  ok(host.hook('vm-a', 'release', 'end', vmA), 'release');
  assert.is(host.link('vxlan42'), undefined);
  assert.is(host.link('vxbr42'), undefined);
});

it('a port that lost neigh_suppress or learning off, or a bridge without arp_accept, is drift that reconcile repairs', ({ host }) => {
  ok(host.hook('vm-a', 'prepare', 'begin', vmA), 'prepare');
  // A guest's tap, so the user counts as present whatever its age.
  host.ip('link', 'add', 'vnet0', 'type', 'veth', 'peer', 'name', 'vnet0p');
  host.ip('link', 'set', 'vnet0', 'master', 'vxbr42', 'up');
  const ifindex = host.link('vxlan42')!.ifindex;
  ok(host.exec('bridge', ['link', 'set', 'dev', 'vxlan42', 'learning', 'on', 'neigh_suppress', 'off']), 'port flags off');
  ok(host.exec('sh', ['-c', 'echo 0 > /proc/sys/net/ipv4/conf/vxbr42/arp_accept']), 'arp_accept 0');
  assert.equal(driftOf(host), [
    'device: vxbr42: net.ipv4.conf.vxbr42.arp_accept 0 -> 1',
    'device: vxlan42: port learning on -> off, neigh_suppress off -> on',
  ]);
  const dry = cli(host, 'reconcile', '--dry-run');
  assert.is(dry.status, 11, `dry run with changes to make: ${dry.stderr}`);
  assert.match(dry.stdout, /^repaired vxlan42 \(network ev\): port learning on -> off, neigh_suppress off -> on$/m);
  assert.equal(portFlags(host), { learning: true, neigh_suppress: false }, 'dry run changes nothing');
  const r = cli(host, 'reconcile');
  ok(r, 'reconcile');
  assert.match(r.stdout, /^repaired vxlan42 \(network ev\): port learning on -> off, neigh_suppress off -> on$/m);
  assert.match(r.stdout, /^repaired vxbr42 \(network ev\): net\.ipv4\.conf\.vxbr42\.arp_accept 0 -> 1$/m);
  assert.equal(portFlags(host), { learning: false, neigh_suppress: true });
  assert.is(arpAccept(host), '1');
  assert.is(host.link('vxlan42')!.ifindex, ifindex, 'repaired in place, not re-created');
  assert.equal(driftOf(host), []);
  // The hook repairs it too: a prepare converges on the same state.
  ok(host.exec('bridge', ['link', 'set', 'dev', 'vxlan42', 'neigh_suppress', 'off']), 'neigh_suppress off');
  ok(host.hook('vm-a', 'prepare', 'begin', vmA), 'prepare again');
  assert.equal(portFlags(host), { learning: false, neigh_suppress: true });
});

it('set-peers is refused with the reason; redefine into another mode is refused while in use; --evpn with --remote is refused', ({ host }) => {
  ok(host.hook('vm-a', 'prepare', 'begin', vmA), 'prepare');
  const peers = cli(host, 'set-peers', 'ev', '--remote', '192.168.8.101');
  assert.is(peers.status, 3, peers.stderr);
  assert.is(peers.stderr.trim().split('\n').length, 1, peers.stderr);
  assert.match(peers.stderr, /network ev is an EVPN network: its peers come from BGP/);
  const redefine = cli(host, 'redefine', 'ev', '--vni', '42', '--dev', 'ens47f1', '--local', '192.168.8.100', '--remote', '192.168.8.101');
  assert.is(redefine.status, 3, redefine.stderr);
  assert.match(redefine.stderr, /flooding mode evpn \(BGP\) -> point-to-point \(192\.168\.8\.101\) \(an EVPN vxlan has no remote or group/);
  const mtu = cli(host, 'redefine', 'ev', '--vni', '42', '--dev', 'ens47f1', '--local', '192.168.8.100', '--evpn', '--mtu', '1400');
  ok(mtu, 'redefine --mtu in place');
  assert.is(host.link('vxlan42')!.mtu, 1400);
  const both = cli(host, 'define-network', '--no-libvirt', 'ev2', '--vni', '43', '--dev', 'ens47f1', '--evpn', '--remote', '192.168.8.101');
  assert.is(both.status, 3, both.stderr);
  assert.match(both.stderr, /--remote "192\.168\.8\.101": cannot be combined with --evpn/);
  const group = cli(host, 'define-network', '--no-libvirt', 'ev2', '--vni', '43', '--dev', 'ens47f1', '--evpn', '--group', '239.1.1.1');
  assert.is(group.status, 3, group.stderr);
  assert.match(group.stderr, /--group "239\.1\.1\.1": cannot be combined with --evpn/);
});

it.run();
