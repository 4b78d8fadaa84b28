// attach and detach (src/attach.ts) on a fake host (test/support/fake-kernel.ts)
// and a fake libvirt: what is defined, hot-plugged, ensured and released, and
// in which order with the host lock.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { attachDomain, detachDomain } from '../../src/attach.ts';
import { LibvirtError, UsageError } from '../../src/errors.ts';
import { generate, listInterfaces } from '../../src/generator.ts';
import type { Libvirt } from '../../src/libvirt/index.ts';
import type { Effects } from '../../src/lifecycle.ts';
import { validateDefinition } from '../../src/network-definition.ts';
import { FakeHost } from '../support/fake-kernel.ts';

const REPO = new URL('../..', import.meta.url).pathname;
const lab = validateDefinition({ name: 'lab', vni: 100, dev: 'eth0', remotes: ['10.0.0.2'] });
const fixture = (name: string): string => readFileSync(join(REPO, 'test/fixtures/domains', name), 'utf8');

// ---- attach / detach against a fake libvirt ---------------------------------------

interface Fake {
  lv: Libvirt;
  fx: Effects;
  host: FakeHost;
  log: string[];
  say: (line: string) => void;
  persistent: () => string;
}

/** A fake libvirt holding one domain; define keeps the XML, giving MACs to NICs without one (as libvirt does). */
function fakeLibvirt(xml: string, live?: string): Fake {
  let persistent = xml;
  let liveXml = live;
  const log: string[] = [];
  let macs = 0;
  const host = new FakeHost().addUnderlay('eth0');
  host.defs = [lab];
  const hostFx = host.effects();
  // The host lock taken (by lifecycle's ensure and release), in order with libvirt's calls.
  const fx: Effects = { ...hostFx, warn: (l) => void log.push(`warn ${l}`), withHostLock: (holder, fn) => (log.push(`lock ${holder}`), hostFx.withHostLock(holder, fn)) };
  const unused = async (): Promise<never> => assert.unreachable('no libvirt network call') as never;
  const lv: Libvirt = {
    listActiveDomains: unused,
    listNetworks: unused,
    defineNetwork: unused,
    undefineNetwork: unused,
    readDomainState: async (name) => ({
      name,
      uuid: '0c3f2f4e-5b1d-4d8e-9a52-6f0e2b7c1a11',
      persistentXml: persistent,
      running: liveXml !== undefined,
      ...(liveXml !== undefined ? { liveXml } : {}),
    }),
    defineDomain: async (x) => {
      log.push('define');
      persistent = x.replace(/(<interface type='bridge'>\n)(\s+)(<source)/g, (_, a: string, ind: string, b: string) => `${a}${ind}<mac address='52:54:00:ff:00:0${macs++}'/>\n${ind}${b}`);
      return persistent;
    },
    attachDeviceLive: async (_d, x) => void log.push(`attach ${x.replace(/\s+/g, ' ')}`),
    detachDeviceLive: async (_d, x) => void log.push(`detach ${x.replace(/\s+/g, ' ')}`),
    updateDeviceLive: async (_d, x) => void log.push(`update ${x.replace(/\s+/g, ' ')}`),
  };
  return {
    lv,
    fx,
    host,
    log,
    say: (l) => void log.push(`say ${l}`),
    persistent: () => persistent,
    set live(x: string | undefined) {
      liveXml = x;
    },
  } as Fake;
}

test('attach (persistent only) on a stopped domain: defined once, nothing live', async () => {
  const f = fakeLibvirt(fixture('virt-install-network.xml'));
  await attachDomain({ domain: 'web1', network: lab, add: false, live: false }, f.fx, f.lv, f.say);
  assert.equal(f.log, ['define', 'say domain web1: moved 52:54:00:6b:3c:58 to network lab (vxbr100, MTU 1450)']);
  assert.is(f.persistent(), generate(fixture('virt-install-network.xml'), { network: lab, mtu: 1450 }));
  f.log.length = 0;
  await attachDomain({ domain: 'web1', network: lab, add: false, live: true }, f.fx, f.lv, f.say);
  assert.equal(f.log, [
    'say domain web1: 52:54:00:6b:3c:58 already on network lab (vxbr100, MTU 1450)',
    'warn domain web1 is not running: --live had nothing to change',
  ]);
});

