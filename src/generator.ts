// Rewriting a libvirt domain's NICs onto a vxvirt network, losslessly: only
// the chosen <interface> elements and vxvirt's own metadata element change;
// every other byte of the document is kept (comments, CDATA, whitespace,
// quote style, entity spelling, hex values such as <wwn>0x5000c50015ea71ad</wwn>).
//
// Pure except for reading templates/interface.xml once.
//
// What a converted NIC looks like (libvirt's domaincommon.rng plus the checks
// libvirt makes when the domain starts, src/conf/domain_validate.c and
// src/qemu/qemu_validate.c):
//   - type='bridge' with <source bridge='vxbrN'/> (other <source> attributes
//     and children belong to the old type and go: e.g. a socket back end's
//     address and port, and udp's <local>);
//   - dropped, because libvirt refuses them on a port of a plain Linux bridge:
//     <virtualport> (802.1Qbg/Qbh are macvtap-only; openvswitch/midonet need
//     those switches, vxbrN is a Linux bridge), <vlan> ("vlan tag not
//     supported for this connection type" without an openvswitch port),
//     <ip>/<route> (guest-side addresses are only for type='user'),
//     <portForward> and <backend type='passt'> (passt is type='user' only),
//     <script>/<downscript> (QEMU runs scripts for type='ethernet' only),
//     <target managed='no'> (an unmanaged tap is type='ethernet' only);
//   - kept: <mac>, <model>, <address>, <boot>, <alias>, <driver>, <target>,
//     <guest>, <link>, <rom>, <acpi>, <bandwidth>, <tune>, <coalesce>,
//     <filterref>, <port>, <teaming>, <backend> (tap/vhost paths), comments…;
//   - <mtu size='…'/> = the network's MTU on a virtio NIC, so the guest learns
//     it from the device; on another model an existing <mtu> (the tap's MTU)
//     is set to it too, and none is added (libvirt then uses the bridge's).
//
// vxvirt records what it did in the domain's <metadata>:
//   <vxvirt:networks xmlns:vxvirt="https://vxvirt.dev/xmlns/1">
//     <vxvirt:interface mac="52:54:00:…" network="NAME" vni="N" added="yes"/>
//     <vxvirt:interface mac="…" network="NAME" vni="N">
//       <vxvirt:original>…the NIC's XML before vxvirt changed it, escaped…</vxvirt:original>
//     </vxvirt:interface>
//   </vxvirt:networks>
// An entry is keyed by the NIC's MAC. A NIC without a MAC (libvirt assigns one
// when the domain is defined) is keyed by its 0-based index among the
// domain's <interface> elements instead (index="N"); generating again once
// libvirt has assigned the MAC re-keys it by MAC. `detach` uses the entries
// to remove NICs vxvirt added and to put converted NICs back as they were.
import { devicesOf, interfacesOf, macOf, parseDomainXml, sourceOf } from './domain-xml.ts';
import { DomainXmlError, InternalError, UsageError } from './errors.ts';
import { bridgeName, type NetworkDefinition } from './network-definition.ts';
import { fillTemplate, readTemplate, VXVIRT_XMLNS } from './templates.ts';
import {
  applySplices,
  attr,
  childElements,
  escapeAttribute,
  escapeText,
  firstChild,
  indentBefore,
  localName,
  namespaceOf,
  prefixOf,
  parseXml,
  textContent,
  type Splice,
  type XmlDocument,
  type XmlElement,
} from './xml.ts';

const PREFIX = 'vxvirt';

/**
 * Interface types a Linux bridge port can replace: QEMU emulates the NIC, and
 * only its back end changes — to a tap on the bridge. The socket back ends
 * (mcast, udp, server, client) are such emulated NICs too.
 */
const CONVERTIBLE_TYPES = ['network', 'bridge', 'direct', 'user', 'ethernet', 'mcast', 'udp', 'server', 'client'] as const;
/**
 * Why the other types cannot (libvirt's docs/formatdomain.rst; QEMU's
 * command-line builder refuses the last three as "Unsupported net type").
 */
