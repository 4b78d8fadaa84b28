// define-network, undefine-network, set-peers and redefine as transactions
// (src/network-transactions.ts) on a fake host (test/support/fake-kernel.ts:
// it refuses a definition written without the host lock) and a fake libvirt.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { DefinitionError, LibvirtError, LibvirtUnreachableError, NotFoundError } from '../../src/errors.ts';
import type { Libvirt } from '../../src/libvirt/index.ts';
import type { Effects } from '../../src/lifecycle.ts';
import { ensureForDomain } from '../../src/lifecycle.ts';
import { validateDefinition, type DefinitionInput, type NetworkDefinition } from '../../src/network-definition.ts';
import { defineNetwork, redefineNetwork, setPeers, undefineNetwork } from '../../src/network-transactions.ts';
import { FakeHost } from '../support/fake-kernel.ts';

const def = (o: Partial<DefinitionInput> = {}): NetworkDefinition => validateDefinition({ name: 'tut', vni: 42, dev: 'ens47f1', remotes: ['192.168.8.101', '192.168.8.102'], ...o });
const A = { key: 'uuid-a', name: 'a' };

/** A fake host with the underlay, and a fake libvirt whose network calls are logged beside the host lock. */
function world(libvirtFails?: Error) {
  const host = new FakeHost().addUnderlay('ens47f1');
  const log: string[] = [];
  const base = host.effects();
  const fx: Effects = {
    ...base,
    withHostLock: (holder, fn) => (log.push(`lock ${holder}`), base.withHostLock(holder, fn)),
  };
  const unused = async (): Promise<never> => assert.unreachable('no domain call') as never;
  const lv: Libvirt = {
    readDomainState: unused,
    listActiveDomains: unused,
    defineDomain: unused,
    attachDeviceLive: unused,
    detachDeviceLive: unused,
    updateDeviceLive: unused,
    listNetworks: unused,
    defineNetwork: async (d) => {
      log.push(`libvirt define ${d.name}${host.lockHeld ? ' under the lock' : ''}`);
      if (libvirtFails) throw libvirtFails;
      return { action: 'created', active: true };
    },
    undefineNetwork: async (name) => {
      log.push(`libvirt undefine ${name}${host.lockHeld ? ' under the lock' : ''}`);
      if (libvirtFails) throw libvirtFails;
      return { action: 'removed' };
    },
  };
  return { host, fx, lv, log };
}

/** A network in use by domain A: its pair exists and A is recorded. */
async function inUse(w: ReturnType<typeof world>, d: NetworkDefinition): Promise<void> {
  w.host.defs = [d];
  await ensureForDomain(A, [d], w.host.effects());
  w.host.changes.length = 0;
  w.log.length = 0;
}

async function refused(p: Promise<unknown>, type: new (...a: never[]) => Error, message: RegExp): Promise<void> {
  try {
    await p;
    assert.unreachable('it was not refused');
  } catch (err) {
    assert.instance(err, type);
    assert.match((err as Error).message, message);
  }
}

test('define: libvirt first and outside the lock, then the definition written under it; the MTU from the underlay', async () => {
  const w = world();
  const d = { ...def(), libvirt: true };
  assert.equal(await defineNetwork(d, { replace: false, libvirt: true }, w.fx, w.lv), { mtu: 1450, libvirt: 'created' });
  assert.equal(w.log, ['libvirt define tut', 'lock define-network tut']);
  assert.equal(w.host.defs, [d]);
  assert.equal(w.host.warnings, []);
});

test('define without the underlay: a warning, no MTU to tell, and still defined; --no-libvirt asks libvirt nothing', async () => {
  const w = world();
  w.host.links.clear();
  assert.equal(await defineNetwork(def(), { replace: false, libvirt: false }, w.fx, w.lv), {});
  assert.equal(w.host.warnings, ['underlay device ens47f1 does not exist on this host yet; VMs on tut cannot start until it does']);
  assert.equal(w.log, ['lock define-network tut']);
  assert.equal(w.host.definitionWrites, ['tut']);
});

