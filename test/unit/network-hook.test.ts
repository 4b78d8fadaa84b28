// The network hook's logic against a fake host: hookData parsing, and how
// port-created / port-deleted interplay with the qemu hook's prepare,
// release and reconnect (the orders libvirt runs them in), per NIC.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { runHook } from '../../src/hook.ts';
import { validateDefinition } from '../../src/network-definition.ts';
import { runNetworkHook } from '../../src/network-hook.ts';
import { readNetworkPort } from '../../src/network-port.ts';
import { FakeHost } from '../support/fake-kernel.ts';
import { portHookData } from '../support/netns.ts';

const net42 = validateDefinition({ name: 'net42', vni: 42, dev: 'ens47f1', remotes: ['192.168.8.101'] });
const net43 = validateDefinition({ name: 'net43', vni: 43, dev: 'ens47f1', remotes: ['192.168.8.101'] });
const broken = validateDefinition({ name: 'broken', vni: 44, dev: 'nosuchdev', remotes: ['192.168.8.101'] });
const defs = [net42, net43, broken];
const UUID = '6a1d5a4e-0b6c-4f5e-9d1a-000000000001';
const M0 = '52:54:00:00:00:10';
const M1 = '52:54:00:00:00:11';
const M2 = '52:54:00:00:00:12';

/** <hookData> as libvirt 9.0 writes it for a port of a forward-bridge network. */
const hookData = (network: string, vni: number, mac: string, owner = 'vm1', uuid = UUID) => portHookData(network, `vxbr${vni}`, owner, uuid, mac);

const nic = (kind: 'bridge' | 'network', source: string, mac?: string) =>
  `<interface type='${kind}'>${mac ? `<mac address='${mac}'/>` : ''}<source ${kind}='${source}'/></interface>`;
const domainXml = (...nics: string[]) => `<domain type='qemu'><name>vm1</name><uuid>${UUID}</uuid><devices>${nics.join('')}</devices></domain>`;

function harness() {
  const host = new FakeHost().addUnderlay('ens47f1');
  const errors: string[] = [];
  const deps = {
    ...host.effects(),
    findDefinition: (name: string) => defs.find((d) => d.name === name),
    findDefinitionByVni: (vni: number) => {
      const def = defs.find((d) => d.vni === vni);
      return def ? { def, broken: [] } : { broken: [] };
    },
  };
  const io = (input: string) => ({ readStdin: async () => input, error: (l: string) => errors.push(l) });
  return {
    host,
    errors,
    qemu: (op: 'prepare' | 'release' | 'reconnect', xml: string) => runHook(['vm1', op, op === 'release' ? 'end' : 'begin', '-'], io(xml), deps),
    net: (op: string, network: string, vni: number, mac: string) => runNetworkHook([network, op, 'begin', '-'], io(hookData(network, vni, mac)), deps),
    users: (network: string) => Object.fromEntries(Object.values(host.users.get(network) ?? {}).map((u) => [u.name, u.macs ?? 'unknown'])),
    recorded: () => host.domains.get(UUID)?.networks.map((n) => n.name).sort() ?? [],
  };
}

test('hookData: network, bridge, owner, MAC', () => {
  assert.equal(readNetworkPort(hookData('net42', 42, '52:54:00:AB:CD:EF')), {
    network: 'net42',
    bridge: 'vxbr42',
    owner: { name: 'vm1', uuid: UUID },
    key: UUID,
    mac: '52:54:00:ab:cd:ef',
  });
  // Without a <plug>, the network's bridge; without an owner UUID, the name is the key.
  const bare = `<hookData><network><name>n</name><bridge name='vxbr7'/></network><networkport><owner><name>vm</name></owner></networkport></hookData>`;
  assert.equal(readNetworkPort(bare), { network: 'n', bridge: 'vxbr7', owner: { name: 'vm' }, key: 'vm' });
  for (const bad of ['', '<domain/>', '<hookData><network><name>n</name></network></hookData>', '<hookData><network/><networkport><owner><name>v</name></owner></networkport></hookData>']) {
    assert.throws(() => readNetworkPort(bad), /^network hook data( is not well-formed| has no|: )/, JSON.stringify(bad));
  }
});