const NOT_A_TAP: Record<string, string> = {
  hostdev: 'a host device passed through (SR-IOV VF), no tap',
  vdpa: 'a vDPA device, no tap',
  vhostuser: "a vhost-user socket (e.g. OVS-DPDK's), no tap",
  null: 'not run by QEMU (VMware ESX only)',
  vds: 'not run by QEMU (VMware ESX only)',
  internal: 'not run by QEMU (VirtualBox only)',
};
const VIRTIO_MODELS = new Set(['virtio', 'virtio-transitional', 'virtio-non-transitional']);
const MAC_PATTERN = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/i;

/** Children a bridge interface cannot have (see the header). */
function isDroppedChild(child: XmlElement): boolean {
  switch (child.name) {
    case 'virtualport':
    case 'vlan':
    case 'ip':
    case 'route':
    case 'portForward':
    case 'script':
    case 'downscript':
      return true;
    case 'backend':
      return attr(child, 'type') === 'passt';
    case 'target':
      return attr(child, 'managed') === 'no';
    default:
      return false;
  }
}
/** Attributes of <interface> itself that only other types have. */
const DROPPED_INTERFACE_ATTRIBUTES = new Set(['managed']);

export interface GenerateOptions {
  network: NetworkDefinition;
  /** The overlay MTU; absent = leave the MTU to the bridge (and drop an existing <mtu>). */
  mtu?: number;
  /** Which NICs: MAC addresses or 0-based indexes among the domain's <interface> elements; absent = all. */
  interfaces?: readonly string[];
  /** Append a new virtio NIC instead of converting existing ones. */
  add?: boolean;
  /** MAC of the NIC `add` appends; absent = libvirt assigns one when the domain is defined. */
  mac?: string;
}

export interface NicInfo {
  index: number;
  type: string;
  mac?: string;
  model?: string;
  /** <source bridge>, if any. */
  bridge?: string;
  /** <mtu size>, if any. */
  mtu?: number;
  /** The vxvirt network the metadata records this NIC on, if any. */
  network?: string;
  added?: boolean;
}

interface Entry {
  mac?: string;
  index?: number;
  network: string;
  vni?: number;
  added?: boolean;
  original?: string;
  /** The entry's element as read, kept as is while the entry does not change. */
  raw?: string;
}

interface Domain {
  doc: XmlDocument;
  root: XmlElement;
  devices: XmlElement | undefined;
  nics: XmlElement[];
  metadata: XmlElement | undefined;
  /** vxvirt's element(s) in <metadata>; the first one is rewritten, any others removed. */
  ours: XmlElement[];
  entries: Entry[];
}

// ---- reading ------------------------------------------------------------

function parseDomain(xml: string): Domain {
  const doc = parseDomainXml(xml);
  const root = doc.root;
  if (root.name !== 'domain') throw new DomainXmlError(`domain XML: the root element is <${root.name}>, expected <domain>`);
  const devices = devicesOf(root);
  const nics = interfacesOf(root);
  const metadata = firstChild(root, 'metadata');
  const ours = metadata
    ? childElements(metadata).filter((e) => localName(e) === 'networks' && namespaceOf(e) === VXVIRT_XMLNS)
    : [];
  const entries: Entry[] = [];
  for (const el of ours) {
    for (const e of childElements(el)) {
      if (localName(e) !== 'interface' || namespaceOf(e) !== VXVIRT_XMLNS) continue;
      const network = attr(e, 'network');
      if (!network) continue;
      const entry: Entry = { network };
      const mac = attr(e, 'mac');
      const index = attr(e, 'index');
      const vni = attr(e, 'vni');
      if (mac && MAC_PATTERN.test(mac)) entry.mac = mac.toLowerCase();
      else if (index && /^\d+$/.test(index)) entry.index = Number(index);
      else continue;
      if (vni && /^\d+$/.test(vni)) entry.vni = Number(vni);
      if (attr(e, 'added') === 'yes') entry.added = true;
      const original = childElements(e).find((o) => localName(o) === 'original' && namespaceOf(o) === VXVIRT_XMLNS);
      if (original) entry.original = textContent(doc.source, original);
      entry.raw = doc.source.slice(e.start, e.end);
      entries.push(entry);
    }
  }
  return { doc, root, devices, nics, metadata, ours, entries };
}

