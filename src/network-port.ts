// Reading what libvirt's network hook gets on stdin for `port-created` and
// `port-deleted` (bridge_driver.c, networkRunHook):
//
//   <hookData>
//     <network> <name>NET</name> … <bridge name='vxbr42'/> … </network>
//     <networkport>
//       <uuid>PORT-UUID</uuid>
//       <owner> <name>DOMAIN</name> <uuid>DOMAIN-UUID</uuid> </owner>
//       <mac address='52:54:00:…'/>
//       <plug type='bridge' bridge='vxbr42' …/>
//     </networkport>
//   </hookData>
//
// Pure, on xml.ts like the domain reader (the same limits on the input).
import { DomainXmlError } from './errors.ts';
import { attr, firstChild, namespaceOf, parseXml, textContent, XmlSyntaxError, type XmlDocument, type XmlElement } from './xml.ts';

export interface NetworkPort {
  /** The libvirt network's name. */
  network: string;
  /** The bridge the port is plugged into (the port's <plug bridge=…>, else the network's <bridge name=…>). */
  bridge?: string;
  /** The domain the port belongs to. */
  owner: { name: string; uuid?: string };
  /** What vxvirt records the domain by, as the qemu hook does: its UUID, else its name. */
  key: string;
  /** Lower case. */
  mac?: string;
}

const textOf = (src: string, el: XmlElement | undefined): string | undefined => (el && textContent(src, el).trim()) || undefined;

export function readNetworkPort(xml: string): NetworkPort {
  const what = 'network hook data';
  let doc: XmlDocument;
  try {
    doc = parseXml(xml);
  } catch (err) {
    if (err instanceof XmlSyntaxError) throw new DomainXmlError(`${what} is not well-formed: ${err.message}`);
    throw err;
  }
  const root = doc.root;
  if (root.name !== 'hookData' || namespaceOf(root) !== '') throw new DomainXmlError(`${what} has no <hookData> root element (found <${root.name}>)`);
  const network = firstChild(root, 'network');
  const port = firstChild(root, 'networkport');
  if (!network) throw new DomainXmlError(`${what} has no <network>`);
  if (!port) throw new DomainXmlError(`${what} has no <networkport>`);
  const name = textOf(xml, firstChild(network, 'name'));
  if (!name) throw new DomainXmlError(`${what}: <network> has no <name>`);
  const owner = firstChild(port, 'owner');
  const ownerName = textOf(xml, owner && firstChild(owner, 'name'));
  if (!owner || !ownerName) throw new DomainXmlError(`${what}: <networkport> has no <owner> with a <name>`);
  const ownerUuid = textOf(xml, firstChild(owner, 'uuid'))?.toLowerCase();
  const macEl = firstChild(port, 'mac');
  const mac = (macEl && attr(macEl, 'address')?.toLowerCase()) || undefined;
  const plug = firstChild(port, 'plug');
  const netBridge = firstChild(network, 'bridge');
  const bridge = (plug && attr(plug, 'bridge')) || (netBridge && attr(netBridge, 'name')) || undefined;
  return {
    network: name,
    ...(bridge ? { bridge } : {}),
    owner: { name: ownerName, ...(ownerUuid ? { uuid: ownerUuid } : {}) },
    key: ownerUuid ?? ownerName,
    ...(mac ? { mac } : {}),
  };
}
