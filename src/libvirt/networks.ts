// libvirt networks, through virsh (the bindings have no network API): the
// network `vxvirt define-network` defines so that virt-install, virt-manager,
// cockpit and terraform offer NAME, read, listed and removed.
import { LibvirtError } from '../errors.ts';
import { fillTemplate, readTemplate, VXVIRT_XMLNS } from '../templates.ts';
import { bridgeName, type NetworkDefinition } from '../network-definition.ts';
import { attr, childElements, firstChild, localName, namespaceOf, parseXml, textContent } from '../xml.ts';
import { classifyVirshError, parseNameList } from './virsh-output.ts';
import { virsh, virshFailure, virshOk, withXmlFile } from './virsh.ts';

export interface LibvirtNetworkInfo {
  name: string;
  uuid?: string;
  /** The VNI vxvirt recorded in the network's metadata; undefined if vxvirt did not make it. */
  vni?: number;
  ours: boolean;
  active: boolean;
  autostart: boolean;
  /** Guest connections libvirt counts (active networks only). */
  connections: number;
  xml: string;
}

/** Read what `virsh net-dumpxml` says about a network. Pure; exported for tests. */
export function parseNetworkXml(xml: string): Omit<LibvirtNetworkInfo, 'active' | 'autostart'> {
  const root = parseXml(xml).root;
  const text = (name: string): string | undefined => {
    const el = firstChild(root, name);
    return el && textContent(xml, el).trim();
  };
  const metadata = firstChild(root, 'metadata');
  const mark = metadata
    ? childElements(metadata).find((e) => localName(e) === 'network' && namespaceOf(e) === VXVIRT_XMLNS)
    : undefined;
  const vni = mark ? attr(mark, 'vni') : undefined;
  const info: Omit<LibvirtNetworkInfo, 'active' | 'autostart'> = {
    name: text('name') ?? '',
    ours: mark !== undefined,
    connections: Number(attr(root, 'connections') ?? 0) || 0,
    xml,
  };
  const u = text('uuid');
  if (u) info.uuid = u;
  if (vni && /^\d+$/.test(vni)) info.vni = Number(vni);
  return info;
}

/** A libvirt network's state, or undefined if there is none of that name. */
export async function readLibvirtNetwork(name: string): Promise<LibvirtNetworkInfo | undefined> {
  const dump = await virsh(['net-dumpxml', '--network', name]);
  if (!dump.ok) {
    const f = classifyVirshError(dump.stderr);
    if (f.kind === 'no-network') return undefined;
    throw virshFailure(`reading libvirt network ${name}`, f);
  }
  const info = await virshOk(`reading libvirt network ${name}`, ['net-info', '--network', name]);
  const field = (label: string): string => (new RegExp(`^${label}:\\s*(.*)$`, 'mi').exec(info)?.[1] ?? '').trim();
  return { ...parseNetworkXml(dump.stdout), active: field('Active') === 'yes', autostart: field('Autostart') === 'yes' };
}

/**
 * Every libvirt network of this host (vxvirt's or not), as readLibvirtNetwork
 * reads one: three lists and one `net-dumpxml` each. A network removed while
 * it is being read is left out.
 */
export async function listLibvirtNetworks(): Promise<LibvirtNetworkInfo[]> {
  const all = parseNameList(await virshOk('listing the libvirt networks', ['net-list', '--all', '--name']));
  const active = new Set(parseNameList(await virshOk('listing the libvirt networks', ['net-list', '--name'])));
  const autostart = new Set(parseNameList(await virshOk('listing the libvirt networks', ['net-list', '--all', '--autostart', '--name'])));
  const out: LibvirtNetworkInfo[] = [];
  for (const name of all) {
    const dump = await virsh(['net-dumpxml', '--network', name]);
    if (!dump.ok) {
      const f = classifyVirshError(dump.stderr);
      if (f.kind === 'no-network') continue;
      throw virshFailure(`reading libvirt network ${name}`, f);
    }
    out.push({ ...parseNetworkXml(dump.stdout), active: active.has(name), autostart: autostart.has(name) });
  }
  return out;
}

/** The XML vxvirt defines for a network (templates/network.xml). */
export function libvirtNetworkXml(def: NetworkDefinition, uuid?: string): string {
  return `${fillTemplate(readTemplate('network.xml'), {
    name: def.name,
    uuid,
    xmlns: VXVIRT_XMLNS,
    vni: def.vni,
    bridge: bridgeName(def.vni),
  })}\n`;
}