const modelOf = (nic: XmlElement): string | undefined => {
  const model = firstChild(nic, 'model');
  return model ? attr(model, 'type') : undefined;
};

const entryFor = (entries: readonly Entry[], nic: XmlElement, index: number): Entry | undefined => {
  const mac = macOf(nic);
  return entries.find((e) => (mac !== undefined && e.mac === mac) || (e.mac === undefined && e.index === index));
};

function describeNic(nic: XmlElement, index: number): string {
  const mac = macOf(nic);
  return `interface ${index}${mac ? ` (${mac})` : ''} of type '${attr(nic, 'type') ?? ''}'`;
}

/** describeNic, and why its type cannot become a bridge port (when vxvirt knows). */
function describeRefusal(nic: XmlElement, index: number): string {
  const why = NOT_A_TAP[attr(nic, 'type') ?? ''];
  return `${describeNic(nic, index)}${why ? ` (${why})` : ''}`;
}

/** The domain's NICs as vxvirt sees them (for the CLI and the hot-plug path). */
export function listInterfaces(xml: string): NicInfo[] {
  const d = parseDomain(xml);
  return d.nics.map((nic, index) => {
    const info: NicInfo = { index, type: attr(nic, 'type') ?? '' };
    const mac = macOf(nic);
    const model = modelOf(nic);
    const bridge = sourceOf(nic, 'bridge');
    const mtuEl = firstChild(nic, 'mtu');
    const mtu = mtuEl ? Number(attr(mtuEl, 'size')) : undefined;
    const entry = entryFor(d.entries, nic, index);
    if (mtu !== undefined && Number.isInteger(mtu)) info.mtu = mtu;
    if (mac) info.mac = mac;
    if (model) info.model = model;
    if (bridge) info.bridge = bridge;
    if (entry) info.network = entry.network;
    if (entry?.added) info.added = true;
    return info;
  });
}

/** The text of one <interface> element (by index), as it is in `xml`. */
export function interfaceXml(xml: string, index: number): string {
  const d = parseDomain(xml);
  const nic = d.nics[index];
  if (!nic) throw new InternalError(`no interface ${index} in the domain XML`);
  return d.doc.source.slice(nic.start, nic.end);
}

// ---- selection ----------------------------------------------------------

/** The indexes of the NICs `selectors` (MACs or indexes; none = every NIC) choose, as generate() chooses them. */
export function selectInterfaces(xml: string, selectors: readonly string[] | undefined): number[] {
  return select(parseDomain(xml), selectors);
}

function select(d: Domain, selectors: readonly string[] | undefined): number[] {
  if (selectors === undefined || selectors.length === 0) {
    if (d.nics.length === 0) {
      throw new DomainXmlError('the domain has no <interface>: use --add to add one');
    }
    return d.nics.map((_, i) => i);
  }
  const chosen: number[] = [];
  for (const raw of selectors) {
    const s = raw.trim();
    let index: number;
    if (/^\d+$/.test(s)) {
      index = Number(s);
      if (index >= d.nics.length) {
        throw new UsageError(`--interface ${raw}: the domain has ${d.nics.length} interface(s), indexes 0 to ${d.nics.length - 1}`);
      }
    } else if (MAC_PATTERN.test(s)) {
      index = d.nics.findIndex((n) => macOf(n) === s.toLowerCase());
      if (index < 0) {
        const macs = d.nics.map(macOf).filter(Boolean);
        throw new UsageError(`--interface ${raw}: no interface has this MAC (the domain's MACs: ${macs.join(', ') || 'none'})`);
      }
    } else {
      throw new UsageError(`--interface ${JSON.stringify(raw)}: must be a MAC address (52:54:00:12:34:56) or a 0-based interface index`);
    }
    if (!chosen.includes(index)) chosen.push(index);
  }
  return chosen.sort((a, b) => a - b);
}

// ---- writing ------------------------------------------------------------

const quoteOf = (el: XmlElement): '"' | "'" => el.attributes[0]?.quote ?? "'";

/** Indentation of `el`'s child elements, derived from what is there. */
function childIndent(src: string, el: XmlElement): string {
  for (const c of el.children) {
    if (c.kind !== 'element') continue;
    const indent = indentBefore(src, c.start);
    if (indent !== undefined) return indent;
  }
  const own = indentBefore(src, el.start) ?? '';
  return own + unitIndent(src, el);
}

