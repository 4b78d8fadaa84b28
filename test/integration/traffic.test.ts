// Frames really cross the overlay: two or three "hosts" (namespaces joined by
// an underlay bridge, IPv4 or IPv6), each with the pair the hook built, and a
// "guest" namespace per host plugged into the bridge with a veth, as libvirt
// plugs a tap. The overlay MTU is the underlay's minus 50 (IPv4) or 70
// (IPv6): a full-size frame with DF crosses, one byte more is refused.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { bridgeNic, domainXml, must, sh, TestHost } from '../support/netns.ts';

interface Lab {
  switchNs: string;
  hosts: TestHost[];
  guests: string[];
}
const it = suite<{ lab: Lab }>('traffic over the overlay');

/** `n` hosts on one underlay switch: host i has 192.168.8.(100+i)/24, or fd00:8::(100+i)/64 with `ipv6`. */
function makeLab(n: number, ipv6 = false): Lab {
  const sw = new TestHost('sw');
  sw.ip('link', 'add', 'sw0', 'type', 'bridge', 'mcast_snooping', '0');
  sw.ip('link', 'set', 'sw0', 'up');
  const hosts: TestHost[] = [];
  for (let i = 0; i < n; i++) {
    const h = new TestHost(`h${i}`);
    must('ip', ['-n', h.ns, 'link', 'add', 'ens47f1', 'type', 'veth', 'peer', 'name', `p${i}`, 'netns', sw.ns]);
    if (ipv6) h.ip('addr', 'add', `fd00:8::${100 + i}/64`, 'dev', 'ens47f1', 'nodad');
    else h.ip('addr', 'add', `192.168.8.${100 + i}/24`, 'dev', 'ens47f1');
    h.ip('link', 'set', 'ens47f1', 'up');
    sw.ip('link', 'set', `p${i}`, 'master', 'sw0', 'up');
    hosts.push(h);
  }
  return { switchNs: sw.ns, hosts: [sw, ...hosts], guests: [] };
}

