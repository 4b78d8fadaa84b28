// The lossless domain XML rewrite, checked three ways on realistic fixtures:
//  1. everything outside the changed NICs and vxvirt's metadata element is
//     canonically equal (xmllint --c14n) to the input, with the NICs and
//     vxvirt's element removed by a separate reader (Python's minidom), not
//     by the code under test;
//  2. each changed NIC is exactly the expected text;
//  3. every output passes libvirt's schema (virt-xml-validate FILE domain).
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { DomainXmlError, UsageError } from '../../src/errors.ts';
import { detach, generate, interfaceXml, listInterfaces, type GenerateOptions } from '../../src/generator.ts';
import { fillTemplate, VXVIRT_XMLNS } from '../../src/templates.ts';
import { validateDefinition } from '../../src/network-definition.ts';
import { parseXml } from '../../src/xml.ts';
import { needs } from '../support/require.ts';

const FIXTURES = new URL('../fixtures/domains/', import.meta.url);
const fixture = (name: string): string => readFileSync(new URL(name, FIXTURES), 'utf8');
const lab = validateDefinition({ name: 'lab', vni: 100, dev: 'eth0', remotes: ['10.0.0.2'] });
const other = validateDefinition({ name: 'other', vni: 200, dev: 'eth0', group: '239.1.1.1' });

const tmp = mkdtempSync(join(tmpdir(), 'vxvirt-generator-'));
test.after(() => rmSync(tmp, { recursive: true, force: true }));
let counter = 0;
const tmpFile = (text: string): string => {
  const path = join(tmp, `doc${counter++}.xml`);
  writeFileSync(path, text);
  return path;
};

// Without these tools a test fails, or on a partial run is counted as skipped.
function validate(xml: string, what: string): void {
  needs('virt-xml-validate');
  const r = spawnSync('virt-xml-validate', [tmpFile(xml), 'domain'], { encoding: 'utf8' });
  assert.is(r.status, 0, `${what} does not validate: ${r.stdout}${r.stderr}`);
}

// Remove every /domain/devices/interface and vxvirt's element in /domain/metadata
// (plus the whitespace in front of each, and a <metadata> left with nothing in
// it), then canonicalise. Independent of src/xml.ts on purpose.
const STRIP = `
import sys
from xml.dom import minidom
NS = ${JSON.stringify(VXVIRT_XMLNS)}
doc = minidom.parse(sys.argv[1])
root = doc.documentElement
def drop(node):
    prev = node.previousSibling
    if prev is not None and prev.nodeType == prev.TEXT_NODE and prev.data.strip() == '':
        prev.parentNode.removeChild(prev)
    node.parentNode.removeChild(node)
for devices in [n for n in root.childNodes if n.nodeType == n.ELEMENT_NODE and n.tagName == 'devices']:
    for nic in [n for n in devices.childNodes if n.nodeType == n.ELEMENT_NODE and n.tagName == 'interface']:
        drop(nic)
for md in [n for n in root.childNodes if n.nodeType == n.ELEMENT_NODE and n.tagName == 'metadata']:
    for el in [n for n in md.childNodes if n.nodeType == n.ELEMENT_NODE and n.namespaceURI == NS]:
        drop(el)
    if all(n.nodeType == n.TEXT_NODE and n.data.strip() == '' for n in md.childNodes):
        drop(md)
sys.stdout.write(doc.toxml())
`;
const stripScript = join(tmp, 'strip.py');
writeFileSync(stripScript, STRIP);

function canonicalWithoutNics(xml: string): string {
  const stripped = spawnSync('python3', [stripScript, tmpFile(xml)], { encoding: 'utf8' });
  assert.is(stripped.status, 0, stripped.stderr);
  const c14n = spawnSync('xmllint', ['--c14n', tmpFile(stripped.stdout)], { encoding: 'utf8' });
  assert.is(c14n.status, 0, c14n.stderr);
  return c14n.stdout;
}

function assertSameOutsideNics(input: string, output: string): void {
  needs('xmllint', 'python3');
  const a = canonicalWithoutNics(input);
  const b = canonicalWithoutNics(output);
  assert.ok(a.length > 100, 'the canonical form is not empty');
  assert.fixture(b, a);
}