/** One level of indentation: what the document uses between `el` and its parent, else two spaces. */
function unitIndent(src: string, el: XmlElement): string {
  const own = indentBefore(src, el.start);
  const parent = el.parent ? indentBefore(src, el.parent.start) : undefined;
  if (own !== undefined && parent !== undefined && own.startsWith(parent) && own.length > parent.length) {
    return own.slice(parent.length);
  }
  return '  ';
}

/** Remove an element together with the line break and indentation in front of it. */
function removal(src: string, el: XmlElement): Splice {
  const lineStart = src.lastIndexOf('\n', el.start - 1);
  const lead = src.slice(lineStart + 1, el.start);
  if (lineStart < 0 || !/^[ \t]*$/.test(lead)) return { start: el.start, end: el.end, text: '' };
  return { start: src[lineStart - 1] === '\r' ? lineStart - 1 : lineStart, end: el.end, text: '' };
}

/**
 * Put `text` into `el` on a line of its own at `indent`: right after `after`
 * (one of its children) if given, else at the end of its content, opening a
 * self-closing `el` and closing it on a line at its own indentation.
 */
function insertion(src: string, el: XmlElement, after: XmlElement | undefined, indent: string, text: string): Splice {
  if (after) return { start: after.end, end: after.end, text: `\n${indent}${text}` };
  const close = indentBefore(src, el.start) ?? '';
  if (el.selfClosing) return { start: el.start, end: el.end, text: `<${el.name}>\n${indent}${text}\n${close}</${el.name}>` };
  const kept = src.slice(el.startTagEnd, el.contentEnd).trimEnd();
  return { start: el.startTagEnd, end: el.contentEnd, text: `${kept}\n${indent}${text}\n${close}` };
}

function emptyElement(name: string, attributes: ReadonlyArray<[string, string]>, q: '"' | "'"): string {
  return `<${name}${attributes.map(([k, v]) => ` ${k}=${q}${escapeAttribute(v, q)}${q}`).join('')}/>`;
}

function checkMtu(mtu: number | undefined): void {
  if (mtu !== undefined && (!Number.isInteger(mtu) || mtu < 68 || mtu > 65535)) {
    throw new UsageError(`MTU ${mtu}: must be an integer from 68 to 65535`);
  }
}

/** The new text of one <interface> element. */
function convertNic(src: string, nic: XmlElement, bridge: string, mtu: number | undefined): string {
  const q = quoteOf(nic);
  const local: Splice[] = [];
  const rel = (s: Splice): Splice => ({ start: s.start - nic.start, end: s.end - nic.start, text: s.text });

  // Start tag: type='bridge', attributes of other types dropped.
  const typeAttr = nic.attributes.find((a) => a.name === 'type');
  const newType = `type=${typeAttr?.quote ?? q}bridge${typeAttr?.quote ?? q}`;
  if (typeAttr) local.push({ start: typeAttr.start, end: typeAttr.end, text: newType });
  else local.push({ start: nic.start + '<interface'.length, end: nic.start + '<interface'.length, text: ` ${newType}` });
  for (const a of nic.attributes) {
    if (!DROPPED_INTERFACE_ATTRIBUTES.has(a.name)) continue;
    let start = a.start;
    while (start > nic.start && /[ \t\r\n]/.test(src[start - 1] ?? '')) start--;
    local.push({ start, end: a.end, text: '' });
  }

  const indent = childIndent(src, nic);
  const sourceText = emptyElement('source', [['bridge', bridge]], q);
  const virtio = VIRTIO_MODELS.has(modelOf(nic) ?? '');
  const children = childElements(nic);
  let sourceDone = false;
  let mtuDone = false;
  for (const child of children) {
    if (child.name === 'source') {
      if (sourceDone) local.push(removal(src, child));
      else local.push({ start: child.start, end: child.end, text: sourceText });
      sourceDone = true;
    } else if (child.name === 'mtu') {
      if (mtuDone || mtu === undefined) local.push(removal(src, child));
      else local.push({ start: child.start, end: child.end, text: emptyElement('mtu', [['size', String(mtu)]], q) });
      mtuDone = true;
    } else if (isDroppedChild(child)) {
      local.push(removal(src, child));
    }
  }
  const additions: Array<{ after: XmlElement | undefined; text: string }> = [];
  if (!sourceDone) additions.push({ after: firstChild(nic, 'mac'), text: sourceText });
  if (!mtuDone && virtio && mtu !== undefined) {
    additions.push({ after: firstChild(nic, 'model'), text: emptyElement('mtu', [['size', String(mtu)]], q) });
  }

  if (children.length === 0) {
    // <interface type='user'/> or one with no child elements: write the content out.
    const closeIndent = indentBefore(src, nic.start) ?? '';
    const inner = additions.map((a) => `\n${indent}${a.text}`).join('');
    if (nic.selfClosing) {
      const slash = src.lastIndexOf('/', nic.startTagEnd - 1);
      let start = slash;
      while (/[ \t\r\n]/.test(src[start - 1] ?? '')) start--;
      local.push({ start, end: nic.end, text: `>${inner}\n${closeIndent}</interface>` });
    } else {
      const kept = src.slice(nic.startTagEnd, nic.contentEnd).trimEnd();
      local.push({ start: nic.startTagEnd, end: nic.contentEnd, text: `${kept}${inner}\n${closeIndent}` });
    }
  } else {
    for (const a of additions) {
      const at = a.after ? a.after.end : nic.startTagEnd;
      local.push({ start: at, end: at, text: `\n${indent}${a.text}` });
    }
  }
  return applySplices(src.slice(nic.start, nic.end), local.map(rel));
}

