// Domains through the libvirt bindings @unraid/libvirt: an optional
// dependency that builds only with libvirt-dev, python3, g++ and make, and
// whose failure to build npm does not report. Loaded on first use; when it
// does not load, index.ts uses virsh.ts instead.
import { LibvirtError, oneLine } from '../errors.ts';
import { failure, isLiveXml, libvirtUri, noSuchDomain, unreachable, type ActiveDomain, type DomainBackend, type DomainState } from './backend.ts';

export const BINDINGS_PACKAGE = '@unraid/libvirt';
export const BINDINGS_VERSION = '2.2.1';

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
export interface Bindings {
  Hypervisor: new (options: { uri: string }) => BindingHypervisor;
}

// virDomainXMLFlags: SECURE keeps passwords (graphics, secrets) in the XML we
// define back; INACTIVE gives the persistent definition, not the live one.
const XML_SECURE = 1;
const XML_INACTIVE = 2;
// virConnectListAllDomainsFlags: ACTIVE = running or paused (a guest with a tap).
const LIST_ACTIVE = 1;

/** What to do when the bindings are required (VXVIRT_LIBVIRT=bindings) and do not load. */
export const bindingsHint = `install libvirt-dev, python3, g++ and make, then \`npm rebuild ${BINDINGS_PACKAGE}\` (or \`npm install ${BINDINGS_PACKAGE}@${BINDINGS_VERSION}\`) where vxvirt is installed; or unset VXVIRT_LIBVIRT to use virsh`;

/**
 * Load the bindings, or fail with one line saying what is missing; `load` is
 * replaceable for tests. Each call imports again: Node's module loader keeps
 * a loaded module, and retries one that failed.
 */
export function loadBindings(load: () => Promise<unknown> = importBindings): Promise<Bindings> {
  return load().then(
    (mod) => {
      const m = mod as Partial<Bindings> & { default?: Partial<Bindings> };
      const Hypervisor = m.Hypervisor ?? m.default?.Hypervisor;
      if (typeof Hypervisor !== 'function') throw new LibvirtError(`the libvirt bindings ${BINDINGS_PACKAGE} did not load: it has no Hypervisor class`);
      return { Hypervisor };
    },
    (err: unknown) => {
      throw new LibvirtError(`the libvirt bindings ${BINDINGS_PACKAGE} did not load: ${oneLine(err)}`, { cause: err });
    },
  );
}

function importBindings(): Promise<unknown> {
  // A variable specifier keeps bundlers from trying to inline the native module.
  const specifier = BINDINGS_PACKAGE;
  return import(specifier);
}

const isNoDomain = (err: unknown): boolean => /domain not found|no domain with matching/i.test(oneLine(err));

/** Run `fn` on a connection of its own, closed afterwards whatever happens. */
async function withConnection<T>(bindings: Bindings, fn: (h: BindingHypervisor) => Promise<T>): Promise<T> {
  const h = new bindings.Hypervisor({ uri: libvirtUri() });
  try {
    await h.connectOpen();
  } catch (err) {
    throw unreachable(oneLine(err));
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
    if (isNoDomain(err)) throw noSuchDomain(name);
    throw failure(`reading domain ${name}`, oneLine(err), err);
  }
}

async function readDomainState(h: BindingHypervisor, name: string): Promise<DomainState> {
  const d = await lookup(h, name);
  try {
    const persistentXml = await d.getXMLDesc(XML_SECURE | XML_INACTIVE);
    const uuid = await d.getUUIDString();
    const id = await d.getID();
    let running = id !== null && id !== undefined && id >= 0;
    const state: DomainState = { name, uuid, persistentXml, running };
    if (running) {
      const live = await d.getXMLDesc(XML_SECURE);
      // Stopped since getID: what came back is the inactive definition.
      running = isLiveXml(live);
      state.running = running;
      if (running) state.liveXml = live;
    }
    return state;
  } catch (err) {
    if (isNoDomain(err)) throw noSuchDomain(name);
    throw failure(`reading domain ${name}`, oneLine(err), err);
  }
}

async function listActiveDomains(h: BindingHypervisor): Promise<ActiveDomain[]> {
  let domains: BindingDomain[];
  try {
    domains = await h.connectListAllDomains(LIST_ACTIVE);
  } catch (err) {
    throw failure('listing the active domains', oneLine(err), err);
  }
  const out: ActiveDomain[] = [];
  for (const d of domains) {
    try {
      const entry = { uuid: (await d.getUUIDString()).toLowerCase(), name: await d.getName(), liveXml: await d.getXMLDesc() };
      if (isLiveXml(entry.liveXml)) out.push(entry);
    } catch (err) {
      if (!isNoDomain(err)) throw failure('reading an active domain', oneLine(err), err);
    }
  }
  return out;
}

async function defineDomain(h: BindingHypervisor, xml: string): Promise<string> {
  let d: BindingDomain;
  try {
    d = await h.domainDefineXML(xml);
  } catch (err) {
    throw failure('libvirt refused the domain XML', oneLine(err), err);
  }
  try {
    return await d.getXMLDesc(XML_SECURE | XML_INACTIVE);
  } catch (err) {
    throw failure('reading back the defined domain', oneLine(err), err);
  }
}

/** The domain backend over loaded bindings. */
export function bindingsBackend(bindings: Bindings): DomainBackend {
  return {
    kind: 'bindings',
    readDomainState: (name: string): Promise<DomainState> => withConnection(bindings, (h) => readDomainState(h, name)),
    listActiveDomains: (): Promise<ActiveDomain[]> => withConnection(bindings, (h) => listActiveDomains(h)),
    defineDomain: (xml: string): Promise<string> => withConnection(bindings, (h) => defineDomain(h, xml)),
  };
}
