import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { decodeDomainXml, MAX_DOMAIN_XML_BYTES, networksUsedBy, readDomain, readDomainXml } from '../../src/domain-xml.ts';
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

test('namespaces: the root and the NICs must be in none, as libvirt reads them', () => {
  assert.throws(() => readDomain("<x:domain xmlns:x='urn:x'><name>a</name></x:domain>"), /no <domain> root element \(found <x:domain>\)/);
  assert.throws(() => readDomain("<domain xmlns='urn:evil'><name>a</name></domain>"), /<domain> is in namespace "urn:evil"; libvirt's domain XML has none/);
  const nics = readDomain(
    domain(`<evil:interface xmlns:evil='urn:evil' type='bridge'><evil:source bridge='vxbr42'/></evil:interface>
            <interface xmlns='urn:other' type='bridge'><source bridge='vxbr42'/></interface>
            <interface type='bridge' xmlns:unused='urn:u'><source bridge='vxbr43'/></interface>`),
  ).nics;
  assert.equal(nics, [{ type: 'bridge', bridge: 'vxbr43' }]);
  assert.equal(readDomain("<domain><name>a</name><devices xmlns='urn:x'><interface type='bridge'><source bridge='vxbr42'/></interface></devices></domain>").nics, []);
});

const bytes = (...parts: Array<string | number[]>) => Buffer.concat(parts.map((p) => (typeof p === 'string' ? Buffer.from(p) : Buffer.from(p))));

test('domain XML bytes are decoded strictly as UTF-8, naming the first bad byte', () => {
  const refused: Array<[Buffer, string]> = [
    [bytes('<d>', [0xff], '</d>'), 'byte 0xFF at offset 3'],
    [bytes('<d>', [0xc0, 0xaf], '</d>'), 'byte 0xC0 at offset 3'], // overlong "/"
    [bytes('<d>', [0xe0, 0x80, 0xaf], '</d>'), 'byte 0xE0 at offset 3'], // overlong, 3 bytes
    [bytes('<d>é', [0xed, 0xa0, 0x80], '</d>'), 'byte 0xED at offset 5'], // a UTF-16 surrogate
    [bytes('<d>', [0xf4, 0x90, 0x80, 0x80], '</d>'), 'byte 0xF4 at offset 3'], // above U+10FFFF
    [bytes('<d>', [0xf5, 0x80, 0x80, 0x80], '</d>'), 'byte 0xF5 at offset 3'],
    [bytes('<d>', [0x80], '</d>'), 'byte 0x80 at offset 3'], // a lone continuation byte
    [bytes('<d>', [0xe2, 0x82]), 'byte 0xE2 at offset 3'], // cut short at the end
    [Buffer.from('\ufeff<d/>', 'utf16le'), 'byte 0xFF at offset 0'],
  ];
  for (const [input, where] of refused) {
    assert.throws(() => decodeDomainXml(input, 'stdin'), (e: unknown) => e instanceof DomainXmlError && e.message === `stdin is not valid UTF-8: ${where}`, where);
  }
  // A BOM is kept (the generator must give it back), and so is every valid character.
  const text = '\ufeff<d>\u{10FFFF}\uFFFD€é</d>';
  assert.is(decodeDomainXml(Buffer.from(text), 'stdin'), text);
});

test('strict decoding agrees with the platform decoder on random bytes; the bytes before the one named are valid', () => {
  const fatal = new TextDecoder('utf-8', { fatal: true });
  let seed = 42;
  const random = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
  for (let i = 0; i < 3000; i++) {
    // Mostly ASCII and well-formed multi-byte characters, with stray bytes now and then.
    const parts: number[] = [];
    while (parts.length < 24) {
      const r = random();
      if (r < 0.5) parts.push(0x61);
      else if (r < 0.8) parts.push(...Buffer.from(String.fromCodePoint(Math.floor(random() * 0x10ffff)).replace(/[\ud800-\udfff]/g, 'x')));
      else parts.push(Math.floor(random() * 256));
    }
    const input = Buffer.from(parts);
    let platform = true;
    try {
      fatal.decode(input);
    } catch {
      platform = false;
    }
    let offset = -1;
    try {
      decodeDomainXml(input, 'x');
    } catch (err) {
      offset = Number(/at offset (\d+)$/.exec((err as Error).message)?.[1]);
    }
    assert.is(offset === -1, platform, input.toString('hex'));
    if (offset >= 0) fatal.decode(input.subarray(0, offset)); // throws if the named byte is not the first bad one
  }
});

test('input over 8 MiB is refused; a stream is not read past the cap', async () => {
  assert.throws(() => decodeDomainXml(Buffer.alloc(MAX_DOMAIN_XML_BYTES + 1, 0x20), 'stdin'), /^stdin is larger than 8 MiB, which no libvirt domain's XML is$/);
  let pulled = 0;
  async function* endless(): AsyncGenerator<Uint8Array> {
    for (;;) {
      pulled++;
      yield Buffer.alloc(1024 * 1024, 0x20);
    }
  }
  try {
    await readDomainXml(endless(), 'stdin');
    assert.unreachable('an endless stream was read to its end');
  } catch (err) {
    assert.instance(err, DomainXmlError);
    assert.match((err as Error).message, /^stdin is larger than 8 MiB/);
  }
  assert.is(pulled, 9, 'stopped at the first chunk past the cap');
  async function* pieces(): AsyncGenerator<Uint8Array> {
    yield Buffer.from('<domain><na');
    yield Buffer.from([0xc3]); // é split across chunks
    yield Buffer.from([0xa9]);
    yield Buffer.from('me>é</name></domain>');
  }
  assert.is(await readDomainXml(pieces(), 'stdin'), '<domain><na\u00e9me>é</name></domain>');
});

test.run();