test('hot-plug with plain virsh: port-created makes the pair and records the NIC; port-deleted releases it like a stop', async () => {
  const h = harness();
  assert.is(await h.qemu('prepare', domainXml(nic('bridge', 'vxbr42', M0))), 0);
  assert.is(await h.net('port-created', 'net43', 43, M1), 0);
  assert.equal(h.host.names(), ['ens47f1', 'vxbr42', 'vxbr43', 'vxlan42', 'vxlan43']);
  assert.equal(h.users('net43'), { vm1: [M1] });
  assert.equal(h.recorded(), ['net42', 'net43']);
  assert.is(await h.net('port-deleted', 'net43', 43, M1), 0);
  assert.equal(h.host.names(), ['ens47f1', 'vxbr42', 'vxlan42']);
  assert.equal(h.users('net43'), {});
  assert.equal(h.recorded(), ['net42'], 'the network left the record: a later release does not touch it');
  assert.equal(h.users('net42'), { vm1: [M0] });
  assert.is(h.host.releasing.size, 0);
  assert.is(await h.qemu('release', domainXml(nic('bridge', 'vxbr42', M0))), 0);
  assert.equal(h.host.names(), ['ens47f1']);
  assert.is(h.host.domains.size, 0);
});

test('unplugging one of two NICs on one VNI keeps the user and the pair', async () => {
  const h = harness();
  // eth0 on vxbr42 directly, then a NIC hot-plugged on the libvirt network net42.
  await h.qemu('prepare', domainXml(nic('bridge', 'vxbr42', M0)));
  await h.net('port-created', 'net42', 42, M2);
  assert.equal(h.users('net42'), { vm1: [M0, M2] });
  await h.net('port-deleted', 'net42', 42, M2);
  assert.equal(h.users('net42'), { vm1: [M0] });
  assert.equal(h.host.names(), ['ens47f1', 'vxbr42', 'vxlan42']);
  // Unplugging it again (libvirt retried) changes nothing.
  await h.net('port-deleted', 'net42', 42, M2);
  assert.equal(h.users('net42'), { vm1: [M0] });
});

test('a normal start and stop: prepare, port-created per network NIC; port-deleted before release', async () => {
  const h = harness();
  const xml = domainXml(nic('network', 'net42', M0), nic('bridge', 'vxbr43', M1));
  await h.qemu('prepare', xml);
  const applied = h.host.applied.length;
  await h.net('port-created', 'net42', 42, M0);
  assert.is(h.host.applied.length, applied, 'port-created after prepare changes no device');
  assert.equal(h.users('net42'), { vm1: [M0] });
  assert.equal(h.users('net43'), { vm1: [M1] });
  // Stop: port-deleted for the network NIC (its last on net42), then release.
  await h.net('port-deleted', 'net42', 42, M0);
  assert.equal(h.host.names(), ['ens47f1', 'vxbr43', 'vxlan43']);
  await h.qemu('release', xml);
  assert.equal(h.host.names(), ['ens47f1']);
  assert.is(h.host.users.size, 0);
  assert.is(h.host.domains.size, 0);
});

test('a stop after a hot-unplug, and a stop with a hot-plugged NIC still in', async () => {
  const h = harness();
  const xml = domainXml(nic('bridge', 'vxbr42', M0));
  await h.qemu('prepare', xml);
  await h.net('port-created', 'net42', 42, M2);
  await h.net('port-deleted', 'net42', 42, M2);
  await h.net('port-created', 'net43', 43, M1);
  // libvirt's stop: port-deleted for the hot-plugged network NIC, then release with the live XML.
  await h.net('port-deleted', 'net43', 43, M1);
  await h.qemu('release', domainXml(nic('bridge', 'vxbr42', M0), nic('bridge', 'vxbr43', M1)));
  assert.equal(h.host.names(), ['ens47f1']);
  assert.is(h.host.users.size, 0);
  assert.is(h.host.domains.size, 0);
  // A release alone (port-deleted never came) frees the hot-plugged network too.
  await h.qemu('prepare', xml);
  await h.net('port-created', 'net43', 43, M1);
  await h.qemu('release', xml);
  assert.equal(h.host.names(), ['ens47f1']);
  assert.is(h.host.users.size, 0);
});