/** Generate, then check schema, losslessness outside the NICs, and idempotence. */
function run(name: string, opts: Omit<GenerateOptions, 'network'> & { network?: GenerateOptions['network'] }): string {
  const input = fixture(name);
  const full = { network: lab, mtu: 1450, ...opts };
  const output = generate(input, full);
  validate(output, `${name} after generate`);
  assertSameOutsideNics(input, output);
  if (!opts.add) assert.fixture(generate(output, full), output, 'generating again changes nothing');
  return output;
}

const nicTexts = (xml: string): string[] => listInterfaces(xml).map((n) => interfaceXml(xml, n.index));

// ---- the fixtures themselves -------------------------------------------

test('every fixture is valid libvirt domain XML and parses', () => {
  const names = readdirSync(FIXTURES).filter((n) => n.endsWith('.xml'));
  assert.ok(names.length >= 8, `${names.length} fixtures`);
  for (const name of names) {
    validate(fixture(name), name);
    parseXml(fixture(name));
  }
});

// ---- conversions --------------------------------------------------------

test('virt-install NIC on network default: bridge vxbrN, MTU, PCI address kept, metadata created', () => {
  const out = run('virt-install-network.xml', {});
  assert.equal(nicTexts(out), [
    `<interface type='bridge'>
      <mac address='52:54:00:6b:3c:58'/>
      <source bridge='vxbr100'/>
      <model type='virtio'/>
      <mtu size='1450'/>
      <address type='pci' domain='0x0000' bus='0x01' slot='0x00' function='0x0'/>
    </interface>`,
  ]);
  // The existing libosinfo metadata stays first; vxvirt's element follows it.
  assert.ok(
    out.includes(`      <libosinfo:os id="http://debian.org/debian/12"/>
    </libosinfo:libosinfo>
    <vxvirt:networks xmlns:vxvirt='https://vxvirt.dev/xmlns/1'>
      <vxvirt:interface mac='52:54:00:6b:3c:58' network='lab' vni='100'>
        <vxvirt:original>&lt;interface type='network'&gt;
      &lt;mac address='52:54:00:6b:3c:58'/&gt;
      &lt;source network='default'/&gt;`),
    out,
  );
  // Secrets in other devices survive (libvirt's XML with VIR_DOMAIN_XML_SECURE).
  assert.ok(out.includes(`passwd='s3cret&amp;more'`));
  assert.equal(
    listInterfaces(out).map((n) => [n.mac, n.type, n.bridge, n.network]),
    [['52:54:00:6b:3c:58', 'bridge', 'vxbr100', 'lab']],
  );
});

test('hand-edited XML: declaration, comments, CDATA, entities, double quotes, uppercase MAC; existing <mtu> replaced on e1000', () => {
  const input = fixture('bridge-e1000-features.xml');
  const out = run('bridge-e1000-features.xml', { interfaces: ['52:54:00:a1:b2:c3'] });
  // Everything up to <metadata>'s children is byte for byte the same.
  const cut = input.indexOf('    </app:info>');
  assert.is(out.slice(0, cut), input.slice(0, cut));
  assert.ok(out.startsWith('<?xml version="1.0" encoding="UTF-8"?>\n<!-- Hand-edited'));
  assert.ok(out.includes('<wwn>0x5000c50015ea71ad</wwn>'));
  assert.ok(out.includes('<serial>  Z1X2  </serial>'));
  assert.equal(nicTexts(out), [
    `<interface type="bridge">
      <mac address="52:54:00:A1:B2:C3"/>
      <source bridge="vxbr100"/>
      <target dev="vnet-db0"/>
      <model type="e1000"/>
      <mtu size="1450"/>
      <boot order="2"/>
      <rom bar="off"/>
      <link state="up"/>
      <alias name="ua-uplink"/>
      <address type="pci" domain="0x0000" bus="0x00" slot="0x03" function="0x&#48;"/>
    </interface>`,
    // Not chosen: untouched.
    `<interface type="network">
      <mac address="52:54:00:a1:b2:c4"/>
      <source network="default" portgroup="engineering"/>
      <model type="rtl8139"/>
    </interface>`,
  ]);
  assert.ok(out.includes(`<vxvirt:interface mac="52:54:00:a1:b2:c3" network="lab" vni="100">`));
  assert.not.ok(out.includes('52:54:00:a1:b2:c4" network'), 'only the chosen NIC is recorded');
});

