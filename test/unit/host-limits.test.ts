import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { groupJoinMessage, ipv4GroupBudgets, isGroupJoinRefusal, socketMemberships, sysctlPath } from '../../src/host-limits.ts';
import { validateDefinition } from '../../src/network-definition.ts';
import { ownerGroup, type Link } from '../../src/plan.ts';

const mc = (name: string, vni: number, group: string, more: { dev?: string; dstport?: number } = {}) =>
  validateDefinition({ name, vni, dev: more.dev ?? 'ens47f1', group, ...(more.dstport ? { dstport: more.dstport } : {}) });
const ENOBUFS = (vni: number) => `RTNETLINK answers: No buffer space available (at 'ip link set dev vxlan${vni} up')`;

/** A VXLAN device as iproute.ts reads it back. */
function vxlan(vni: number, group: string, more: { dev?: string; port?: number; up?: boolean; ours?: boolean } = {}): Link {
  return {
    name: `vxlan${vni}`,
    kind: 'vxlan',
    group: more.ours === false ? 0 : ownerGroup(vni),
    mtu: 1450,
    up: more.up ?? true,
    vxlan: { id: vni, port: more.port ?? 4789, dev: more.dev ?? 'ens47f1', group, ttl: 0, learning: true },
  };
}

test('a refused join is ENOBUFS or ENOMEM in bringing up the network\'s own multicast VXLAN device', () => {
  const def = mc('mc3', 103, '239.1.1.3');
  assert.ok(isGroupJoinRefusal(def, ENOBUFS(103)));
  assert.ok(isGroupJoinRefusal(def, "RTNETLINK answers: Cannot allocate memory (at 'ip link set dev vxlan103 up')"));
  assert.not.ok(isGroupJoinRefusal(def, ENOBUFS(1031)), 'another device');
  assert.not.ok(isGroupJoinRefusal(def, ENOBUFS(104)), 'another VNI');
  assert.not.ok(isGroupJoinRefusal(def, "RTNETLINK answers: File exists (at 'ip link set dev vxlan103 up')"), 'another error');
  assert.not.ok(isGroupJoinRefusal(def, "RTNETLINK answers: No buffer space available (at 'ip link add vxlan103 group 1979711591 mtu 1450 type vxlan id 103')"), 'not the join');
  const unicast = validateDefinition({ name: 'u', vni: 103, dev: 'ens47f1', remotes: ['10.0.0.2'] });
  assert.not.ok(isGroupJoinRefusal(unicast, ENOBUFS(103)), 'no group, no join');
});

test('the memberships of the socket: a group once per underlay, only up devices of the same port and family', () => {
  const def = mc('mc9', 109, '239.1.1.9');
  const links: Link[] = [
    vxlan(101, '239.1.1.1'),
    vxlan(102, '239.1.1.1'), // shares 101's group on the same device: joined once
    vxlan(103, '239.1.1.1', { dev: 'ens47f2' }), // the same group on another device: another membership
    vxlan(104, '239.1.1.4', { up: false }), // down: joins nothing
    vxlan(105, '239.1.1.5', { port: 8472 }), // another port: another socket
    vxlan(106, 'ff05::6'), // another family: another socket
    vxlan(107, '239.1.1.7', { ours: false }), // not vxvirt's, same socket
    vxlan(108, '239.1.1.1', { ours: false }), // not vxvirt's, a group vxvirt's devices hold anyway
    { name: 'vxbr101', kind: 'bridge', group: ownerGroup(101), mtu: 1450, up: true },
    { name: 'vxlan110', kind: 'vxlan', group: ownerGroup(110), mtu: 1450, up: true, vxlan: { id: 110, port: 4789, remote: '10.0.0.2', ttl: 0, learning: true } },
  ];
  const m = socketMemberships(def, links);
  assert.equal(m.vxvirt, [
    { group: '239.1.1.1', dev: 'ens47f1', devices: ['vxlan101', 'vxlan102'] },
    { group: '239.1.1.1', dev: 'ens47f2', devices: ['vxlan103'] },
  ]);
  assert.equal(m.other, [{ group: '239.1.1.7', dev: 'ens47f1', devices: ['vxlan107'] }]);
  const v6 = socketMemberships(mc('v6', 111, 'ff05::11'), links);
  assert.equal(v6.vxvirt.map((x) => x.group), ['ff05::6']);
});