let interfaceTemplate: string | undefined;


function newNicText(bridge: string, mtu: number | undefined, mac: string | undefined, indent: string, unit: string, q: '"' | "'"): string {
  interfaceTemplate ??= readTemplate('interface.xml');
  const text = fillTemplate(interfaceTemplate, { mac, bridge, mtu }, q);
  // The template is indented by two spaces per level; use the document's.
  return text
    .split('\n')
    .map((line) => {
      const depth = Math.floor((/^ */.exec(line)?.[0].length ?? 0) / 2);
      return indent + unit.repeat(depth) + line.trimStart();
    })
    .join('\n')
    .trimStart();
}

function renderEntries(entries: readonly Entry[], indent: string, unit: string, q: '"' | "'", prefix = PREFIX): string {
  const p = prefix ? `${prefix}:` : '';
  const lines = [`<${p}networks xmlns${prefix ? `:${prefix}` : ''}=${q}${VXVIRT_XMLNS}${q}>`];
  for (const e of entries) {
    if (e.raw !== undefined) {
      lines.push(`${indent}${unit}${e.raw}`);
      continue;
    }
    const attrs: Array<[string, string]> = [];
    if (e.mac !== undefined) attrs.push(['mac', e.mac]);
    else attrs.push(['index', String(e.index)]);
    attrs.push(['network', e.network]);
    if (e.vni !== undefined) attrs.push(['vni', String(e.vni)]);
    if (e.added) attrs.push(['added', 'yes']);
    const open = attrs.map(([k, v]) => ` ${k}=${q}${escapeAttribute(v, q)}${q}`).join('');
    if (e.original === undefined) {
      lines.push(`${indent}${unit}<${p}interface${open}/>`);
    } else {
      lines.push(`${indent}${unit}<${p}interface${open}>`);
      lines.push(`${indent}${unit}${unit}<${p}original>${escapeText(e.original)}</${p}original>`);
      lines.push(`${indent}${unit}</${p}interface>`);
    }
  }
  lines.push(`${indent}</${p}networks>`);
  return lines.join('\n');
}

