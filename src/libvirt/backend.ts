// What vxvirt asks of libvirt about domains, and the errors every way of
// asking reports alike. Two implementations: bindings.ts (the optional native
// bindings @unraid/libvirt) and virsh.ts (the `virsh` of libvirt-clients);
// index.ts chooses one. A command behaves the same with either: same output,
// same messages, same exit statuses.
import { LibvirtError, LibvirtUnreachableError, NotFoundError } from '../errors.ts';
import { attr, parseXml } from '../xml.ts';

/** LIBVIRT_DEFAULT_URI when set, else qemu:///system (as virsh and the bindings would pick). */
export const libvirtUri = (): string => process.env.LIBVIRT_DEFAULT_URI || 'qemu:///system';

export interface DomainState {
  name: string;
  uuid: string;
  /** The persistent definition, with secrets (what `virsh edit` edits). */
  persistentXml: string;
  running: boolean;
  /** The live definition when running. */
  liveXml?: string;
}

export interface ActiveDomain {
  /** Lower case, as libvirt prints it. */
  uuid: string;
  name: string;
  /** The live definition (without secrets): which bridges its NICs are on. */
  liveXml: string;
}

export interface DomainBackend {
  readonly kind: 'bindings' | 'virsh';
  /** A domain's persistent XML, and its live XML if it runs. NotFoundError if there is none. */
  readDomainState(name: string): Promise<DomainState>;
  /** The domains libvirt has active (running or paused); one that stops while being read is left out. */
  listActiveDomains(): Promise<ActiveDomain[]>;
  /** Define (create or update) a domain; returns the persistent XML libvirt now holds. */
  defineDomain(xml: string): Promise<string>;
}

// ---- the messages both backends give ------------------------------------------

export const unreachable = (detail: string): LibvirtUnreachableError =>
  new LibvirtUnreachableError(`cannot connect to libvirt at ${libvirtUri()}: ${detail}`);

export const noSuchDomain = (name: string): NotFoundError => new NotFoundError(`domain ${name} does not exist (at ${libvirtUri()})`);

export const failure = (what: string, detail: string, cause?: unknown): LibvirtError =>
  new LibvirtError(`${what}: ${detail}`, cause === undefined ? undefined : { cause });

/**
 * Whether domain XML is a running domain's: libvirt writes `id='N'` on the
 * root of the live XML only. A domain that stopped after it was listed gives
 * its inactive XML, without an id.
 */
export function isLiveXml(xml: string): boolean {
  try {
    const id = attr(parseXml(xml).root, 'id');
    return id !== undefined && /^\d+$/.test(id);
  } catch {
    return false;
  }
}