export interface DefineNetworkResult {
  action: 'created' | 'updated' | 'unchanged';
  active: boolean;
  /** Something the caller should tell the user (one line), if any. */
  note?: string;
}

/**
 * Make libvirt hold a network NAME that puts guests on vxvirt's bridge:
 * `<forward mode='bridge'/>` and `<bridge name='vxbrN'/>`, autostarted and
 * started. Guests can then use
 * `<interface type='network'><source network='NAME'/></interface>`, and the
 * hook builds vxbrN before they start. Measured with libvirt 9.0: such a
 * network starts while vxbrN does not exist yet (only a guest's tap needs
 * it), and libvirt refuses an `<mtu>` in it ("mtu size only allowed in open,
 * route, nat, and isolated mode"), so the MTU is the bridge's, which the hook
 * sets; a guest learns it only from a `<mtu>` in its own <interface>.
 *
 * Idempotent: defining again updates the definition (same UUID). A libvirt
 * network of that name that vxvirt did not make is refused. A changed
 * definition of an active network is applied by restarting it when no guest
 * is connected; otherwise it applies on its next start (said in `note`).
 */
export async function defineLibvirtNetwork(def: NetworkDefinition): Promise<DefineNetworkResult> {
  const existing = await readLibvirtNetwork(def.name);
  if (existing && !existing.ours) {
    throw new LibvirtError(
      `libvirt already has a network ${def.name} that vxvirt did not define: choose another name, or skip the libvirt network with --no-libvirt`,
    );
  }
  // The existing UUID must be given: without one libvirt makes up a new one
  // and refuses ("network 'NAME' already exists with uuid …").
  const xml = libvirtNetworkXml(def, existing?.uuid);
  let action: DefineNetworkResult['action'] = 'created';
  if (existing) action = sameNetwork(existing.xml, xml) ? 'unchanged' : 'updated';
  if (action !== 'unchanged') {
    await withXmlFile(xml, (path) => virshOk(`defining libvirt network ${def.name}`, ['net-define', path]));
  }
  if (!existing?.autostart) await virshOk(`autostarting libvirt network ${def.name}`, ['net-autostart', '--network', def.name]);
  const result: DefineNetworkResult = { action, active: existing?.active ?? false };
  if (existing?.active && action === 'updated') {
    if (existing.connections > 0) {
      result.note = `libvirt network ${def.name} has ${existing.connections} guest connection(s): its new definition applies when it is restarted`;
      return result;
    }
    await virshOk(`restarting libvirt network ${def.name}`, ['net-destroy', '--network', def.name]);
    result.active = false;
  }
  if (!result.active) {
    await virshOk(`starting libvirt network ${def.name}`, ['net-start', '--network', def.name]);
    result.active = true;
  }
  return result;
}

/** Compare what vxvirt sets: bridge, forward mode, no MTU, VNI mark. */
function sameNetwork(currentXml: string, wantedXml: string): boolean {
  const facts = (xml: string): string => {
    const root = parseXml(xml).root;
    const bridge = firstChild(root, 'bridge');
    const forward = firstChild(root, 'forward');
    return JSON.stringify([
      bridge && attr(bridge, 'name'),
      forward && attr(forward, 'mode'),
      firstChild(root, 'mtu') !== undefined,
      parseNetworkXml(xml).vni,
    ]);
  };
  return facts(currentXml) === facts(wantedXml);
}

export interface UndefineNetworkResult {
  action: 'removed' | 'absent';
}

/**
 * Remove vxvirt's libvirt network NAME (stop it, then undefine it). Nothing
 * to do if there is none; a network vxvirt did not make, or one guests are
 * still connected to, is refused.
 */
export async function undefineLibvirtNetwork(name: string): Promise<UndefineNetworkResult> {
  const existing = await readLibvirtNetwork(name);
  if (!existing) return { action: 'absent' };
  if (!existing.ours) {
    throw new LibvirtError(`libvirt network ${name} was not defined by vxvirt: leaving it alone (skip it with --no-libvirt)`);
  }
  if (existing.active) {
    if (existing.connections > 0) {
      throw new LibvirtError(`libvirt network ${name} has ${existing.connections} guest connection(s): stop or detach those guests first`);
    }
    await virshOk(`stopping libvirt network ${name}`, ['net-destroy', '--network', name]);
  }
  await virshOk(`undefining libvirt network ${name}`, ['net-undefine', '--network', name]);
  return { action: 'removed' };
}