test('a non-virtio NIC without <mtu> gets none (the tap takes the bridge MTU)', () => {
  const out = run('bridge-e1000-features.xml', { interfaces: ['1'] });
  assert.is(
    nicTexts(out)[1],
    `<interface type="bridge">
      <mac address="52:54:00:a1:b2:c4"/>
      <source bridge="vxbr100"/>
      <model type="rtl8139"/>
    </interface>`,
  );
});

test('direct/openvswitch NICs: virtualport and vlan dropped; driver, bandwidth, filterref, tune, coalesce, port, teaming kept', () => {
  const out = run('direct-and-ovs.xml', {});
  assert.equal(nicTexts(out), [
    `<interface type='bridge' trustGuestRxFilters='yes'>
      <mac address='52:54:00:10:00:01'/>
      <source bridge='vxbr100'/>
      <model type='virtio'/>
      <mtu size='1450'/>
      <driver name='vhost' queues='4' rx_queue_size='1024'>
        <host csum='off' tso4='off'/>
        <guest csum='off'/>
      </driver>
      <address type='pci' domain='0x0000' bus='0x01' slot='0x00' function='0x0'/>
    </interface>`,
    `<interface type='bridge'>
      <mac address='52:54:00:10:00:02'/>
      <source bridge='vxbr100'/>
      <target dev='ovs-r2'/>
      <model type='virtio-non-transitional'/>
      <mtu size='1450'/>
      <bandwidth>
        <inbound average='1000' peak='5000' burst='1024'/>
        <outbound average='128' peak='256' burst='256'/>
      </bandwidth>
      <filterref filter='clean-traffic'>
        <parameter name='IP' value='10.0.0.1'/>
      </filterref>
      <tune>
        <sndbuf>1600</sndbuf>
      </tune>
      <coalesce>
        <rx>
          <frames max='7'/>
        </rx>
      </coalesce>
      <port isolated='yes'/>
      <address type='pci' domain='0x0000' bus='0x02' slot='0x00' function='0x0'/>
    </interface>`,
    `<interface type='bridge'>
      <mac address='52:54:00:10:00:03'/>
      <source bridge='vxbr100'/>
      <model type='virtio-transitional'/>
      <mtu size='1450'/>
      <teaming type='persistent'/>
      <address type='pci' domain='0x0000' bus='0x03' slot='0x00' function='0x0'/>
    </interface>`,
  ]);
  // <metadata> is created after <genid>, where libvirt writes it.
  assert.ok(out.includes(`</genid>\n  <metadata>\n    <vxvirt:networks`));
});

test('user (passt) and ethernet NICs: passt backend, ip, route, portForward, scripts, unmanaged target dropped', () => {
  const out = run('user-and-ethernet.xml', {});
  assert.equal(nicTexts(out), [
    `<interface type='bridge'>
      <source bridge='vxbr100'/>
      <model type='virtio'/>
      <mtu size='1450'/>
    </interface>`,
    `<interface type='bridge'>
      <mac address='52:54:00:20:00:02'/>
      <source bridge='vxbr100'/>
      <model type='virtio'/>
      <mtu size='1450'/>
      <backend tap='/dev/net/tun' vhost='/dev/vhost-net'/>
    </interface>`,
    `<interface type='bridge'>
      <mac address='52:54:00:20:00:03'/>
      <source bridge='vxbr100'/>
      <target dev='tap-guest3'/>
      <model type='e1000e'/>
    </interface>`,
    `<interface type='bridge'>
      <source bridge='vxbr100'/>
    </interface>`,
  ]);
  // NICs without a MAC are recorded by index.
  assert.ok(out.includes(`<vxvirt:interface index='0' network='lab' vni='100'>`));
  assert.ok(out.includes(`<vxvirt:interface index='3' network='lab' vni='100'>`));
});