function plugGuest(lab: Lab, host: TestHost, vni: number, addr: string): string {
  const g = `${host.ns}-g${lab.guests.length}`;
  must('ip', ['netns', 'add', g]);
  lab.guests.push(g);
  const mtu = String(host.link(`vxbr${vni}`)?.mtu);
  must('ip', ['-n', host.ns, 'link', 'add', `vnet${lab.guests.length}`, 'mtu', mtu, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', g]);
  host.ip('link', 'set', `vnet${lab.guests.length}`, 'master', `vxbr${vni}`, 'up');
  must('ip', ['-n', g, 'link', 'set', 'eth0', 'mtu', mtu, 'up']);
  must('ip', ['-n', g, 'addr', 'add', addr, 'dev', 'eth0']);
  return g;
}

/** Ping with DF set (`-M do`): never fragmented, so a payload that does not fit is refused. */
const pingRun = (guest: string, to: string, size = 56) => sh('ip', ['netns', 'exec', guest, 'ping', '-c', '2', '-i', '0.2', '-W', '1', '-s', String(size), '-M', 'do', to]);
const ping = (guest: string, to: string, size = 56) => pingRun(guest, to, size).status === 0;

/**
 * A full-size ping (IPv4 payload = MTU - 28) answered; one byte more refused
 * by the sender with EMSGSIZE ("message too long") naming the MTU, and not answered.
 */
function assertMtu(guest: string, to: string, mtu: number): void {
  assert.ok(ping(guest, to, mtu - 28), `${mtu - 28}-byte ping with DF fits the ${mtu} overlay`);
  const over = pingRun(guest, to, mtu - 28 + 1);
  assert.is.not(over.status, 0, `${mtu - 27}-byte ping with DF must not be answered: ${over.stdout}`);
  assert.match(over.stdout + over.stderr, new RegExp(`message too long, mtu=${mtu}\\b`), `one byte more: EMSGSIZE at mtu ${mtu}`);
  assert.match(over.stdout, / 0 received/, 'no answer to the oversized ping');
}

it.after.each(({ lab }) => {
  for (const g of lab.guests) sh('ip', ['netns', 'del', g]);
  for (const h of lab.hosts) h.destroy();
});

it('point-to-point: the tutorial (VNI 42, 192.168.8.100 <-> .101, 10.20.1.2 <-> .3)', (ctx) => {
  const lab = (ctx.lab = makeLab(2));
  const [, h1, h2] = lab.hosts as [TestHost, TestHost, TestHost];
  assert.is(h1.vxvirt('define-network', '--no-libvirt', 'tut', '--vni', '42', '--dev', 'ens47f1', '--local', '192.168.8.100', '--remote', '192.168.8.101').status, 0);
  assert.is(h2.vxvirt('define-network', '--no-libvirt', 'tut', '--vni', '42', '--dev', 'ens47f1', '--local', '192.168.8.101', '--remote', '192.168.8.100').status, 0);
  for (const h of [h1, h2]) assert.is(h.hook('vm', 'prepare', 'begin', domainXml('vm', '00000000-0000-4000-8000-000000000001', bridgeNic('vxbr42'))).status, 0);
  const g1 = plugGuest(lab, h1, 42, '10.20.1.2/24');
  plugGuest(lab, h2, 42, '10.20.1.3/24');
  assert.ok(ping(g1, '10.20.1.3'), 'guest on host 1 reaches guest on host 2');
  // The overlay MTU is the underlay's minus 50: a full-size frame fits, one byte more does not.
  assertMtu(g1, '10.20.1.3', 1450);
});

it('multicast group and unicast peers: three hosts, everyone reaches everyone; VNIs are isolated', (ctx) => {
  const lab = (ctx.lab = makeLab(3));
  const hosts = lab.hosts.slice(1);
  hosts.forEach((h, i) => {
    const others = [0, 1, 2].filter((j) => j !== i).flatMap((j) => ['--remote', `192.168.8.${100 + j}`]);
    assert.is(h.vxvirt('define-network', '--no-libvirt', 'mc', '--vni', '42', '--dev', 'ens47f1', '--group', '239.1.1.1').status, 0);
    assert.is(h.vxvirt('define-network', '--no-libvirt', 'uni', '--vni', '43', '--dev', 'ens47f1', '--local', `192.168.8.${100 + i}`, ...others).status, 0);
    const xml = domainXml('vm', '00000000-0000-4000-8000-000000000002', `${bridgeNic('vxbr42')}\n${bridgeNic('vxbr43', '52:54:00:00:00:43')}`);
    assert.is(h.hook('vm', 'prepare', 'begin', xml).status, 0);
  });
  const mcGuests = hosts.map((h, i) => plugGuest(lab, h, 42, `10.20.1.${2 + i}/24`));
  // Same subnet on VNI 43: only VNI 43 guests may answer.
  const uniGuests = hosts.map((h, i) => plugGuest(lab, h, 43, `10.20.1.${12 + i}/24`));
  for (const [group, base] of [[mcGuests, 2], [uniGuests, 12]] as const) {
    group.forEach((g, i) => {
      for (let j = 0; j < 3; j++) if (j !== i) assert.ok(ping(g, `10.20.1.${base + j}`), `${g} reaches 10.20.1.${base + j}`);
    });
  }
  assert.not.ok(ping(mcGuests[0]!, '10.20.1.13'), 'VNI 42 guest cannot reach a VNI 43 guest');
  assert.not.ok(ping(uniGuests[0]!, '10.20.1.3'), 'VNI 43 guest cannot reach a VNI 42 guest');
});

it('IPv6 underlay, multicast group ff05::46: the pair joins the group on the underlay; three hosts reach each other at MTU 1430', (ctx) => {
  const lab = (ctx.lab = makeLab(3, true));
  const hosts = lab.hosts.slice(1);
  const xml = domainXml('vm', '00000000-0000-4000-8000-000000000006', bridgeNic('vxbr46'));
  for (const h of hosts) {
    const d = h.vxvirt('define-network', '--no-libvirt', 'mc6', '--vni', '46', '--dev', 'ens47f1', '--group', 'ff05::46');
    assert.is(d.status, 0, d.stderr);
    const r = h.hook('vm', 'prepare', 'begin', xml);
    assert.is(r.status, 0, `prepare through the hook: ${r.stderr}`);
    const vx = h.link('vxlan46');
    assert.is(vx?.linkinfo?.info_data?.group6, 'ff05::46', `${h.ns}: vxlan46 floods to the group`);
    assert.is(vx?.linkinfo?.info_data?.link, 'ens47f1', 'over the underlay');
    assert.is(vx?.mtu, 1430, 'vxlan46: the underlay 1500 minus 70');
    assert.is(h.link('vxbr46')?.mtu, 1430, 'vxbr46: the underlay 1500 minus 70');
    assert.match(h.ip('-6', 'maddr', 'show', 'dev', 'ens47f1'), /inet6 ff05::46\b/, `${h.ns}: the underlay joined ff05::46`);
    // The hook again (libvirt's port-created or a second prepare): converged, nothing to do.
    assert.is(h.hook('vm', 'prepare', 'begin', xml).status, 0);
    assert.equal(JSON.parse(h.vxvirt('status', '--json').stdout)[0].drift, [], 'no drift');
  }
  const guests = hosts.map((h, i) => plugGuest(lab, h, 46, `10.20.6.${2 + i}/24`));
  guests.forEach((g, i) => {
    for (let j = 0; j < 3; j++) if (j !== i) assert.ok(ping(g, `10.20.6.${2 + j}`), `${g} reaches 10.20.6.${2 + j} over the IPv6 multicast overlay`);
  });
  assertMtu(guests[0]!, '10.20.6.3', 1430);
  // The guests stop: their taps go, then libvirt runs release.
  for (const g of guests) must('ip', ['netns', 'del', g]);
  lab.guests = [];
  for (const h of hosts) {
    assert.is(h.hook('vm', 'release', 'end', xml).status, 0);
    assert.is(h.link('vxlan46'), undefined, 'released: the pair is gone');
    assert.not.match(h.ip('-6', 'maddr', 'show', 'dev', 'ens47f1'), /ff05::46/, `${h.ns}: the group is left`);
  }
});

it('IPv6 underlay, point-to-point: fd00:8::100 <-> fd00:8::101, MTU 1430', (ctx) => {
  const lab = (ctx.lab = makeLab(2, true));
  const [, h1, h2] = lab.hosts as [TestHost, TestHost, TestHost];
  const xml = domainXml('vm', '00000000-0000-4000-8000-000000000007', bridgeNic('vxbr47'));
  for (const [h, local, remote] of [[h1, 'fd00:8::100', 'fd00:8::101'], [h2, 'fd00:8::101', 'fd00:8::100']] as const) {
    const d = h.vxvirt('define-network', '--no-libvirt', 'p2p6', '--vni', '47', '--dev', 'ens47f1', '--local', local, '--remote', remote);
    assert.is(d.status, 0, d.stderr);
    const r = h.hook('vm', 'prepare', 'begin', xml);
    assert.is(r.status, 0, `prepare through the hook: ${r.stderr}`);
    const info = h.link('vxlan47')?.linkinfo?.info_data;
    assert.is(info?.local6, local);
    assert.is(info?.remote6, remote);
    assert.is(h.link('vxbr47')?.mtu, 1430);
  }
  const g1 = plugGuest(lab, h1, 47, '10.20.7.2/24');
  plugGuest(lab, h2, 47, '10.20.7.3/24');
  assert.ok(ping(g1, '10.20.7.3'), 'guest on host 1 reaches guest on host 2 over IPv6');
  assertMtu(g1, '10.20.7.3', 1430);
});

it.run();
