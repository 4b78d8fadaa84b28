import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { networksUsedBy, readDomain } from '../../src/domain-xml.ts';
import { DomainXmlError } from '../../src/errors.ts';
import { validateDefinition } from '../../src/network-definition.ts';

const tut = validateDefinition({ name: 'tut', vni: 42, dev: 'e0', remotes: ['10.0.0.2'] });
const other = validateDefinition({ name: 'other', vni: 43, dev: 'e0', group: '239.1.1.1' });

const domain = (devices: string, head = "<uuid>6f1c0c4e-0000-4000-8000-000000000001</uuid>") =>
  `<?xml version="1.0"?>\n<domain type='qemu' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>\n  <name>vm1</name>\n  ${head}\n  <devices>${devices}</devices>\n</domain>\n`;

test('reads name, uuid and NICs', () => {
  const d = readDomain(
    domain(`<interface type='bridge'><mac address='52:54:00:00:00:01'/><source bridge='vxbr42'/></interface>
            <interface type='network'><source network='other'/></interface>
            <interface type='user'/>`),
  );
  assert.is(d.name, 'vm1');
  assert.is(d.key, '6f1c0c4e-0000-4000-8000-000000000001');
  assert.equal(d.nics, [
    { type: 'bridge', bridge: 'vxbr42', mac: '52:54:00:00:00:01' },
    { type: 'network', network: 'other' },
    { type: 'user' },
  ]);
});

test('without a uuid the domain is keyed by name', () => {
  assert.is(readDomain(domain('', '')).key, 'vm1');
});

test('a bridge NIC matches by bridge, a network NIC by name, a running network NIC by bridge first', () => {
  const defs = [tut, other];
  const used = (devices: string) => networksUsedBy(readDomain(domain(devices)), defs).map((d) => d.name);
  assert.equal(used(`<interface type='bridge'><source bridge='vxbr42'/></interface>`), ['tut']);
  assert.equal(used(`<interface type='network'><source network='other'/></interface>`), ['other']);
  // What release sees for a type='network' NIC of a running domain:
  assert.equal(used(`<interface type='bridge'><source network='other' portid='x' bridge='vxbr43'/></interface>`), ['other']);
  assert.equal(used(`<interface type='bridge'><source bridge='br0'/></interface><interface type='network'><source network='default'/></interface>`), []);
  assert.equal(used(`<interface type='direct'><source dev='vxbr42' mode='bridge'/></interface>`), []);
  // Two NICs on one network count once.
  assert.equal(used(`<interface type='bridge'><source bridge='vxbr42'/></interface><interface type='bridge'><source bridge='vxbr42'/></interface>`), ['tut']);
});

test('bad XML is a DomainXmlError', () => {
  assert.throws(() => readDomain('<domain><name>x</name>'), (e: unknown) => e instanceof DomainXmlError);
  assert.throws(() => readDomain('<network/>'), /no <domain> root element \(found <network>\)/);
  assert.throws(() => readDomain('<domain/>'), /no <name>/);
});

test.run();