test('an index-keyed entry is re-keyed by MAC once libvirt has assigned one', () => {
  const first = generate(fixture('user-and-ethernet.xml'), { network: lab, mtu: 1450, interfaces: ['3'] });
  assert.ok(first.includes(`index='3'`));
  // What libvirt does on define: a MAC for the NIC that had none.
  const defined = first.replace(`<interface type='bridge'>\n      <source bridge='vxbr100'/>\n    </interface>`, `<interface type='bridge'>\n      <mac address='52:54:00:99:00:03'/>\n      <source bridge='vxbr100'/>\n    </interface>`);
  assert.not.equal(defined, first);
  const again = generate(defined, { network: lab, mtu: 1450, interfaces: ['3'] });
  assert.ok(again.includes(`<vxvirt:interface mac='52:54:00:99:00:03' network='lab' vni='100'>\n        <vxvirt:original>&lt;interface type='user'/&gt;</vxvirt:original>`), again);
  assert.not.ok(again.includes(`index='3'`));
});

test('CRLF document: line breaks stay CRLF, self-closing <metadata/> is filled', () => {
  const input = fixture('crlf-direct-nomac.xml');
  const out = run('crlf-direct-nomac.xml', {});
  assert.not.ok(/[^\r]\n/.test(out), 'no bare LF');
  assert.ok(out.includes('<interface type="bridge">\r\n      <source bridge="vxbr100"/>\r\n      <model type="virtio"/>\r\n      <mtu size="1450"/>\r\n    </interface>'));
  assert.ok(out.startsWith(input.slice(0, input.indexOf('<metadata/>'))));
});

test('a NIC already on the network with the same MTU: output is byte-identical', () => {
  const input = fixture('existing-vxvirt.xml');
  assert.is(generate(input, { network: lab, mtu: 1450, interfaces: ['52:54:00:40:00:01'] }), input);
});

test('existing vxvirt metadata (other prefix) is merged: original and added entries kept, foreign metadata untouched', () => {
  const out = run('existing-vxvirt.xml', { interfaces: ['1'], network: other, mtu: 1400 });
  assert.is(
    nicTexts(out)[1],
    `<interface type='bridge'>
      <mac address='52:54:00:40:00:02'/>
      <source bridge='vxbr200'/>
      <model type='virtio'/>
      <mtu size='1400'/>
      <address type='pci' domain='0x0000' bus='0x02' slot='0x00' function='0x0'/>
    </interface>`,
  );
  const md = out.slice(out.indexOf('<vx:networks'), out.indexOf('</vx:networks>'));
  // vxvirt's element keeps its prefix and quote style; unchanged entries are kept as they were.
  const before = fixture('existing-vxvirt.xml');
  const oldEntries = before.slice(before.indexOf('<vx:networks'), before.indexOf('    </vx:networks>'));
  assert.ok(md.startsWith(oldEntries), md);
  assert.ok(md.includes(`<vx:interface mac="52:54:00:40:00:02" network="other" vni="200">\n        <vx:original>&lt;interface type='network'&gt;`), md);
  assert.ok(out.includes('<other:thing xmlns:other="urn:example:other">keep me</other:thing>'));
});

test('moving a vxvirt NIC to another network keeps its first original', () => {
  const once = generate(fixture('virt-install-network.xml'), { network: lab, mtu: 1450 });
  const twice = generate(once, { network: other, mtu: 1400 });
  assert.ok(twice.includes(`<vxvirt:interface mac='52:54:00:6b:3c:58' network='other' vni='200'>`));
  assert.ok(twice.includes(`&lt;source network='default'/&gt;`));
  assert.not.ok(twice.includes(`&lt;source bridge='vxbr100'/&gt;`));
});

test('without an MTU an existing <mtu> is dropped and none is added', () => {
  const out = generate(fixture('existing-vxvirt.xml'), { network: lab, interfaces: ['1'] });
  assert.not.ok(nicTexts(out)[1]?.includes('<mtu'));
  validate(out, 'existing-vxvirt without MTU');
});

