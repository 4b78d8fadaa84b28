// The only module that talks to libvirt (the hook never imports it: a hook
// that calls back into libvirtd deadlocks it).
//
//  - Domains go through the libvirt bindings @unraid/libvirt, an optional
//    dependency loaded on first use: installs without libvirt-dev still work,
//    and the commands that need it say what is missing.
//  - Networks and hot-plug go through `virsh` (the bindings have no network
//    or device API).
//
// Both use LIBVIRT_DEFAULT_URI when set, else qemu:///system.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { LibvirtError, NotFoundError, oneLine, ToolError } from './errors.ts';
import { fillTemplate, readTemplate, VXVIRT_XMLNS } from './generator.ts';
import { bridgeName, type NetworkDefinition } from './network-definition.ts';
import { attr, childElements, firstChild, localName, namespaceOf, parseXml, textContent } from './xml.ts';

const BINDINGS_PACKAGE = '@unraid/libvirt';
const BINDINGS_VERSION = '2.2.1';

const libvirtUri = (): string => process.env.LIBVIRT_DEFAULT_URI || 'qemu:///system';

// ---- the bindings -------------------------------------------------------

/** The part of @unraid/libvirt vxvirt uses. */
interface BindingDomain {
  getXMLDesc(flags?: number): Promise<string>;
  getName(): Promise<string>;
  getUUIDString(): Promise<string>;
  getID(): Promise<number | null>;
}
interface BindingHypervisor {
  connectOpen(): Promise<void>;
  connectClose(): Promise<void>;
  domainLookupByName(name: string): Promise<BindingDomain>;
  connectListAllDomains(flags?: number): Promise<BindingDomain[]>;
  domainDefineXML(xml: string): Promise<BindingDomain>;
}
interface Bindings {
  Hypervisor: new (options: { uri: string }) => BindingHypervisor;
}

// virDomainXMLFlags: SECURE keeps passwords (graphics, secrets) in the XML we
// define back; INACTIVE gives the persistent definition, not the live one.
const XML_SECURE = 1;
const XML_INACTIVE = 2;
// virConnectListAllDomainsFlags: ACTIVE = running or paused (a guest with a tap).
const LIST_ACTIVE = 1;

/**
 * Load the bindings, or fail with one line saying how to get them; `load`
 * is replaceable for tests. Each call imports again: Node's module loader
 * keeps a loaded module, and retries one that failed.
 */
export function loadBindings(load: () => Promise<unknown> = importBindings): Promise<Bindings> {
  return load().then(
    (mod) => {
      const m = mod as Partial<Bindings> & { default?: Partial<Bindings> };
      const Hypervisor = m.Hypervisor ?? m.default?.Hypervisor;
      if (typeof Hypervisor !== 'function') throw new Error('it has no Hypervisor class');
      return { Hypervisor };
    },
    (err: unknown) => {
      throw new LibvirtError(
        `the libvirt bindings ${BINDINGS_PACKAGE} are not installed or did not build (${oneLine(err)}): install libvirt-dev, python3 and g++, then \`npm install ${BINDINGS_PACKAGE}@${BINDINGS_VERSION}\` where vxvirt is installed; or use \`vxvirt generate\` and \`virsh define\``,
      );
    },
  );
}

function importBindings(): Promise<unknown> {
  // A variable specifier keeps bundlers from trying to inline the native module.
  const specifier = BINDINGS_PACKAGE;
  return import(specifier);
}

function libvirtFailure(what: string, err: unknown): LibvirtError {
  return new LibvirtError(`${what}: ${oneLine(err)}`, { cause: err });
}

const isNoDomain = (err: unknown): boolean => /domain not found|no domain with matching/i.test(oneLine(err));

async function withConnection<T>(fn: (h: BindingHypervisor) => Promise<T>): Promise<T> {
  const { Hypervisor } = await loadBindings();
  const uri = libvirtUri();
  const h = new Hypervisor({ uri });
  try {
    await h.connectOpen();
  } catch (err) {
    throw libvirtFailure(`cannot connect to libvirt at ${uri}`, err);
  }
  try {
    return await fn(h);
  } finally {
    await h.connectClose().catch(() => undefined);
  }
}

async function lookup(h: BindingHypervisor, name: string): Promise<BindingDomain> {
  try {
    return await h.domainLookupByName(name);
  } catch (err) {
    if (isNoDomain(err)) throw new NotFoundError(`domain ${name} does not exist (at ${libvirtUri()})`);
    throw libvirtFailure(`looking up domain ${name}`, err);
  }
}

export interface DomainState {
  name: string;
  uuid: string;
  /** The persistent definition, with secrets (what `virsh edit` edits). */
  persistentXml: string;
  running: boolean;
  /** The live definition when running. */
  liveXml?: string;
}

/** Read a domain's persistent XML (and its live XML if it runs). */
export async function readDomainState(name: string): Promise<DomainState> {
  return withConnection(async (h) => {
    const d = await lookup(h, name);
    try {
      const persistentXml = await d.getXMLDesc(XML_SECURE | XML_INACTIVE);
      const uuid = await d.getUUIDString();
      const id = await d.getID();
      const running = id !== null && id !== undefined && id >= 0;
      const state: DomainState = { name, uuid, persistentXml, running };
      if (running) state.liveXml = await d.getXMLDesc(XML_SECURE);
      return state;
    } catch (err) {
      throw libvirtFailure(`reading domain ${name}`, err);
    }
  });
}

export interface ActiveDomain {
  /** Lower case, as libvirt prints it. */
  uuid: string;
  name: string;
  /** The live definition (without secrets): which bridges its NICs are on. */
  liveXml: string;
}