/** Splices that make vxvirt's metadata element hold `entries` (and remove it when empty). */
function metadataSplices(d: Domain, entries: readonly Entry[]): Splice[] {
  const src = d.doc.source;
  const q = quoteOf(d.root);
  const unit = unitIndent(src, firstChild(d.root, 'name') ?? d.root) || '  ';
  const splices: Splice[] = [];
  const [first, ...extra] = d.ours;
  for (const el of extra) splices.push(removal(src, el));
  if (entries.length === 0) {
    if (!first || !d.metadata) return splices;
    // A <metadata> with nothing but vxvirt's element in it goes with it.
    const othersLeft = d.metadata.children.some(
      (c) => !d.ours.includes(c as XmlElement) && !(c.kind === 'text' && src.slice(c.start, c.end).trim() === ''),
    );
    return othersLeft ? [...splices, removal(src, first)] : [removal(src, d.metadata)];
  }
  if (first) {
    const indent = indentBefore(src, first.start) ?? '';
    const ownQuote = first.attributes[0]?.quote ?? q;
    splices.push({ start: first.start, end: first.end, text: renderEntries(entries, indent, unit, ownQuote, prefixOf(first)) });
    return splices;
  }
  if (d.metadata) {
    const md = d.metadata;
    const indent = childIndent(src, md);
    splices.push(insertion(src, md, childElements(md).at(-1), indent, renderEntries(entries, indent, unit, q)));
    return splices;
  }
  // No <metadata>: libvirt writes it after name, uuid, genid, title and description.
  const indent = childIndent(src, d.root);
  const anchor = ['name', 'uuid', 'genid', 'title', 'description']
    .map((n) => firstChild(d.root, n))
    .filter((e): e is XmlElement => e !== undefined)
    .sort((a, b) => b.end - a.end)[0];
  const text = `<metadata>\n${indent}${unit}${renderEntries(entries, indent + unit, unit, q)}\n${indent}</metadata>`;
  const at = anchor ? anchor.end : d.root.startTagEnd;
  if (d.root.selfClosing) throw new DomainXmlError('domain XML: <domain/> is empty');
  splices.push({ start: at, end: at, text: `\n${indent}${text}` });
  return splices;
}

/** Entries re-keyed: an index-keyed entry whose NIC now has a MAC is keyed by the MAC. */
function rekey(d: Domain): Entry[] {
  return d.entries.map((e) => {
    if (e.mac !== undefined || e.index === undefined) return e;
    const nic = d.nics[e.index];
    const mac = nic ? macOf(nic) : undefined;
    if (!mac) return e;
    const { index: _index, raw: _raw, ...rest } = e;
    return { ...rest, mac };
  });
}

/**
 * Put the chosen NICs of a domain on `network` (or append a new NIC with
 * `add`) and record it in vxvirt's metadata. Everything else in `xml` is kept
 * byte for byte. Running it again on its output changes nothing.
 */