// ---- add ----------------------------------------------------------------

test('--add appends a virtio NIC in the document style (tabs, double quotes)', () => {
  const out = run('no-interfaces-tabs.xml', { add: true, mac: '52:54:00:AA:BB:CC' });
  assert.ok(
    out.includes(
      `\t\t<console type="pty"/>\n\t\t<interface type="bridge">\n\t\t\t<mac address="52:54:00:aa:bb:cc"/>\n\t\t\t<source bridge="vxbr100"/>\n\t\t\t<model type="virtio"/>\n\t\t\t<mtu size="1450"/>\n\t\t</interface>\n\t</devices>`,
    ),
    out,
  );
  assert.ok(out.includes(`\t<name>tiny</name>\n\t<metadata>\n\t\t<vxvirt:networks xmlns:vxvirt="https://vxvirt.dev/xmlns/1">\n\t\t\t<vxvirt:interface mac="52:54:00:aa:bb:cc" network="lab" vni="100" added="yes"/>\n\t\t</vxvirt:networks>\n\t</metadata>`), out);
});

test('--add after the last NIC; without a MAC it is keyed by index', () => {
  const out = run('virt-install-network.xml', { add: true });
  const nics = nicTexts(out);
  assert.is(nics.length, 2);
  assert.is(nics[1], `<interface type='bridge'>\n      <source bridge='vxbr100'/>\n      <model type='virtio'/>\n      <mtu size='1450'/>\n    </interface>`);
  assert.ok(out.includes(`</interface>\n    <interface type='bridge'>\n      <source bridge='vxbr100'/>`));
  assert.ok(out.includes(`<vxvirt:interface index='1' network='lab' vni='100' added='yes'/>`));
  assert.is(nics[0], interfaceXml(fixture('virt-install-network.xml'), 0), 'the existing NIC is untouched');
});

test('--add refuses a MAC the domain already has, and --interface with it', () => {
  assert.throws(
    () => generate(fixture('virt-install-network.xml'), { network: lab, add: true, mac: '52:54:00:6B:3C:58' }),
    (e: unknown) => e instanceof UsageError && /52:54:00:6b:3c:58: interface 0 already has it/.test(e.message),
  );
  assert.throws(
    () => generate(fixture('virt-install-network.xml'), { network: lab, add: true, interfaces: ['0'] }),
    (e: unknown) => e instanceof UsageError && /cannot be combined with --add/.test(e.message),
  );
});

// ---- refusals -----------------------------------------------------------

test('interfaces that cannot be bridge ports are refused, naming each and why', () => {
  assert.throws(
    () => generate(fixture('unconvertible.xml'), { network: lab, mtu: 1450 }),
    (e: unknown) =>
      e instanceof DomainXmlError &&
      e.message.includes(`interface 1 (52:54:00:30:00:01) of type 'hostdev' (a host device passed through (SR-IOV VF), no tap)`) &&
      e.message.includes(`interface 2 (52:54:00:30:00:02) of type 'vhostuser' (a vhost-user socket`) &&
      e.message.includes(`of type 'vdpa' (a vDPA device, no tap)`) &&
      e.message.includes(`of type 'null' (not run by QEMU (VMware ESX only))`) &&
      e.message.includes(`of type 'vds' (not run by QEMU (VMware ESX only))`) &&
      e.message.includes(`of type 'internal' (not run by QEMU (VirtualBox only))`) &&
      e.message.includes('only types network, bridge, direct, user, ethernet, mcast, udp, server, client can') &&
      e.message.includes('choose the others with --interface') &&
      !e.message.includes('\n'),
  );
  for (let i = 1; i <= 6; i++) {
    assert.throws(
      () => generate(fixture('unconvertible.xml'), { network: lab, interfaces: [String(i)] }),
      (e: unknown) => e instanceof DomainXmlError && e.message.startsWith(`interface ${i} (`) && !e.message.includes('choose the others'),
      `interface ${i}`,
    );
  }
});

