// FRR: frr-config's options and the configuration rendered from the real
// template, and what vxvirt check makes of FRR's answers — vtysh JSON
// captured from Debian 12's FRR 8.4 (zebra + bgpd in two network namespaces,
// test/fixtures/frr/), not shapes written by hand.
import { readFileSync } from 'node:fs';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { diagnose, type Facts, type FrrFacts } from '../../src/doctor.ts';
import { DefinitionError, UsageError } from '../../src/errors.ts';
import { evpnPeers, frrConfig, readFrrTemplate, renderFrrConfig, vtyshError, zebraVnis, type FrrConfigInput } from '../../src/frr.ts';
import { validateDefinition } from '../../src/network-definition.ts';

const fixture = (name: string): string => readFileSync(new URL(`../fixtures/frr/${name}`, import.meta.url), 'utf8');
const ev = (local?: string, name = 'ev', vni = 42) => validateDefinition({ name, vni, dev: 'ens47f1', evpn: true, ...(local ? { local } : {}) });
const input = (extra: Partial<FrrConfigInput> = {}): FrrConfigInput => ({ asn: '65000', neighbors: [], routeReflectors: [], reflectorFor: [], ...extra });

function throws(fn: () => unknown, kind: typeof UsageError | typeof DefinitionError, pattern: RegExp): void {
  try {
    fn();
  } catch (err) {
    assert.instance(err, kind);
    assert.match((err as Error).message, pattern);
    assert.not.match((err as Error).message, /\n/);
    return;
  }
  assert.unreachable('accepted');
}

test('full mesh: the same neighbor list on every host, this host left out; router-id and source from the networks\' --local', () => {
  const all = ['192.168.8.100', '192.168.8.101', '192.168.8.102'];
  const config = frrConfig(input({ neighbors: all }), [ev('192.168.8.100')], [
    { dev: 'lo', address: '127.0.0.1' },
    { dev: 'ens47f1', address: '192.168.8.100' },
  ]);
  assert.equal(config, {
    asn: 65000,
    routerId: '192.168.8.100',
    updateSource: '192.168.8.100',
    neighbors: ['192.168.8.101', '192.168.8.102'],
    listenRanges: [],
    reflector: false,
    client: false,
    skipped: ['192.168.8.100'],
  });
  assert.is(
    renderFrrConfig(readFrrTemplate(), config),
    `! vxvirt frr-config: BGP EVPN for this host (AS 65000, router-id 192.168.8.100, full mesh with 192.168.8.101, 192.168.8.102)
! left out, addresses of this host: 192.168.8.100
router bgp 65000
 bgp router-id 192.168.8.100
 no bgp default ipv4-unicast
 neighbor vxvirt peer-group
 neighbor vxvirt remote-as internal
 neighbor vxvirt update-source 192.168.8.100
 neighbor vxvirt timers connect 10
 neighbor 192.168.8.101 peer-group vxvirt
 neighbor 192.168.8.102 peer-group vxvirt
 !
 address-family l2vpn evpn
  neighbor vxvirt activate
  advertise-all-vni
 exit-address-family
exit
`,
  );
});

test('route reflector: clients peer with it; it listens on a prefix and reflects', () => {
  const client = renderFrrConfig(readFrrTemplate(), frrConfig(input({ routeReflectors: ['192.168.8.1'] }), [ev('192.168.8.100')], []));
  assert.match(client, /^! vxvirt frr-config: BGP EVPN for this host \(AS 65000, router-id 192\.168\.8\.100, client of route reflector 192\.168\.8\.1\)$/m);
  assert.match(client, /^ neighbor 192\.168\.8\.1 peer-group vxvirt$/m);
  assert.not.match(client, /route-reflector-client|listen range/);
  const rr = renderFrrConfig(readFrrTemplate(), frrConfig(input({ local: '192.168.8.1', reflectorFor: ['192.168.8.0/24'] }), [], []));
  assert.match(rr, /^ bgp listen range 192\.168\.8\.0\/24 peer-group vxvirt$/m);
  assert.match(rr, /^  neighbor vxvirt route-reflector-client$/m);
  assert.match(rr, /^  advertise-all-vni$/m);
  assert.not.match(rr, /^ neighbor \d/m, 'no fixed neighbor: clients connect to it');
});

test('networks without --local: the one address of their underlay device; none or several is refused', () => {
  const own = [
    { dev: 'lo', address: '127.0.0.1' },
    { dev: 'ens47f1', address: 'fe80::1' },
    { dev: 'ens47f1', address: '192.168.8.100' },
    { dev: 'eth9', address: '10.9.9.9' },
  ];
  const c = frrConfig(input({ neighbors: ['192.168.8.100', '192.168.8.101'] }), [ev()], own);
  assert.equal([c.routerId, c.updateSource, c.neighbors, c.skipped], ['192.168.8.100', '192.168.8.100', ['192.168.8.101'], ['192.168.8.100']]);
  throws(() => frrConfig(input({ neighbors: ['192.168.8.101'] }), [ev()], [...own, { dev: 'ens47f1', address: '192.168.8.200' }]), UsageError, /^no underlay address for BGP/);
  const v6 = frrConfig(input({ neighbors: ['fd00::2'], routerId: '10.0.0.1' }), [ev()], [{ dev: 'ens47f1', address: 'fe80::1' }, { dev: 'ens47f1', address: 'fd00::1' }]);
  assert.is(v6.updateSource, 'fd00::1');
});

