import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { runHook } from '../../src/hook.ts';
import { validateDefinition } from '../../src/network-definition.ts';
import { FakeHost } from '../support/fake-kernel.ts';

const tut = validateDefinition({ name: 'tut', vni: 42, dev: 'ens47f1', remotes: ['192.168.8.101'] });
const gone = validateDefinition({ name: 'gone', vni: 44, dev: 'nosuchdev', remotes: ['192.168.8.101'] });
const xml = (bridge: string) =>
  `<domain type='qemu'><name>vm1</name><uuid>u-1</uuid><devices><interface type='bridge'><source bridge='${bridge}'/></interface></devices></domain>`;

function harness(defs = [tut, gone], broken: Array<{ name: string; error: Error }> = []) {
  const host = new FakeHost().addUnderlay('ens47f1');
  const errors: string[] = [];
  let stdinReads = 0;
  const run = (op: string, subop: string, input: string) =>
    runHook(
      ['vm1', op, subop, '-'],
      {
        readStdin: async () => {
          stdinReads++;
          return input;
        },
        error: (l) => errors.push(l),
      },
      {
        ...host.effects(),
        findDefinition: (name) => {
          const bad = broken.find((b) => b.name === name);
          if (bad) throw bad.error;
          return defs.find((d) => d.name === name);
        },
        findDefinitionByVni: (vni) => {
          const def = defs.find((d) => d.vni === vni);
          return def ? { def, broken: [] } : { broken };
        },
      },
    );
  return { host, errors, run, reads: () => stdinReads };
}

test('prepare ensures, release tears down, both exit 0', async () => {
  const h = harness();
  assert.is(await h.run('prepare', 'begin', xml('vxbr42')), 0);
  assert.ok(h.host.links.has('vxbr42'));
  assert.is(await h.run('release', 'end', xml('vxbr42')), 0);
  assert.not.ok(h.host.links.has('vxbr42'));
  assert.equal(h.errors, []);
});

test('ignored operations do not even read the XML and change nothing', async () => {
  const h = harness();
  for (const [op, sub] of [['start', 'begin'], ['started', 'begin'], ['stopped', 'end'], ['migrate', 'begin'], ['restore', 'begin'], ['attach', 'begin']] as const) {
    assert.is(await h.run(op, sub, xml('vxbr42')), 0);
  }
  assert.is(h.reads(), 0);
  assert.equal(h.host.names(), ['ens47f1']);
});

test('a failing prepare exits 1 with one line naming the network; nothing is left', async () => {
  const h = harness();
  assert.is(await h.run('prepare', 'begin', xml('vxbr44')), 1);
  assert.is(h.errors.length, 1);
  assert.match(h.errors[0] ?? '', /^vxvirt: network gone: underlay device nosuchdev does not exist/);
  assert.equal(h.host.names(), ['ens47f1']);
});

test('reconnect and release never exit non-zero', async () => {
  const h = harness();
  assert.is(await h.run('reconnect', 'begin', xml('vxbr44')), 0);
  assert.is(await h.run('release', 'end', 'not xml'), 0);
  assert.is(h.errors.length, 2);
});

test('reconnect records the domain again and ensures its pair', async () => {
  const h = harness();
  assert.is(await h.run('reconnect', 'begin', xml('vxbr42')), 0);
  assert.ok(h.host.links.has('vxlan42'));
  assert.equal(Object.keys(h.host.users.get('tut') ?? {}), ['u-1']);
});

test('domains without vxvirt NICs change nothing', async () => {
  const h = harness();
  assert.is(await h.run('prepare', 'begin', xml('virbr0')), 0);
  assert.equal(h.host.names(), ['ens47f1']);
  assert.equal(h.host.applied, []);
  const none = harness([]);
  assert.is(await none.run('prepare', 'begin', xml('vxbr42')), 0);
  assert.equal(none.host.applied, []);
});

test('an unreadable definition stops only the domains that may need it', async () => {
  const broken = [{ name: 'bad', error: new Error('/etc/vxvirt/networks/bad.json: not valid JSON') }];
  const h = harness([tut], broken);
  assert.is(await h.run('prepare', 'begin', xml('vxbr42')), 0, 'a domain on a readable network starts');
  assert.ok(h.host.links.has('vxbr42'));
  assert.equal(h.errors, [], 'a broken file the domain does not name is not even read');
  assert.is(await h.run('prepare', 'begin', xml('virbr0')), 0, 'a domain on no vxvirt network starts');
  assert.is(await h.run('prepare', 'begin', xml('vxbr99')), 1, 'a vxbrN no readable definition explains fails');
  assert.match(h.errors.at(-1) ?? '', /^vxvirt: \/etc\/vxvirt\/networks\/bad.json: not valid JSON$/);
  const byName = `<domain><name>n</name><devices><interface type='network'><source network='bad'/></interface></devices></domain>`;
  assert.is(await h.run('prepare', 'begin', byName), 1, 'a NIC naming the broken network fails');
  assert.is(await h.run('release', 'end', xml('vxbr42')), 0);
  assert.not.ok(h.host.links.has('vxbr42'), 'release still tears down the readable networks');
});

test('a release whose XML cannot be read still lets the domain named by libvirt go', async () => {
  const h = harness();
  assert.is(await h.run('prepare', 'begin', xml('vxbr42')), 0);
  assert.is(await h.run('release', 'end', '<domain><name>vm1'), 0);
  assert.match(h.errors[0] ?? '', /^vxvirt: domain XML is not well-formed/);
  assert.not.ok(h.host.links.has('vxbr42'), 'the pair of vm1 is gone');
  assert.is(h.host.domains.size, 0);
});

test.run();