test('socket back ends (mcast, udp, server, client) become bridge ports, keeping model, MAC, address, boot order, ROM, alias, driver', () => {
  const input = fixture('sockets.xml');
  const out = run('sockets.xml', {});
  assert.equal(nicTexts(out), [
    `<interface type='bridge'>
      <mac address='52:54:00:40:00:00'/>
      <source bridge='vxbr100'/>
      <model type='virtio'/>
      <mtu size='1450'/>
      <boot order='1'/>
      <rom bar='off'/>
      <alias name='ua-mcast0'/>
      <address type='pci' domain='0x0000' bus='0x00' slot='0x03' function='0x0'/>
    </interface>`,
    `<interface type="bridge">
      <mac address="52:54:00:40:00:01"/>
      <source bridge="vxbr100"/>
      <model type="e1000"/>
      <link state="up"/>
      <address type="pci" domain="0x0000" bus="0x00" slot="0x04" function="0x0"/>
    </interface>`,
    `<interface type='bridge'>
      <mac address='52:54:00:40:00:02'/>
      <source bridge='vxbr100'/>
      <model type='rtl8139'/>
      <alias name='ua-server0'/>
    </interface>`,
    `<interface type='bridge'>
      <mac address='52:54:00:40:00:03'/>
      <source bridge='vxbr100'/>
      <model type='virtio'/>
      <mtu size='1450'/>
      <driver name='qemu' queues='2'/>
    </interface>`,
  ]);
  // Outside the NICs and vxvirt's metadata every byte is kept (the comment too).
  assert.ok(out.includes(`  <devices>\n    <!-- a QEMU multicast "hub" shared by the guests of one host -->\n    <interface type='bridge'>`));
  assert.not.ok(/address='230\.0\.0\.1'|port=|<local/.test(nicTexts(out).join('')), 'no socket attribute or <local> is left');
  // detach puts the socket back ends back exactly as they were.
  const back = detach(out);
  assert.fixture(back.xml, input);
  assert.is(back.restored.length, 4);
  validate(back.xml, 'sockets detached');
});

test('choosing only the convertible NIC of a domain with unconvertible ones works', () => {
  const out = run('unconvertible.xml', { interfaces: ['52:54:00:30:00:00'] });
  const before = nicTexts(fixture('unconvertible.xml'));
  const after = nicTexts(out);
  assert.equal(after.slice(1), before.slice(1));
});