test('IPv6 underlay: the router-id must be given; an explicit --local wins over the networks\'', () => {
  throws(() => frrConfig(input({ neighbors: ['fd00::2'] }), [ev('fd00::1')], []), UsageError, /underlay address fd00::1 is IPv6: give --router-id/);
  const c = frrConfig(input({ neighbors: ['fd00::2'], routerId: '10.0.0.1' }), [ev('fd00::1')], []);
  assert.equal([c.routerId, c.updateSource], ['10.0.0.1', 'fd00::1']);
  assert.is(frrConfig(input({ neighbors: ['10.0.0.2'], local: '10.0.0.9' }), [ev('10.0.0.1')], []).routerId, '10.0.0.9');
});

test('bad or missing options: one line naming the option and what is allowed', () => {
  throws(() => frrConfig(input({ asn: undefined, neighbors: ['10.0.0.2'] }), [ev('10.0.0.1')], []), UsageError, /^--asn is required/);
  throws(() => frrConfig(input({ asn: '0', neighbors: ['10.0.0.2'] }), [ev('10.0.0.1')], []), DefinitionError, /^--asn "0": must be an integer from 1 to 4294967295$/);
  throws(() => frrConfig(input({ asn: 'x', neighbors: ['10.0.0.2'] }), [ev('10.0.0.1')], []), DefinitionError, /^--asn "x"/);
  throws(() => frrConfig(input({ neighbors: ['host-b'] }), [ev('10.0.0.1')], []), DefinitionError, /^--neighbor "host-b": must be an IPv4 or IPv6 address$/);
  throws(() => frrConfig(input({ reflectorFor: ['10.0.0.0/33'] }), [ev('10.0.0.1')], []), DefinitionError, /^--reflector-for "10\.0\.0\.0\/33": must be a prefix/);
  throws(() => frrConfig(input({ neighbors: ['10.0.0.2'], routerId: 'fd00::1' }), [ev('10.0.0.1')], []), DefinitionError, /^--router-id "fd00::1": must be an IPv4 address/);
  throws(() => frrConfig(input(), [ev('10.0.0.1')], []), UsageError, /^no BGP neighbors: give --neighbor/);
  throws(() => frrConfig(input({ neighbors: ['10.0.0.2'], routeReflectors: ['10.0.0.3'] }), [ev('10.0.0.1')], []), UsageError, /^--route-reflector cannot be combined with --neighbor/);
  throws(() => frrConfig(input({ neighbors: ['10.0.0.2'] }), [ev()], []), UsageError, /^no underlay address for BGP: give --local/);
  throws(() => frrConfig(input({ neighbors: ['10.0.0.2'] }), [ev('10.0.0.1'), ev('10.0.0.5', 'ev2', 43)], []), UsageError, /different --local addresses \(10\.0\.0\.1, 10\.0\.0\.5\)/);
  throws(() => frrConfig(input({ neighbors: ['10.0.0.1'] }), [ev('10.0.0.1')], []), UsageError, /every neighbor given \(10\.0\.0\.1\) is an address of this host/);
  throws(() => frrConfig(input({ neighbors: ['10.0.0.2', '10.0.0.2'] }), [ev('10.0.0.1')], []), DefinitionError, /^--neighbor "10\.0\.0\.2": is given more than once$/);
});

test('FRR 8.4 answers: sessions and VNIs as captured', () => {
  assert.equal(evpnPeers(fixture('summary-established.json')), { configured: true, peers: [{ peer: '10.77.0.2', state: 'Established' }] });
  assert.equal(evpnPeers(fixture('summary-peer-down.json')), { configured: true, peers: [{ peer: '10.77.0.2', state: 'Active' }] });
  assert.equal(evpnPeers(fixture('summary-no-bgp-instance.json')), { configured: false });
  const vnis = zebraVnis(fixture('vni-42.json'));
  assert.ok(vnis.enabled);
  if (vnis.enabled) assert.equal([...vnis.vnis.values()], [{ vni: 42, vxlanIf: 'vxlan42', remoteVteps: ['10.77.0.2'] }]);
  const none = zebraVnis(fixture('vni-none.json'));
  assert.ok(none.enabled && none.vnis.size === 0);
  assert.equal(zebraVnis(fixture('vni-evpn-not-enabled.txt')), { enabled: false });
  assert.is(vtyshError("% Can't open configuration file /etc/frr/h1/vtysh.conf due to 'No such file or directory'.\nbgpd is not running\n"), 'bgpd is not running');
});

