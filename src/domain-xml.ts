// Reading a domain's NICs, for the hook: which vxvirt networks a domain uses.
// Pure. The generator (the lossless rewrite) parses and reads NICs with the
// same functions; both stand on xml.ts, a small reader that keeps the hook's
// bundle light: it runs on every VM start.
import { DomainXmlError } from './errors.ts';
import { vniOfBridge, type NetworkDefinition } from './network-definition.ts';
import { attr, childElements, firstChild, namespaceOf, parseXml, textContent, XmlSyntaxError, type XmlDocument, type XmlElement } from './xml.ts';

export interface DomainNic {
  type: string;
  bridge?: string;
  network?: string;
  mac?: string;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
/** Whether a domain key is a UUID (any case); a domain without one is keyed by its name. */
export const isUuid = (key: string): boolean => UUID.test(key);

export interface DomainInfo {
  name: string;
  uuid?: string;
  /** What vxvirt records the domain by: its UUID, else its name. */
  key: string;
  nics: DomainNic[];
}

/**
 * The largest domain XML vxvirt reads (hook stdin, `vxvirt generate` input).
 * Every domain definition passes through libvirt's RPC as one string of at
 * most REMOTE_STRING_MAX (4 MiB, src/remote/remote_protocol.x), so no domain
 * libvirt holds has a larger XML; twice that leaves room for what libvirt
 * adds to the live XML it hands the hook (aliases, addresses, runtime state).
 * A cap keeps a hook's memory bounded (BENCHMARKS.md: the peak RSS of the
 * densest 8 MiB XML).
 */
export const MAX_DOMAIN_XML_BYTES = 8 * 1024 * 1024;

export const tooLarge = (source: string): DomainXmlError =>
  new DomainXmlError(`${source} is larger than ${MAX_DOMAIN_XML_BYTES / 1024 / 1024} MiB, which no libvirt domain's XML is`);

/**
 * Domain XML from a byte stream (the hook's stdin, a file), decoded as
 * decodeDomainXml does. Past MAX_DOMAIN_XML_BYTES nothing more is read
 * (leaving the loop destroys the stream; a pipe's writer gets EPIPE, which
 * libvirt ignores): neither time nor memory grows with the input.
 */
export async function readDomainXml(stream: AsyncIterable<Uint8Array>, source: string): Promise<string> {
  const chunks: Uint8Array[] = [];
  let size = 0;
  for await (const chunk of stream) {
    size += chunk.length;
    if (size > MAX_DOMAIN_XML_BYTES) throw tooLarge(source);
    chunks.push(chunk);
  }
  return decodeDomainXml(Buffer.concat(chunks, size), source);
}

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** Offset of the first byte not in a well-formed UTF-8 sequence (Unicode table 3-7), or -1. */
function invalidUtf8At(b: Uint8Array): number {
  let i = 0;
  while (i < b.length) {
    const c = b[i] as number;
    if (c < 0x80) {
      i++;
      continue;
    }
    let need: number;
    let lo = 0x80;
    let hi = 0xbf;
    if (c >= 0xc2 && c <= 0xdf) need = 1;
    else if (c >= 0xe0 && c <= 0xef) {
      need = 2;
      if (c === 0xe0) lo = 0xa0; // no overlong forms
      if (c === 0xed) hi = 0x9f; // no surrogates
    } else if (c >= 0xf0 && c <= 0xf4) {
      need = 3;
      if (c === 0xf0) lo = 0x90;
      if (c === 0xf4) hi = 0x8f; // nothing above U+10FFFF
    } else return i;
    for (let k = 1; k <= need; k++) {
      const d = b[i + k];
      if (d === undefined || d < (k === 1 ? lo : 0x80) || d > (k === 1 ? hi : 0xbf)) return i;
    }
    i += need + 1;
  }
  return -1;
}

/**
 * Domain XML bytes as text. Strict: bytes that are not UTF-8 are an error
 * (XML 1.0 section 4.3.3), not silently replaced with U+FFFD, which would
 * record a mangled domain name and break the generator's promise to keep
 * every byte it does not change. A byte-order mark is kept (xml.ts reads it).
 */
export function decodeDomainXml(bytes: Uint8Array, source: string): string {
  if (bytes.length > MAX_DOMAIN_XML_BYTES) throw tooLarge(source);
  try {
    return utf8.decode(bytes);
  } catch {
    const at = invalidUtf8At(bytes);
    const byte = (bytes[at] ?? 0).toString(16).toUpperCase().padStart(2, '0');
    throw new DomainXmlError(`${source} is not valid UTF-8: byte 0x${byte} at offset ${at}`);
  }
}

/** An element's text, trimmed; undefined when there is none. */
function textOf(source: string, el: XmlElement | undefined): string | undefined {
  return (el && textContent(source, el).trim()) || undefined;
}

/** Parse domain XML; a syntax error is a DomainXmlError. */
export function parseDomainXml(xml: string): XmlDocument {
  try {
    return parseXml(xml);
  } catch (err) {
    if (err instanceof XmlSyntaxError) throw new DomainXmlError(`domain XML is not well-formed: ${err.message}`);
    throw err;
  }
}

// libvirt finds devices with XPath (./devices/interface), which does not match
// an element that only looks like one because a foreign default namespace is
// declared on it: such elements are not the domain's.
const inNoNamespace = (el: XmlElement): boolean => namespaceOf(el) === '';

/** The domain's <devices> element. */
export function devicesOf(root: XmlElement): XmlElement | undefined {
  return childElements(root, 'devices').find(inNoNamespace);
}

/** The domain's <interface> elements, in document order. */
export function interfacesOf(root: XmlElement): XmlElement[] {
  const devices = devicesOf(root);
  return devices ? childElements(devices, 'interface').filter(inNoNamespace) : [];
}

/** A NIC's MAC address, lower-cased; undefined without one. */
export function macOf(nic: XmlElement): string | undefined {
  const mac = firstChild(nic, 'mac');
  return (mac && attr(mac, 'address')?.toLowerCase()) || undefined;
}

/** An attribute of a NIC's <source>; undefined when absent or empty. */
export function sourceOf(nic: XmlElement, name: 'bridge' | 'network'): string | undefined {
  const source = firstChild(nic, 'source');
  return (source && attr(source, name)) || undefined;
}

export function readDomain(xml: string): DomainInfo {
  const root = parseDomainXml(xml).root;
  if (root.name !== 'domain') throw new DomainXmlError(`domain XML has no <domain> root element (found <${root.name}>)`);
  const ns = namespaceOf(root);
  if (ns !== '') throw new DomainXmlError(`domain XML: <domain> is in namespace ${JSON.stringify(ns)}; libvirt's domain XML has none`);
  const name = textOf(xml, firstChild(root, 'name'));
  if (!name) throw new DomainXmlError('domain XML has no <name>');
  const uuid = textOf(xml, firstChild(root, 'uuid'));
  const nics = interfacesOf(root).map((n): DomainNic => {
    const nic: DomainNic = { type: attr(n, 'type') ?? '' };
    const bridge = sourceOf(n, 'bridge');
    const network = sourceOf(n, 'network');
    const mac = macOf(n);
    if (bridge) nic.bridge = bridge;
    if (network) nic.network = network;
    if (mac) nic.mac = mac;
    return nic;
  });
  return { name, ...(uuid ? { uuid } : {}), key: uuid ?? name, nics };
}

/** Whether a NIC is of a type that can be on a vxvirt network: type='bridge' or type='network'. */
export const isBridgedNic = (nic: Pick<DomainNic, 'type'>): boolean => nic.type === 'bridge' || nic.type === 'network';

/** Where the vxvirt networks are looked up: by the VNI of a bridge vxbrN, by name. */
export interface NetworkIndex<T> {
  byVni(vni: number): T | undefined;
  byName(name: string): T | undefined;
}

/** The index of a list of definitions. */
export const indexOf = (defs: readonly NetworkDefinition[]): NetworkIndex<NetworkDefinition> => ({
  byVni: (vni) => defs.find((d) => d.vni === vni),
  byName: (name) => defs.find((d) => d.name === name),
});

/**
 * The vxvirt network a NIC's source is on: by its bridge vxbrN first (a
 * running domain's `<interface type='network'>` reads as type='bridge' with
 * both attributes), by its libvirt network name second.
 */
export function networkOf<T>(source: { bridge?: string | undefined; network?: string | undefined }, index: NetworkIndex<T>): T | undefined {
  const vni = vniOfBridge(source.bridge);
  return (vni !== undefined ? index.byVni(vni) : undefined) ?? (source.network !== undefined ? index.byName(source.network) : undefined);
}

/** The vxvirt network a NIC is on (networkOf), if it is of a type that can be on one. */
export const networkOfNic = <T>(nic: DomainNic, index: NetworkIndex<T>): T | undefined => (isBridgedNic(nic) ? networkOf(nic, index) : undefined);

/** The vxvirt networks a domain's NICs are on (networkOfNic), each name once, in NIC order. */
export function networksOfNics<T extends { name: string }>(nics: readonly DomainNic[], index: NetworkIndex<T>): T[] {
  const found = new Map<string, T>();
  for (const nic of nics) {
    const net = networkOfNic(nic, index);
    if (net !== undefined && !found.has(net.name)) found.set(net.name, net);
  }
  return [...found.values()];
}

/**
 * The vxvirt networks of NIC sources listed apart (a running domain's
 * bridges and libvirt networks, reconcile.ts's ActiveDomainFacts), each name
 * once: those of the bridges first.
 */
export function networksOfSources<T extends { name: string }>(
  sources: { bridges: readonly string[]; networks: readonly string[] },
  index: NetworkIndex<T>,
): T[] {
  const found = new Map<string, T>();
  const add = (net: T | undefined): void => void (net !== undefined && !found.has(net.name) && found.set(net.name, net));
  for (const bridge of sources.bridges) add(networkOf({ bridge }, index));
  for (const network of sources.networks) add(networkOf({ network }, index));
  return [...found.values()];
}

/** The vxvirt networks a domain's NICs are on (networkOf), in definition order. */
export function networksUsedBy(domain: DomainInfo, defs: readonly NetworkDefinition[]): NetworkDefinition[] {
  const used = new Set(networksOfNics(domain.nics, indexOf(defs)).map((d) => d.name));
  return defs.filter((d) => used.has(d.name));
}