export function generate(xml: string, opts: GenerateOptions): string {
  checkMtu(opts.mtu);
  const d = parseDomain(xml);
  const src = d.doc.source;
  const def = opts.network;
  const bridge = bridgeName(def.vni);
  const splices: Splice[] = [];
  let entries = rekey(d);
  const record = (key: { mac?: string; index?: number }, entry: Omit<Entry, 'mac' | 'index'>): void => {
    const existing = entries.findIndex(
      (e) => (key.mac !== undefined && e.mac === key.mac) || (key.index !== undefined && e.mac === undefined && e.index === key.index),
    );
    const full: Entry = key.mac !== undefined ? { mac: key.mac, ...entry } : { index: key.index as number, ...entry };
    if (existing >= 0 && sameEntry(entries[existing] as Entry, full)) return;
    if (existing >= 0) entries = entries.map((e, i) => (i === existing ? full : e));
    else entries = [...entries, full];
  };

  if (opts.add) {
    if (opts.interfaces && opts.interfaces.length > 0) {
      throw new UsageError(`--interface ${opts.interfaces.join(', ')} cannot be combined with --add: --add appends a new NIC`);
    }
    if (!d.devices) throw new DomainXmlError('domain XML has no <devices> element to add an interface to');
    const mac = opts.mac?.toLowerCase();
    if (mac !== undefined) {
      if (!MAC_PATTERN.test(mac)) throw new UsageError(`MAC ${JSON.stringify(opts.mac)}: must look like 52:54:00:12:34:56`);
      const clash = d.nics.findIndex((n) => macOf(n) === mac);
      if (clash >= 0) throw new UsageError(`MAC ${mac}: interface ${clash} already has it`);
    }
    const devices = d.devices;
    const indent = childIndent(src, devices);
    const unit = unitIndent(src, d.nics[0] ?? childElements(devices)[0] ?? devices) || '  ';
    const text = newNicText(bridge, opts.mtu, mac, indent, unit, quoteOf(d.nics.at(-1) ?? d.root));
    splices.push(insertion(src, devices, d.nics.at(-1), indent, text));
    record(mac !== undefined ? { mac } : { index: d.nics.length }, { network: def.name, vni: def.vni, added: true });
  } else {
    const chosen = select(d, opts.interfaces);
    const refused = chosen.filter((i) => !(CONVERTIBLE_TYPES as readonly string[]).includes(attr(d.nics[i] as XmlElement, 'type') ?? ''));
    if (refused.length > 0) {
      const what = refused.map((i) => describeRefusal(d.nics[i] as XmlElement, i)).join(', ');
      const hint = opts.interfaces?.length ? '' : '; choose the others with --interface';
      throw new DomainXmlError(
        `${what} cannot become a port of bridge ${bridge}: only types ${CONVERTIBLE_TYPES.join(', ')} can${hint}`,
      );
    }
    for (const i of chosen) {
      const nic = d.nics[i] as XmlElement;
      const before = src.slice(nic.start, nic.end);
      const after = convertNic(src, nic, bridge, opts.mtu);
      if (after !== before) splices.push({ start: nic.start, end: nic.end, text: after });
      const previous = entryFor(entries, nic, i);
      const entry: Omit<Entry, 'mac' | 'index'> = { network: def.name, vni: def.vni };
      if (previous?.added) entry.added = true;
      else if (previous?.original !== undefined) entry.original = previous.original;
      else if (!isOurs(nic, bridge, previous)) entry.original = before;
      const mac = macOf(nic);
      record(mac !== undefined ? { mac } : { index: i }, entry);
    }
  }

  if (!sameEntries(entries, d.entries) || d.ours.length > 1) splices.push(...metadataSplices(d, entries));
  return splice(src, splices);
}

/** A NIC already on this bridge without an entry saying where it came from: vxvirt has nothing to restore. */
function isOurs(nic: XmlElement, bridge: string, previous: Entry | undefined): boolean {
  if (previous) return false;
  return attr(nic, 'type') === 'bridge' && sourceOf(nic, 'bridge') === bridge;
}

/** Apply splices, writing new line breaks in the document's own style (CRLF if it uses CRLF). */
function splice(src: string, splices: readonly Splice[]): string {
  if (!src.includes('\r\n')) return applySplices(src, splices);
  return applySplices(src, splices.map((s) => ({ ...s, text: s.text.replace(/\r?\n/g, '\r\n') })));
}

function sameEntry(a: Entry, b: Entry): boolean {
  return a.mac === b.mac && a.index === b.index && a.network === b.network && a.vni === b.vni && !!a.added === !!b.added && a.original === b.original;
}

/** Unchanged entries are the very objects read from the document. */
function sameEntries(a: readonly Entry[], b: readonly Entry[]): boolean {
  return a.length === b.length && a.every((e, i) => e === b[i]);
}

export interface DetachResult {
  xml: string;
  /** NICs removed (vxvirt added them): their XML before removal, for hot-unplug. */
  removed: Array<{ index: number; mac?: string; network: string; xml: string }>;
  /** NICs put back as they were before vxvirt converted them. */
  restored: Array<{ index: number; mac?: string; network: string; xml: string }>;
  /** Entries whose NIC is no longer in the domain; dropped from the metadata. */
  stale: Array<{ mac?: string; index?: number; network: string }>;
}

/**
 * Undo `generate` for the NICs vxvirt's metadata records (only those on
 * `network`, if given): NICs vxvirt added are removed, converted NICs get
 * their original XML back, and their metadata entries go. A vxvirt NIC the
 * metadata has no original for (converted by hand, or the entry was edited)
 * is refused rather than guessed.
 */
