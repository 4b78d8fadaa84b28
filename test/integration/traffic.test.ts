// Frames really cross the overlay: two or three "hosts" (namespaces joined by
// an underlay bridge), each with the pair the hook built, and a "guest"
// namespace per host plugged into the bridge with a veth, as libvirt plugs a tap.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { bridgeNic, domainXml, must, sh, TestHost } from '../support/netns.ts';

interface Lab {
  switchNs: string;
  hosts: TestHost[];
  guests: string[];
}
const it = suite<{ lab: Lab }>('traffic over the overlay');

function makeLab(n: number): Lab {
  const sw = new TestHost('sw');
  sw.ip('link', 'add', 'sw0', 'type', 'bridge', 'mcast_snooping', '0');
  sw.ip('link', 'set', 'sw0', 'up');
  const hosts: TestHost[] = [];
  for (let i = 0; i < n; i++) {
    const h = new TestHost(`h${i}`);
    must('ip', ['-n', h.ns, 'link', 'add', 'ens47f1', 'type', 'veth', 'peer', 'name', `p${i}`, 'netns', sw.ns]);
    h.ip('addr', 'add', `192.168.8.${100 + i}/24`, 'dev', 'ens47f1');
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

const ping = (guest: string, to: string, size = 56) => sh('ip', ['netns', 'exec', guest, 'ping', '-c', '2', '-i', '0.2', '-W', '1', '-s', String(size), '-M', 'do', to]).status === 0;

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
  assert.ok(ping(g1, '10.20.1.3', 1450 - 28), '1422-byte ping with DF fits the 1450 overlay');
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

it.run();
