// The only modules that talk to libvirt are the ones in this directory (the
// hook never imports them: a hook that calls back into libvirtd deadlocks it).
// Commands import this file.
//
//  - Domains (read, list the active ones, define) go through a backend:
//    the bindings @unraid/libvirt when they load (bindings.ts), `virsh`
//    otherwise (virsh.ts); VXVIRT_LIBVIRT forces one (choice.ts). Both give
//    the same results and the same errors (backend.ts).
//  - Networks (networks.ts) and hot-plug (devices.ts) always go through virsh.
//
// Both use LIBVIRT_DEFAULT_URI when set, else qemu:///system.
import { LibvirtError, oneLine } from '../errors.ts';
import type { ActiveDomain, DomainBackend, DomainState } from './backend.ts';
import { bindingsBackend, bindingsHint, loadBindings } from './bindings.ts';
import { BACKEND_ENV, parseSetting, type Access } from './choice.ts';
import { virshBackend } from './virsh.ts';
import { attachDeviceLive, detachDeviceLive, updateDeviceLive } from './devices.ts';
import {
  defineLibvirtNetwork,
  listLibvirtNetworks,
  undefineLibvirtNetwork,
  type DefineNetworkResult,
  type LibvirtNetworkInfo,
  type UndefineNetworkResult,
} from './networks.ts';
import type { NetworkDefinition } from '../network-definition.ts';

export type { ActiveDomain, DomainState } from './backend.ts';
export { describeAccess, type Access } from './choice.ts';
export { attachDeviceLive, detachDeviceLive, updateDeviceLive } from './devices.ts';
export * from './networks.ts';

interface Chosen {
  access: Access;
  backend: DomainBackend;
}

const chosen = new Map<string, Promise<Chosen>>();

async function choose(raw: string | undefined): Promise<Chosen> {
  const setting = parseSetting(raw);
  if (setting === 'virsh') return { access: { setting, backend: 'virsh' }, backend: virshBackend };
  try {
    const b = await loadBindings();
    return { access: { setting, backend: 'bindings' }, backend: bindingsBackend(b) };
  } catch (err) {
    if (setting === 'bindings') throw new LibvirtError(`${BACKEND_ENV}=bindings: ${oneLine(err)}: ${bindingsHint}`, { cause: err });
    return { access: { setting, backend: 'virsh', bindingsError: oneLine(err).replace(/^the libvirt bindings \S+ did not load: /, '') }, backend: virshBackend };
  }
}

/** The backend for domains, chosen once per VXVIRT_LIBVIRT value. */
function backend(): Promise<Chosen> {
  const raw = process.env[BACKEND_ENV];
  const key = raw ?? '';
  let c = chosen.get(key);
  if (!c) {
    c = choose(raw);
    // A failed choice (bad setting, bindings required but missing) is tried again next time.
    c.catch(() => chosen.delete(key));
    chosen.set(key, c);
  }
  return c;
}

/** Which backend is in use and why (vxvirt check). Throws for a bad VXVIRT_LIBVIRT or missing required bindings. */
export async function libvirtAccess(): Promise<Access> {
  return (await backend()).access;
}

/** Read a domain's persistent XML (and its live XML if it runs). NotFoundError if there is none. */
export async function readDomainState(name: string): Promise<DomainState> {
  return (await backend()).backend.readDomainState(name);
}

/** The domains libvirt has active (running or paused), with their live XML; one that stops while being read is left out. */
export async function listActiveDomains(): Promise<ActiveDomain[]> {
  return (await backend()).backend.listActiveDomains();
}

/** Define (create or update) a domain from XML; returns the persistent XML libvirt now holds. */
export async function defineDomain(xml: string): Promise<string> {
  return (await backend()).backend.defineDomain(xml);
}

/**
 * What the commands ask of libvirt, as one record: the commands' transactions
 * (src/network-transactions.ts, src/attach.ts, src/reconcile-run.ts, src/status.ts)
 * take it beside the host's Effects, and tests replace it with a fake
 * libvirt. It is a record of its own because the hooks must never get one.
 */
export interface Libvirt {
  readDomainState(name: string): Promise<DomainState>;
  listActiveDomains(): Promise<ActiveDomain[]>;
  defineDomain(xml: string): Promise<string>;
  attachDeviceLive(domain: string, xml: string): Promise<void>;
  detachDeviceLive(domain: string, xml: string): Promise<void>;
  updateDeviceLive(domain: string, xml: string): Promise<void>;
  listNetworks(): Promise<LibvirtNetworkInfo[]>;
  defineNetwork(def: NetworkDefinition): Promise<DefineNetworkResult>;
  undefineNetwork(name: string): Promise<UndefineNetworkResult>;
}

export const realLibvirt: Libvirt = {
  readDomainState,
  listActiveDomains,
  defineDomain,
  attachDeviceLive,
  detachDeviceLive,
  updateDeviceLive,
  listNetworks: listLibvirtNetworks,
  defineNetwork: defineLibvirtNetwork,
  undefineNetwork: undefineLibvirtNetwork,
};
