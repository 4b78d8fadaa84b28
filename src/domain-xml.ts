// Reading a domain's NICs, for the hook: which vxvirt networks a domain uses.
// Pure. The lossless rewrite of domain XML lives in generator.ts; this reader
// only needs a few attributes and must be cheap, since it runs on every start.
import { XMLParser } from 'fast-xml-parser';
import { DomainXmlError } from './errors.ts';
import { bridgeName, type NetworkDefinition } from './network-definition.ts';

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

type Node = Record<string, unknown>;

const parser = new XMLParser({
  ignoreAttributes: false,
  attributeNamePrefix: '',
  parseTagValue: false,
  parseAttributeValue: false,
  // Only <interface> can repeat where we look; everything else is read as found.
  isArray: (tagName) => tagName === 'interface',
});

const text = (v: unknown): string | undefined => {
  if (typeof v === 'string') return v.trim();
  if (v && typeof v === 'object' && typeof (v as Node)['#text'] === 'string') return ((v as Node)['#text'] as string).trim();
  return undefined;
};
const attr = (node: unknown, name: string): string | undefined => {
  if (!node || typeof node !== 'object') return undefined;
  const v = (node as Node)[name];
  return typeof v === 'string' ? v : undefined;
};

export function readDomain(xml: string): DomainInfo {
  let doc: Node;
  try {
    doc = parser.parse(xml, true) as Node;
  } catch (err) {
    const detail = typeof err === 'object' && err && 'err' in err ? JSON.stringify((err as { err: unknown }).err) : String(err);
    throw new DomainXmlError(`domain XML is not well-formed: ${detail}`);
  }
  if (!('domain' in doc)) throw new DomainXmlError('domain XML has no <domain> root element');
  // An empty element parses as ''.
  const domain = (typeof doc.domain === 'object' && doc.domain !== null ? doc.domain : {}) as Node;
  const name = text(domain.name);
  if (!name) throw new DomainXmlError('domain XML has no <name>');
  const uuid = text(domain.uuid) || undefined;
  const devices = domain.devices as Node | undefined;
  const rawNics = (devices && typeof devices === 'object' ? (devices.interface as Node[] | undefined) : undefined) ?? [];
  const nics = rawNics.map((n): DomainNic => {
    const nic: DomainNic = { type: attr(n, 'type') ?? '' };
    const source = n.source;
    const bridge = attr(source, 'bridge');
    const network = attr(source, 'network');
    const mac = attr(n.mac, 'address');
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