test('libvirtd restart: reconnect and port-created, in either order, change nothing', async () => {
  for (const order of ['reconnect first', 'port-created first']) {
    const h = harness();
    const xml = domainXml(nic('network', 'net42', M0));
    await h.qemu('prepare', xml);
    await h.net('port-created', 'net42', 42, M0);
    const before = structuredClone([...h.host.users]);
    if (order === 'reconnect first') {
      await h.qemu('reconnect', xml);
      await h.net('port-created', 'net42', 42, M0);
    } else {
      await h.net('port-created', 'net42', 42, M0);
      await h.qemu('reconnect', xml);
    }
    assert.equal([...h.host.users], before, order);
  }
});

test('a failing port-created fails with one line and leaves nothing it made', async () => {
  const h = harness();
  await h.qemu('prepare', domainXml(nic('bridge', 'vxbr42', M0)));
  assert.is(await h.net('port-created', 'broken', 44, M1), 1);
  assert.is(h.errors.length, 1);
  assert.match(h.errors[0]!, /^vxvirt: network broken: .*nosuchdev/);
  assert.equal(h.host.names(), ['ens47f1', 'vxbr42', 'vxlan42']);
  assert.equal(h.users('broken'), {});
  assert.equal(h.recorded(), ['net42']);
});

test("a port-created on a network whose NIC is already recorded keeps the domain's other NICs", async () => {
  const h = harness();
  await h.qemu('prepare', domainXml(nic('network', 'net42', M0), nic('bridge', 'vxbr42', M2)));
  assert.equal(h.users('net42'), { vm1: [M0, M2] });
  await h.net('port-deleted', 'net42', 42, M0);
  assert.equal(h.users('net42'), { vm1: [M2] }, 'the bridge NIC keeps the domain a user');
  assert.equal(h.host.names(), ['ens47f1', 'vxbr42', 'vxlan42']);
});

test('a NIC without a MAC makes the NICs unknown: an unplug never ends the user, the stop does', async () => {
  const h = harness();
  const xml = domainXml(nic('bridge', 'vxbr42'), nic('network', 'net42', M0));
  await h.qemu('prepare', xml);
  assert.equal(h.users('net42'), { vm1: 'unknown' });
  await h.net('port-deleted', 'net42', 42, M0);
  assert.equal(h.users('net42'), { vm1: 'unknown' });
  await h.qemu('release', xml);
  assert.is(h.host.users.size, 0);
});

test('networks that are not vxvirt\'s, and operations other than port-*, are not acted on', async () => {
  const h = harness();
  assert.is(await runNetworkHook(['net42', 'started', 'begin', '-'], { readStdin: async () => assert.unreachable('no stdin read') as never, error: () => {} }), 0);
  assert.is(await h.net('port-created', 'default', 0, M0), 0);
  assert.equal(h.host.names(), ['ens47f1']);
  assert.is(h.host.users.size, 0);
  assert.is(await h.net('port-deleted', 'default', 0, M0), 0);
});

test('a port-deleted killed after journaling is finished by the next hook run; the running domain keeps its other network', async () => {
  const h = harness();
  await h.qemu('prepare', domainXml(nic('bridge', 'vxbr42', M0)));
  await h.net('port-created', 'net43', 43, M1);
  // As if port-deleted had died right after journaling the release of net43.
  const fx = h.host.effects();
  await fx.withHostLock('t', async () => fx.beginPartialRelease(UUID, { name: 'vm1', networks: [{ name: 'net43', vni: 43 }] }));
  await h.qemu('prepare', domainXml(nic('bridge', 'vxbr42', M0))); // any later hook run
  assert.is(h.host.releasing.size, 0);
  assert.equal(h.users('net43'), {});
  assert.equal(h.recorded(), ['net42']);
  assert.equal(h.host.names(), ['ens47f1', 'vxbr42', 'vxlan42']);
});

test.run();