test('attach of NICs without a MAC: a second define keys their metadata by the MAC libvirt gave', async () => {
  const f = fakeLibvirt(fixture('user-and-ethernet.xml'));
  await attachDomain({ domain: 'laptop-dev', network: lab, add: false, interfaces: ['3'], live: false }, f.fx, f.lv, f.say);
  assert.equal(f.log.filter((l) => l === 'define'), ['define', 'define']);
  assert.match(f.persistent(), /<vxvirt:interface mac='52:54:00:ff:00:00' network='lab' vni='100'>/);
  assert.not.match(f.persistent(), /index='3'/);
});

test('attach --live on a running domain: pair ensured and domain recorded first, then the running NIC moved (its MTU kept) and a new one hot-plugged', async () => {
  const running = fixture('virt-install-network.xml').replace(
    `<source network='default'/>`,
    `<source network='default' portid='5e4b0f6e-0d8e-4c1a-9d3e-3c7a0f1b2c3d' bridge='virbr0'/>\n      <target dev='vnet0'/>`,
  );
  const f = fakeLibvirt(fixture('virt-install-network.xml'), running);
  await attachDomain({ domain: 'web1', network: lab, add: false, live: true }, f.fx, f.lv, f.say);
  assert.equal(f.log.slice(0, 3), [
    'define',
    'say domain web1: moved 52:54:00:6b:3c:58 to network lab (vxbr100, MTU 1450)',
    'lock prepare web1',
  ]);
  assert.is(
    f.log[3],
    "update <interface type='bridge'> <mac address='52:54:00:6b:3c:58'/> <source bridge='vxbr100'/> <model type='virtio'/> </interface>",
    'no <mtu> (the running NIC has none), no <address>',
  );
  assert.match(f.log[5]!, /^warn domain web1: NIC 52:54:00:6b:3c:58 keeps its MTU \(default\) until the domain restarts: set MTU 1450 in the guest meanwhile$/);
  assert.equal(f.host.names(), ['eth0', 'vxbr100', 'vxlan100'], 'the pair is made on the host');
  assert.equal(Object.values(f.host.users.get('lab') ?? {}).map((u) => [u.name, u.macs ?? 'unknown']), [['web1', 'unknown']], 'recorded as a user whose NICs vxvirt cannot name');

  f.log.length = 0;
  await attachDomain({ domain: 'web1', network: lab, add: true, mac: '52:54:00:aa:00:01', live: true }, f.fx, f.lv, f.say);
  assert.equal(f.log, [
    'define',
    'say domain web1: added 52:54:00:aa:00:01 on network lab (vxbr100, MTU 1450)',
    'lock prepare web1',
    "attach <interface type='bridge'> <mac address='52:54:00:aa:00:01'/> <source bridge='vxbr100'/> <model type='virtio'/> <mtu size='1450'/> </interface>",
    'say domain web1: NIC 52:54:00:aa:00:01 hot-plugged on vxbr100',
  ]);
});

test('attach without --live on a running domain says when it applies', async () => {
  const f = fakeLibvirt(fixture('virt-install-network.xml'), fixture('virt-install-network.xml'));
  await attachDomain({ domain: 'web1', network: lab, add: false, live: false }, f.fx, f.lv, f.say);
  assert.is(f.log.at(-1), 'warn domain web1 is running: the change applies when it next starts (or use --live)');
});