test('define of a name already defined is refused without --replace, before libvirt is asked', async () => {
  const w = world();
  w.host.defs = [def()];
  await refused(defineNetwork(def({ mtu: 1400 }), { replace: false, libvirt: true }, w.fx, w.lv), DefinitionError, /^network tut is already defined: undefine it first, or use --replace$/);
  assert.equal(w.log, []);
  assert.equal(w.host.definitionWrites, []);
});

test('define --replace with a new VNI: refused while domains use the network; once unused, the old pair goes', async () => {
  const w = world();
  await inUse(w, def());
  await refused(defineNetwork(def({ vni: 43 }), { replace: true, libvirt: false }, w.fx, w.lv), DefinitionError, /^--vni 43: network tut is used by a on VNI 42; stop them/);
  assert.equal(w.host.defs, [def()]);
  w.host.users.clear();
  await defineNetwork(def({ vni: 43 }), { replace: true, libvirt: false }, w.fx, w.lv);
  assert.equal(w.host.defs, [def({ vni: 43 })]);
  assert.equal(w.host.names(), ['ens47f1'], 'vxbr42/vxlan42 removed');
});

test('define: a libvirt that refuses leaves nothing written; an unreachable one is left to reconcile', async () => {
  const w = world(new LibvirtError('libvirt network tut exists and is not vxvirt\'s'));
  await refused(defineNetwork(def(), { replace: false, libvirt: true }, w.fx, w.lv), LibvirtError, /is not vxvirt's/);
  assert.equal(w.host.definitionWrites, []);
  const u = world(new LibvirtUnreachableError('cannot connect to qemu:///system'));
  assert.equal(await defineNetwork(def(), { replace: false, libvirt: true }, u.fx, u.lv), { mtu: 1450, libvirt: 'not-created' });
  assert.equal(u.host.warnings, [
    'libvirt network tut was not created (cannot connect to qemu:///system): `vxvirt reconcile` creates it once libvirt is reachable, or run this command again with --replace',
  ]);
  assert.equal(u.host.definitionWrites, ['tut']);
});

test('undefine: refused while used; --force forgets it and leaves the pair to its users; unused, the pair goes too', async () => {
  const w = world();
  await inUse(w, def());
  await refused(undefineNetwork('tut', { force: false, libvirt: true }, w.fx, w.lv), DefinitionError, /^network tut is used by a: stop them first, or use --force$/);
  assert.equal(w.log, [], 'libvirt was not asked');
  await undefineNetwork('tut', { force: true, libvirt: true }, w.fx, w.lv);
  assert.equal(w.log, ['libvirt undefine tut', 'lock undefine-network tut']);
  assert.equal(w.host.defs, []);
  assert.equal(w.host.names(), ['ens47f1', 'vxbr42', 'vxlan42']);
  const v = world();
  await inUse(v, def());
  v.host.users.clear();
  await undefineNetwork('tut', { force: false, libvirt: false }, v.fx, v.lv);
  assert.equal(v.host.names(), ['ens47f1']);
  assert.equal(v.host.defs, []);
  await refused(undefineNetwork('tut', { force: false, libvirt: false }, v.fx, v.lv), NotFoundError, /^network tut is not defined/);
});

test('undefine with libvirt unreachable: forgotten anyway, and the warning comes after', async () => {
  const w = world(new LibvirtUnreachableError('cannot connect'));
  w.host.defs = [def()];
  await undefineNetwork('tut', { force: false, libvirt: true }, w.fx, w.lv);
  assert.equal(w.host.defs, []);
  assert.equal(w.host.warnings, ['libvirt network tut was not removed (cannot connect): `vxvirt reconcile` removes it, if vxvirt made it, once libvirt is reachable']);
});

test('set-peers on a network in use: definition written, flood entries changed in place, the change logged', async () => {
  const w = world();
  await inUse(w, def());
  const c = await setPeers('tut', ['192.168.8.101', '192.168.8.103'], w.fx);
  assert.equal(w.log, ['lock set-peers tut']);
  assert.equal(w.host.defs[0]?.remotes, ['192.168.8.101', '192.168.8.103']);
  assert.equal(w.host.fdb.get('vxlan42'), ['192.168.8.101', '192.168.8.103']);
  assert.is(c.usedBy, 'by a');
  assert.equal(c.plan.added, ['192.168.8.103']);
  assert.equal(c.plan.removed, ['192.168.8.102']);
  assert.equal(c.live?.map((s) => s.op), ['flood-add', 'flood-del']);
  const logged = w.host.changes.find((x) => x.action === 'peers-changed');
  assert.equal(logged, {
    network: 'tut',
    action: 'peers-changed',
    command: 'set-peers',
    changed: undefined,
    peers: ['192.168.8.101', '192.168.8.103'],
    group: undefined,
    added: ['192.168.8.103'],
    removed: ['192.168.8.102'],
    mtu: undefined,
    devices: ['vxbr42', 'vxlan42'],
    live: true,
  });
});

test('set-peers: the same peers write and log nothing; a multicast network has no peers', async () => {
  const w = world();
  w.host.defs = [def()];
  const c = await setPeers('tut', ['192.168.8.101', '192.168.8.102'], w.fx);
  assert.equal(c.plan.changes, []);
  assert.equal(w.host.definitionWrites, []);
  assert.equal(w.host.changes, []);
  w.host.defs = [def({ remotes: [], group: '239.1.1.1' })];
  await refused(setPeers('tut', ['192.168.8.101'], w.fx), DefinitionError, /floods to multicast group 239\.1\.1\.1, it has no peers/);
});

test('redefine: a change a live vxlan cannot take is refused while in use, a new VNI always; the libvirt choice is kept', async () => {
  const w = world();
  await inUse(w, { ...def(), libvirt: true });
  await refused(redefineNetwork(def({ dstport: 4790 }), w.fx), DefinitionError, /^network tut is in use \(by a\) and this change needs a new vxlan device: --dstport 4789 -> 4790/);
  await refused(redefineNetwork(def({ vni: 43 }), w.fx), DefinitionError, /^network tut: --vni 42 -> 43 is not a change in place/);
  assert.equal(w.host.definitionWrites, []);
  const c = await redefineNetwork(def({ mtu: 1400 }), w.fx);
  assert.equal(c.mtu, { from: 1450, to: 1400 });
  assert.equal(w.host.defs, [{ ...def({ mtu: 1400 }), libvirt: true }]);
  assert.is(w.host.links.get('vxbr42')?.mtu, 1400);
  assert.is(w.host.changes.find((x) => x.action === 'redefined')?.mtu, 1400);
});

test('redefine whose live update fails: the old definition is written back and the error says so', async () => {
  const w = world();
  await inUse(w, def());
  w.host.failOn = (s) => (s.op === 'set-mtu' && s.mtu === 1400 ? 'RTNETLINK answers: Invalid argument' : undefined);
  await refused(redefineNetwork(def({ mtu: 1400 }), w.fx), Error, /Invalid argument; the definition is left as it was$/);
  assert.equal(w.host.defs, [def()]);
  assert.equal(w.host.definitionWrites, ['tut', 'tut']);
  assert.is(w.host.links.get('vxbr42')?.mtu, 1450);
  assert.not.ok(w.host.changes.some((x) => x.action === 'redefined'));
});

test('redefine of a network not in use here touches no device', async () => {
  const w = world();
  w.host.defs = [def()];
  const c = await redefineNetwork(def({ ttl: 8 }), w.fx);
  assert.is(c.live, undefined);
  assert.is(c.usedBy, undefined);
  assert.equal(w.host.names(), ['ens47f1']);
  assert.is(w.host.defs[0]?.ttl, 8);
});

test.run();