/**
 * The domains libvirt has active (running or paused), with their live XML.
 * A domain that stops while it is being read is left out: it is not active.
 */
export async function listActiveDomains(): Promise<ActiveDomain[]> {
  return withConnection(async (h) => {
    let domains: BindingDomain[];
    try {
      domains = await h.connectListAllDomains(LIST_ACTIVE);
    } catch (err) {
      throw libvirtFailure('listing the active domains', err);
    }
    const out: ActiveDomain[] = [];
    for (const d of domains) {
      try {
        out.push({ uuid: (await d.getUUIDString()).toLowerCase(), name: await d.getName(), liveXml: await d.getXMLDesc() });
      } catch (err) {
        if (!isNoDomain(err)) throw libvirtFailure('reading an active domain', err);
      }
    }
    return out;
  });
}

/** Define (create or update) a domain from XML; returns the persistent XML libvirt now holds. */
export async function defineDomain(xml: string): Promise<string> {
  return withConnection(async (h) => {
    let d: BindingDomain;
    try {
      d = await h.domainDefineXML(xml);
    } catch (err) {
      throw libvirtFailure('libvirt refused the domain XML', err);
    }
    try {
      return await d.getXMLDesc(XML_SECURE | XML_INACTIVE);
    } catch (err) {
      throw libvirtFailure('reading back the defined domain', err);
    }
  });
}

// ---- virsh --------------------------------------------------------------

interface VirshResult {
  ok: boolean;
  stdout: string;
  stderr: string;
}

async function virsh(args: readonly string[]): Promise<VirshResult> {
  // With reject: false, execa returns a failure to start (ENOENT) rather than throwing it.
  const r = await execa('virsh', ['-q', '-c', libvirtUri(), ...args], { reject: false, stdin: 'ignore' });
  if ((r as { code?: string }).code === 'ENOENT') {
    throw new ToolError(`virsh not found on PATH (${process.env.PATH ?? ''}): install libvirt-clients`);
  }
  return { ok: r.exitCode === 0, stdout: String(r.stdout), stderr: String(r.stderr) };
}

/** libvirt's message from virsh's stderr, without the "error: " prefixes, on one line. */
const virshError = (r: VirshResult): string =>
  r.stderr
    .split('\n')
    .map((l) => l.replace(/^error:\s*/, '').trim())
    .filter(Boolean)
    .join('; ') || 'virsh failed without a message';

async function virshOk(what: string, args: readonly string[]): Promise<string> {
  const r = await virsh(args);
  if (!r.ok) throw new LibvirtError(`${what}: ${virshError(r)}`);
  return r.stdout;
}

/** Run `virsh SUBCOMMAND … FILE …` with `xml` in a private temporary file. */
async function withXmlFile<T>(xml: string, fn: (path: string) => Promise<T>): Promise<T> {
  const dir = mkdtempSync(join(tmpdir(), 'vxvirt-'));
  const path = join(dir, 'object.xml');
  try {
    writeFileSync(path, xml, { mode: 0o600 });
    return await fn(path);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

// ---- hot-plug -------------------------------------------------------------

/** Hot-plug a device into a running domain (not its persistent definition). */
export async function attachDeviceLive(domain: string, deviceXml: string): Promise<void> {
  await withXmlFile(deviceXml, (path) => virshOk(`hot-plugging into domain ${domain}`, ['attach-device', domain, path, '--live']));
}

/** Hot-unplug a device from a running domain. */
export async function detachDeviceLive(domain: string, deviceXml: string): Promise<void> {
  await withXmlFile(deviceXml, (path) => virshOk(`hot-unplugging from domain ${domain}`, ['detach-device', domain, path, '--live']));
}

/** Change a device of a running domain in place (same MAC). */
export async function updateDeviceLive(domain: string, deviceXml: string): Promise<void> {
  await withXmlFile(deviceXml, (path) => virshOk(`changing a device of domain ${domain}`, ['update-device', domain, path, '--live']));
}

// ---- networks ---------------------------------------------------------------

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
  const dump = await virsh(['net-dumpxml', name]);
  if (!dump.ok) {
    if (/network not found|no network with matching name/i.test(dump.stderr)) return undefined;
    throw new LibvirtError(`reading libvirt network ${name}: ${virshError(dump)}`);
  }
  const info = await virshOk(`reading libvirt network ${name}`, ['net-info', name]);
  const field = (label: string): string => (new RegExp(`^${label}:\\s*(.*)$`, 'mi').exec(info)?.[1] ?? '').trim();
  return { ...parseNetworkXml(dump.stdout), active: field('Active') === 'yes', autostart: field('Autostart') === 'yes' };
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
  if (!existing?.autostart) await virshOk(`autostarting libvirt network ${def.name}`, ['net-autostart', def.name]);
  const result: DefineNetworkResult = { action, active: existing?.active ?? false };
  if (existing?.active && action === 'updated') {
    if (existing.connections > 0) {
      result.note = `libvirt network ${def.name} has ${existing.connections} guest connection(s): its new definition applies when it is restarted`;
      return result;
    }
    await virshOk(`restarting libvirt network ${def.name}`, ['net-destroy', def.name]);
    result.active = false;
  }
  if (!result.active) {
    await virshOk(`starting libvirt network ${def.name}`, ['net-start', def.name]);
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
    await virshOk(`stopping libvirt network ${name}`, ['net-destroy', name]);
  }
  await virshOk(`undefining libvirt network ${name}`, ['net-undefine', name]);
  return { action: 'removed' };
}