test('unknown or malformed selectors are usage errors naming the value', () => {
  const input = fixture('virt-install-network.xml');
  const err = (sel: string, re: RegExp) =>
    assert.throws(() => generate(input, { network: lab, interfaces: [sel] }), (e: unknown) => e instanceof UsageError && re.test(e.message), sel);
  err('52:54:00:00:00:01', /^--interface 52:54:00:00:00:01: no interface has this MAC \(the domain's MACs: 52:54:00:6b:3c:58\)$/);
  err('3', /^--interface 3: the domain has 1 interface\(s\), indexes 0 to 0$/);
  err('eth0', /^--interface "eth0": must be a MAC address/);
  err('-1', /^--interface "-1"/);
});

test('bad XML and bad roots are DomainXmlErrors with a position', () => {
  const bad = (xml: string, re: RegExp) =>
    assert.throws(() => generate(xml, { network: lab }), (e: unknown) => e instanceof DomainXmlError && re.test(e.message), xml);
  bad('<domain><devices></domain>', /not well-formed: line 1 column 18: <\/domain> does not match <devices>/);
  bad('<domain a="1" a="2"/>', /attribute a appears twice/);
  bad('<domain><title>&nbsp;</title></domain>', /unknown entity &nbsp;/);
  bad('<domain>\n<name>x & y</name></domain>', /line 2 column 9: "&" must start an entity reference/);
  bad('<!DOCTYPE domain [<!ENTITY x "y">]><domain/>', /DOCTYPE is not supported/);
  bad('<network><name>x</name></network>', /root element is <network>, expected <domain>/);
  bad('<domain><devices/></domain>', /has no <interface>: use --add/);
  bad('', /no root element/);
});

test('an element that only looks like a NIC, in a foreign namespace, is not one: listed, converted or counted', () => {
  const xml = `<domain type='kvm'>\n  <name>ns</name>\n  <devices>\n    <interface xmlns='urn:other' type='network'><source network='default'/></interface>\n    <interface type='network'><source network='default'/></interface>\n  </devices>\n</domain>\n`;
  assert.equal(listInterfaces(xml).map((n) => n.index), [0]);
  const out = generate(xml, { network: lab, mtu: 1450 });
  assert.ok(out.includes(`<interface xmlns='urn:other' type='network'><source network='default'/></interface>`), 'left as it was');
  assert.is(listInterfaces(out)[0]?.bridge, 'vxbr100');
});

test('an MTU out of range is refused', () => {
  assert.throws(() => generate(fixture('virt-install-network.xml'), { network: lab, mtu: 40 }), /MTU 40: must be an integer from 68 to 65535/);
});

// ---- detach -------------------------------------------------------------

test('detach restores converted NICs byte for byte and removes added ones and the metadata', () => {
  for (const name of ['virt-install-network.xml', 'direct-and-ovs.xml', 'bridge-e1000-features.xml']) {
    const input = fixture(name);
    const converted = generate(input, { network: lab, mtu: 1450 });
    const added = generate(converted, { network: lab, mtu: 1450, add: true, mac: '52:54:00:ee:ee:ee' });
    const r = detach(added);
    assert.is(r.xml, input, name);
    assert.equal(r.removed.map((n) => n.mac), ['52:54:00:ee:ee:ee']);
    assert.is(r.restored.length, listInterfaces(input).length);
  }
});

test('detach --network only undoes that network and keeps other entries', () => {
  const input = fixture('existing-vxvirt.xml');
  const both = generate(input, { network: other, mtu: 1400, interfaces: ['1'] });
  const r = detach(both, { network: 'other' });
  assert.is(r.xml, input);
  const r2 = detach(input, { network: 'lab' });
  validate(r2.xml, 'existing-vxvirt detached from lab');
  assert.equal(r2.restored.map((n) => n.mac), ['52:54:00:40:00:01']);
  assert.ok(r2.xml.includes(`<interface type='network'>\n      <mac address='52:54:00:40:00:01'/>\n      <source network='default'/>`));
  assert.ok(r2.xml.includes(`<vx:interface mac="52:54:00:40:00:09" network="old" vni="9" added="yes"/>`), 'other network left alone');
  const r3 = detach(input, { network: 'old' });
  assert.equal(r3.stale, [{ mac: '52:54:00:40:00:09', network: 'old' }]);
  assert.throws(() => detach(input, { network: 'nope' }), (e: unknown) => e instanceof UsageError && /--network nope: no NIC of this domain is on it \(vxvirt metadata: lab, old\)/.test(e.message));
});

test('detach keeps the MAC libvirt assigned to a NIC that had none', () => {
  const converted = generate(fixture('user-and-ethernet.xml'), { network: lab, mtu: 1450, interfaces: ['3'] });
  const defined = converted.replace(`<interface type='bridge'>\n      <source bridge='vxbr100'/>`, `<interface type='bridge'>\n      <mac address='52:54:00:99:00:03'/>\n      <source bridge='vxbr100'/>`);
  const r = detach(defined);
  assert.equal(r.restored.map((n) => n.xml), [`<interface type='user'><mac address='52:54:00:99:00:03'/></interface>`]);
  validate(r.xml, 'user-and-ethernet detached');
});

// ---- templates ----------------------------------------------------------

test('templates: fields are escaped, lines with an absent field are left out', () => {
  assert.is(
    fillTemplate(`<a x='{{v}}'/>\n<b y='{{w}}'/>`, { v: `'"<&`, w: undefined }),
    `<a x='&apos;&quot;&lt;&amp;'/>`,
  );
  assert.is(fillTemplate(`<a x='{{v}}'/>`, { v: `it's` }, '"'), `<a x="it&apos;s"/>`);
  assert.throws(() => fillTemplate(`{{nope}}`, {}), /template field \{\{nope\}\} has no value/);
});

test.run();
