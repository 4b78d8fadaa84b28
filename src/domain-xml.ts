// Reading a domain's NICs, for the hook: which vxvirt networks a domain uses.
// Pure. The generator (the lossless rewrite) parses and reads NICs with the
// same functions; both stand on xml.ts, a small reader that keeps the hook's
// bundle light: it runs on every VM start.
import { DomainXmlError } from './errors.ts';
import { bridgeName, type NetworkDefinition } from './network-definition.ts';
import { attr, childElements, firstChild, parseXml, textContent, XmlSyntaxError, type XmlDocument, type XmlElement } from './xml.ts';

export interface DomainNic {
  type: string;
  bridge?: string;
  network?: string;
  mac?: string;
}

export interface DomainInfo {
  name: string;
  uuid?: string;
  /** What vxvirt records the domain by: its UUID, else its name. */
  key: string;
  nics: DomainNic[];
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

/** The domain's <interface> elements, in document order. */
export function interfacesOf(root: XmlElement): XmlElement[] {
  const devices = firstChild(root, 'devices');
  return devices ? childElements(devices, 'interface') : [];
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

/**
 * The vxvirt networks a domain's NICs are on, in definition order.
 * A NIC matches by its source bridge first (a running domain's
 * `<interface type='network'>` reads as type='bridge' with both attributes),
 * and by its libvirt network name second.
 */
export function networksUsedBy(domain: DomainInfo, defs: readonly NetworkDefinition[]): NetworkDefinition[] {
  const used = new Set<NetworkDefinition>();
  for (const nic of domain.nics) {
    if (nic.type !== 'bridge' && nic.type !== 'network') continue;
    const match =
      (nic.bridge !== undefined && defs.find((d) => bridgeName(d.vni) === nic.bridge)) ||
      (nic.network !== undefined && defs.find((d) => d.name === nic.network)) ||
      undefined;
    if (match) used.add(match);
  }
  return defs.filter((d) => used.has(d));
}