export function detach(xml: string, opts: { network?: string } = {}): DetachResult {
  const d = parseDomain(xml);
  const src = d.doc.source;
  const entries = rekey(d);
  const result: DetachResult = { xml, removed: [], restored: [], stale: [] };
  const splices: Splice[] = [];
  const kept: Entry[] = [];
  for (const e of entries) {
    if (opts.network !== undefined && e.network !== opts.network) {
      kept.push(e);
      continue;
    }
    const index = e.mac !== undefined ? d.nics.findIndex((n) => macOf(n) === e.mac) : (e.index as number);
    const nic = index >= 0 ? d.nics[index] : undefined;
    const key = e.mac !== undefined ? { mac: e.mac } : {};
    if (!nic) {
      result.stale.push({ ...key, ...(e.mac === undefined ? { index: e.index as number } : {}), network: e.network });
      continue;
    }
    const current = src.slice(nic.start, nic.end);
    if (e.added) {
      splices.push(removal(src, nic));
      result.removed.push({ index, ...key, network: e.network, xml: current });
    } else if (e.original !== undefined) {
      let original = e.original;
      // The original may have had no MAC; keep the one libvirt assigned since.
      const mac = macOf(nic);
      const restoredMac = macOfText(original);
      if (mac && !restoredMac) original = withMac(original, mac);
      splices.push({ start: nic.start, end: nic.end, text: original });
      result.restored.push({ index, ...key, network: e.network, xml: original });
    } else {
      throw new DomainXmlError(
        `${describeNic(nic, index)} is on vxvirt network ${e.network} but its metadata keeps no original to restore: edit it with virsh edit`,
      );
    }
  }
  if (opts.network !== undefined && kept.length === entries.length) {
    throw new UsageError(`--network ${opts.network}: no NIC of this domain is on it (vxvirt metadata: ${[...new Set(entries.map((e) => e.network))].join(', ') || 'none'})`);
  }
  splices.push(...metadataSplices(d, kept));
  result.xml = splice(src, splices);
  return result;
}

function macOfText(nicXml: string): string | undefined {
  try {
    const el = parseXml(nicXml).root;
    return macOf(el);
  } catch {
    return undefined;
  }
}

/** Insert <mac address='…'/> as the first child of an <interface> element's text. */
function withMac(nicXml: string, mac: string): string {
  const doc = parseXml(nicXml);
  const el = doc.root;
  const q = quoteOf(el);
  const text = emptyElement('mac', [['address', mac]], q);
  if (el.selfClosing) {
    return `${nicXml.slice(0, nicXml.lastIndexOf('/'))}>${text}</interface>`;
  }
  const firstEl = childElements(el)[0];
  const indentText = firstEl ? nicXml.slice(el.startTagEnd, firstEl.start) : '';
  return applySplices(nicXml, [{ start: el.startTagEnd, end: el.startTagEnd, text: `${indentText || ''}${text}` }]);
}

/**
 * An <interface> element's text for a hot-plug or live update: without
 * <address> and <alias>, which libvirt fills in from the running device (or
 * picks) rather than refusing a mismatch with the live configuration.
 */
export function liveInterfaceXml(nicXml: string, opts: { keepMtu?: number | null } = {}): string {
  const doc = parseXml(nicXml);
  const el = doc.root;
  const splices: Splice[] = [];
  for (const c of childElements(el)) {
    if (c.name === 'address' || c.name === 'alias') splices.push(removal(nicXml, c));
  }
  // libvirt cannot change a running NIC's MTU ("cannot modify MTU"): an update
  // must carry the MTU the device has (keepMtu; null = it has none).
  if (opts.keepMtu !== undefined) {
    const mtuEl = firstChild(el, 'mtu');
    const q = quoteOf(el);
    if (opts.keepMtu === null) {
      if (mtuEl) splices.push(removal(nicXml, mtuEl));
    } else if (mtuEl) {
      splices.push({ start: mtuEl.start, end: mtuEl.end, text: emptyElement('mtu', [['size', String(opts.keepMtu)]], q) });
    } else {
      const after = firstChild(el, 'model') ?? childElements(el).at(-1);
      const at = after ? after.end : el.startTagEnd;
      splices.push({ start: at, end: at, text: `\n${childIndent(nicXml, el)}${emptyElement('mtu', [['size', String(opts.keepMtu)]], q)}` });
    }
  }
  return applySplices(nicXml, splices);
}