test('a failed hot-plug is a LibvirtError saying the persistent definition changed', async () => {
  const f = fakeLibvirt(fixture('no-interfaces-tabs.xml'), fixture('no-interfaces-tabs.xml'));
  f.lv.attachDeviceLive = async () => {
    throw new LibvirtError('hot-plugging into domain tiny: internal error: unable to execute QEMU command');
  };
  try {
    await attachDomain({ domain: 'tiny', network: lab, add: true, mac: '52:54:00:aa:00:02', live: true }, f.fx, f.lv, f.say);
    assert.unreachable();
  } catch (err) {
    assert.instance(err, LibvirtError);
    assert.match((err as Error).message, /^domain tiny: the persistent definition is changed, but the running guest is not \(hot-plugging into domain tiny: internal error/);
  }
});

test('detach --live: added NIC unplugged, converted NIC moved back, released when no vxvirt NIC is left', async () => {
  const original = fixture('virt-install-network.xml');
  const attached = generate(generate(original, { network: lab, mtu: 1450 }), { network: lab, mtu: 1450, add: true, mac: '52:54:00:aa:00:01' });
  const f = fakeLibvirt(attached, attached);
  // After the live changes the running guest has no NIC on vxbr100.
  f.lv.updateDeviceLive = async (_d, x) => {
    f.log.push(`update ${x.replace(/\s+/g, ' ')}`);
    (f as unknown as { live: string }).live = original;
  };
  await detachDomain({ domain: 'web1', live: true }, f.fx, f.lv, f.say);
  assert.is(f.persistent(), original, 'the definition is exactly the original again');
  assert.equal(f.log, [
    'define',
    'say domain web1: removed 52:54:00:aa:00:01 (network lab)',
    'say domain web1: 52:54:00:6b:3c:58 is back as it was before network lab',
    "detach <interface type='bridge'> <mac address='52:54:00:aa:00:01'/> <source bridge='vxbr100'/> <model type='virtio'/> <mtu size='1450'/> </interface>",
    'say domain web1: NIC 52:54:00:aa:00:01 unplugged from the running guest',
    "update <interface type='network'> <mac address='52:54:00:6b:3c:58'/> <source network='default'/> <model type='virtio'/> <mtu size='1450'/> </interface>",
    'say domain web1: running NIC 52:54:00:6b:3c:58 moved back',
    'warn domain web1: NIC 52:54:00:6b:3c:58 keeps MTU 1450 until the domain restarts (libvirt cannot change it live)',
    'lock release 0c3f2f4e-5b1d-4d8e-9a52-6f0e2b7c1a11',
  ]);
  assert.equal(listInterfaces(f.persistent()).map((n) => n.network), [undefined]);
  assert.equal(f.host.names(), ['eth0'], 'released: the pair is gone');
  assert.is(f.host.users.size, 0);
});

test('detach --live with the running guest still on a vxvirt network: the domain stays a user and the pair stays', async () => {
  const original = fixture('virt-install-network.xml');
  const attached = generate(original, { network: lab, mtu: 1450 });
  const f = fakeLibvirt(attached, attached);
  await attachDomain({ domain: 'web1', network: lab, add: false, live: true }, f.fx, f.lv, f.say);
  f.log.length = 0;
  // The running guest keeps its NIC on vxbr100 (the update is not seen live).
  await detachDomain({ domain: 'web1', live: true }, f.fx, f.lv, f.say);
  assert.is(f.persistent(), original);
  assert.not.ok(f.log.some((l) => l.startsWith('lock release')), 'not released');
  assert.equal(f.host.names(), ['eth0', 'vxbr100', 'vxlan100']);
  assert.equal(Object.keys(f.host.users.get('lab') ?? {}), ['0c3f2f4e-5b1d-4d8e-9a52-6f0e2b7c1a11']);
});

test('detach of a domain vxvirt never attached is a usage error, and nothing is defined', async () => {
  const f = fakeLibvirt(fixture('virt-install-network.xml'));
  try {
    await detachDomain({ domain: 'web1', live: false }, f.fx, f.lv, f.say);
    assert.unreachable();
  } catch (err) {
    assert.instance(err, UsageError);
    assert.is((err as Error).message, 'domain web1 has no NIC that vxvirt attached (nothing in its vxvirt metadata)');
  }
  assert.equal(f.log, []);
});

test('attach --live with the underlay missing: the NIC MTU comes from the definition rule, with a warning, and the failed ensure leaves no user', async () => {
  const running = fixture('virt-install-network.xml');
  const f = fakeLibvirt(running, running);
  f.host.links.delete('eth0');
  try {
    await attachDomain({ domain: 'web1', network: lab, add: false, live: true }, f.fx, f.lv, f.say);
    assert.unreachable();
  } catch (err) {
    assert.match((err as Error).message, /^network lab: underlay device eth0 does not exist/);
  }
  assert.is(f.log[0], 'warn underlay device eth0 of network lab is not on this host: using MTU 1450 (1500 minus 50 for VXLAN over IPv4)');
  assert.ok(f.log.includes('define'), 'the persistent definition was changed first');
  assert.is(f.host.users.size, 0);
  assert.equal(f.host.names(), []);
});

test.run();