// ---- vxvirt check's FRR findings

const baseFacts = (): Facts =>
  ({
    iproute: { version: 'ip utility, iproute2-6.1.0', json: true },
    flock: { version: 'flock from util-linux 2.38.1', conflictExitCode: true },
    vxlan: { ok: true },
    networksDir: '/etc/vxvirt/networks',
    broken: [],
    networks: [],
    hook: {
      state: { dir: '/etc/libvirt/hooks', exists: true, main: { kind: 'vxvirt', link: '/opt/vxvirt/hooks/qemu', current: true }, dropInDir: 'absent', dropIn: { kind: 'absent' } },
      checkout: '/opt/vxvirt',
      executable: true,
      node: { path: '/usr/bin/node', version: 'v20.19.0' },
      bundle: { checkout: '/opt/vxvirt', path: '/opt/vxvirt/dist/hook.js', exists: true },
    },
    files: [],
    libvirt: { access: { backend: 'virsh', setting: 'auto', description: 'virsh' }, virsh: { path: '/usr/bin/virsh' } },
  }) as Facts;

const frrFindings = (frr: FrrFacts | undefined) =>
  diagnose({ ...baseFacts(), ...(frr ? { frr } : {}) })
    .filter((f) => f.subject.startsWith('FRR') || f.subject.startsWith('network '))
    .map((f) => `${f.level} ${f.subject}: ${f.message}`);

const active = [{ name: 'ev', vni: 42, local: '10.77.0.1' }];

test('check: no evpn network, no FRR finding; session and VNI known: OK lines', () => {
  assert.equal(frrFindings(undefined), []);
  assert.equal(frrFindings({ summary: { output: fixture('summary-established.json') }, vnis: { output: fixture('vni-42.json') }, active }), [
    'OK FRR bgpd: EVPN session established with 10.77.0.2',
    'OK network ev: VNI 42 known to zebra (vxlan42, VTEP 10.77.0.1), remote VTEPs 10.77.0.2',
  ]);
});

test('check: FRR missing, not running, no session, no instance, VNI unknown, EVPN off, no local: each a FAIL saying what', () => {
  const missing = { error: 'vtysh not found on PATH (/usr/bin)', missing: true };
  assert.equal(frrFindings({ summary: missing, vnis: missing, active }), ['FAIL FRR bgpd: vtysh not found on PATH (/usr/bin): FRR is not installed']);
  // zebra down while bgpd answers: said for zebra.
  assert.equal(frrFindings({ summary: { output: fixture('summary-established.json') }, vnis: { error: 'zebra is not running' }, active }), [
    'OK FRR bgpd: EVPN session established with 10.77.0.2',
    'FAIL FRR zebra: FRR is not running or does not answer: zebra is not running',
  ]);
  const down = { error: 'Exiting: failed to connect to any daemons.' };
  assert.equal(frrFindings({ summary: down, vnis: down, active }), ['FAIL FRR bgpd: FRR is not running or does not answer: Exiting: failed to connect to any daemons.']);
  const notRunning = frrFindings({ pathspace: 'h1', summary: { error: 'Exiting: failed to connect to any daemons.' }, vnis: { error: 'Exiting: failed to connect to any daemons.' }, active: [] });
  assert.equal(notRunning, ['FAIL FRR bgpd (pathspace h1): FRR is not running (pathspace h1) or does not answer: Exiting: failed to connect to any daemons.']);
  assert.equal(frrFindings({ summary: { output: fixture('summary-peer-down.json') }, vnis: { output: fixture('vni-none.json') }, active }), [
    'FAIL FRR bgpd: no established EVPN session (10.77.0.2 Active)',
    'FAIL network ev: VNI 42 has guests here but zebra does not know it',
  ]);
  assert.equal(frrFindings({ summary: { output: fixture('summary-no-bgp-instance.json') }, vnis: { output: fixture('vni-evpn-not-enabled.txt') }, active }), [
    'FAIL FRR bgpd: bgpd has no BGP instance with the l2vpn evpn address family',
    'FAIL network ev: VNI 42 has guests here but zebra does not know it (EVPN is off in zebra: no bgpd with advertise-all-vni)',
  ]);
  assert.equal(frrFindings({ summary: { output: fixture('summary-established.json') }, vnis: { output: fixture('vni-42.json') }, active: [{ name: 'ev', vni: 42 }] }), [
    'OK FRR bgpd: EVPN session established with 10.77.0.2',
    'FAIL network ev: vxlan42 has no local address: zebra cannot announce this host as a VTEP of VNI 42',
  ]);
  for (const f of diagnose({ ...baseFacts(), frr: { summary: { output: fixture('summary-peer-down.json') }, vnis: { output: '{}' }, active } })) {
    if (f.level === 'FAIL' && (f.subject.startsWith('FRR') || f.subject.startsWith('network'))) assert.ok(f.hint, `${f.message} has a hint`);
  }
});

test.run();
