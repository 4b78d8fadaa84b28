// Reading a domain's NICs, for the hook: which vxvirt networks a domain uses.
// Pure. It shares xml.ts with the generator (the lossless rewrite), a small
// reader that keeps the hook's bundle light: it runs on every VM start.
import { DomainXmlError } from './errors.ts';
import { bridgeName, type NetworkDefinition } from './network-definition.ts';
import { attr, childElements, firstChild, parseXml, textContent, XmlSyntaxError, type XmlElement } from './xml.ts';

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

export function readDomain(xml: string): DomainInfo {
  let root: XmlElement;
  try {
    root = parseXml(xml).root;
  } catch (err) {
    if (err instanceof XmlSyntaxError) throw new DomainXmlError(`domain XML is not well-formed: ${err.message}`);
    throw err;
  }
  if (root.name !== 'domain') throw new DomainXmlError(`domain XML has no <domain> root element (found <${root.name}>)`);
  const name = textOf(xml, firstChild(root, 'name'));
  if (!name) throw new DomainXmlError('domain XML has no <name>');
  const uuid = textOf(xml, firstChild(root, 'uuid'));
  const devices = firstChild(root, 'devices');
  const nics = (devices ? childElements(devices, 'interface') : []).map((n): DomainNic => {
    const nic: DomainNic = { type: attr(n, 'type') ?? '' };
    const source = firstChild(n, 'source');
    const macEl = firstChild(n, 'mac');
    const bridge = source && attr(source, 'bridge');
    const network = source && attr(source, 'network');
    const mac = macEl && attr(macEl, 'address');
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