test('IPv4: the message names the limit, its value, the groups joined and both ways out', () => {
  const def = mc('mc21', 121, '239.1.1.21');
  const joined = Array.from({ length: 20 }, (_, i) => ({ group: `239.1.1.${i + 1}`, dev: 'ens47f1', devices: [`vxlan${101 + i}`] }));
  assert.is(
    groupJoinMessage(def, ENOBUFS(121), { limit: 20, memberships: { vxvirt: joined, other: [] } }),
    "the kernel refused to join multicast group 239.1.1.21 on ens47f1 (RTNETLINK answers: No buffer space available (at 'ip link set dev vxlan121 up')): " +
      "a host joins at most net.ipv4.igmp_max_memberships = 20 IPv4 groups per VXLAN port (a group counts once per underlay device) and vxvirt's VXLAN devices on UDP port 4789 have joined 20 groups; " +
      'raise net.ipv4.igmp_max_memberships (sysctl -w net.ipv4.igmp_max_memberships=40; to keep it after a reboot, put net.ipv4.igmp_max_memberships = 40 in /etc/sysctl.d/90-vxvirt.conf), ' +
      'or let several networks share one group (--group may be the same for several VNIs; each VNI still gets only its own traffic)',
  );
  const others = groupJoinMessage(def, ENOBUFS(121), {
    limit: undefined,
    memberships: { vxvirt: joined.slice(0, 1), other: [{ group: '239.9.9.9', dev: 'ens47f1', devices: ['vx0'] }] },
  });
  assert.ok(others.includes('net.ipv4.igmp_max_memberships (could not be read)'), others);
  assert.ok(others.includes('have joined 1 group and other VXLAN devices 1 more;'), others);
  assert.ok(others.includes('sysctl -w net.ipv4.igmp_max_memberships=40;'), others);
  assert.not.ok(others.includes('\n'));
  const unread = groupJoinMessage(def, ENOBUFS(121), { limit: 20, memberships: undefined });
  assert.ok(unread.includes('net.ipv4.igmp_max_memberships = 20 IPv4 groups') && unread.includes('the groups VXLAN devices on UDP port 4789 have joined could not be read;'), unread);
});

test('IPv6: the message names net.core.optmem_max and never suggests lowering it', () => {
  const def = mc('v6', 106, 'ff05::6');
  const msg = groupJoinMessage(def, "RTNETLINK answers: Cannot allocate memory (at 'ip link set dev vxlan106 up')", { limit: 0, memberships: { vxvirt: [], other: [] } });
  assert.ok(msg.includes('IPv6 groups of a VXLAN port take socket option memory, at most net.core.optmem_max = 0 bytes'), msg);
  assert.ok(msg.includes('have joined 0 groups;'), msg);
  assert.ok(msg.includes('sysctl -w net.core.optmem_max=131072;'), msg);
  assert.ok(groupJoinMessage(def, '', { limit: 131072, memberships: { vxvirt: [], other: [] } }).includes('sysctl -w net.core.optmem_max=262144;'));
});

test('check budgets: distinct IPv4 (group, underlay) pairs per port', () => {
  const defs = [
    mc('a', 1, '239.1.1.1'),
    mc('b', 2, '239.1.1.1'),
    mc('c', 3, '239.1.1.1', { dev: 'ens47f2' }),
    mc('d', 4, '239.1.1.4', { dstport: 8472 }),
    mc('e', 5, 'ff05::5'),
    validateDefinition({ name: 'u', vni: 6, dev: 'ens47f1', remotes: ['10.0.0.2'] }),
  ];
  assert.equal(ipv4GroupBudgets(defs), [
    {
      port: 4789,
      memberships: [
        { group: '239.1.1.1', dev: 'ens47f1', networks: ['a', 'b'] },
        { group: '239.1.1.1', dev: 'ens47f2', networks: ['c'] },
      ],
    },
    { port: 8472, memberships: [{ group: '239.1.1.4', dev: 'ens47f1', networks: ['d'] }] },
  ]);
});

test('sysctl names map to /proc/sys paths', () => {
  assert.is(sysctlPath('net.ipv4.igmp_max_memberships'), '/proc/sys/net/ipv4/igmp_max_memberships');
});

test.run();
