// What the libvirt qemu hook does for each operation. libvirt calls
// `qemu DOMAIN OP SUBOP EXTRA` with the domain XML on stdin (docs/hooks.rst).
// The hook never calls back into libvirt (that deadlocks) and never writes to
// stdout: for `migrate` and `restore` libvirt reads stdout as replacement XML.
//
// It reads only what the domain names: the definition behind each NIC's
// bridge (through the VNI index) or libvirt network, and on release only the
// domain's own record — so its cost does not grow with the number of networks
// or domains on the host.
import { indexOf, networkOfNic, networksOfNics, readDomain, type DomainInfo, type NetworkIndex } from './domain-xml.ts';
import { formatError } from './errors.ts';
import { ensureForDomain, realEffects, reconnectDomain, releaseDomain, type Effects, type NicsByNetwork } from './lifecycle.ts';
import type { NetworkDefinition } from './network-definition.ts';

export interface HookIo {
  readStdin(): Promise<string>;
  error(line: string): void;
  /**
   * libvirt does not wait for this run: hooks/qemu started it in the
   * background for a release, holding the host lock for it. Nothing is then
   * handed on to a detached process (there is no lock descriptor here to
   * hand on, and no one to return to early).
   */
  background?: boolean;
}

/** Keys of the domains recorded under this name (for a release whose XML cannot be read). */
const domainKeysNamed = (name: string, fx: Effects): string[] => fx.listDomainRecords().filter((d) => d.record.name === name).map((d) => d.key);

/**
 * The definitions on this host as an index for domain-xml.networkOf. A VNI
 * that no readable definition explains fails with the error of the
 * unreadable definitions, since one of them may be its network; other broken
 * files are never read.
 */
export const storedDefinitions = (fx: Pick<Effects, 'findDefinition' | 'findDefinitionByVni'>): NetworkIndex<NetworkDefinition> => ({
  byVni(vni) {
    const lookup = fx.findDefinitionByVni(vni);
    if (lookup.broken[0]) throw lookup.broken[0].error;
    return lookup.def;
  },
  byName: (name) => fx.findDefinition(name),
});

/** The vxvirt networks a domain's NICs are on (domain-xml.networkOf), in NIC order. */
export function definitionsFor(domain: DomainInfo, fx: Pick<Effects, 'findDefinition' | 'findDefinitionByVni'>): NetworkDefinition[] {
  return networksOfNics(domain.nics, storedDefinitions(fx));
}

/**
 * Which of the domain's NICs are on each of `defs` (matched as
 * definitionsFor matches them): their MACs, or 'unknown' when one of them
 * has none — then a hot-unplug cannot tell which NIC left, and the domain
 * stays a user until it stops.
 */
export function nicsFor(domain: DomainInfo, defs: readonly NetworkDefinition[]): NicsByNetwork {
  const out = new Map<string, string[] | 'unknown'>();
  const index = indexOf(defs);
  for (const nic of domain.nics) {
    const def = networkOfNic(nic, index);
    if (!def) continue;
    const have = out.get(def.name) ?? [];
    out.set(def.name, have === 'unknown' || nic.mac === undefined ? 'unknown' : [...have, nic.mac]);
  }
  return out;
}

/** Run one hook invocation; returns the exit status. */
export async function runHook(argv: readonly string[], io: HookIo, fx: Effects = realEffects): Promise<number> {
  const [, op, subop] = argv;
  const operation = `${op} ${subop}`;
  if (operation !== 'prepare begin' && operation !== 'reconnect begin' && operation !== 'release end') {
    // migrate/restore must print nothing (= keep the XML); all else is not ours.
    return 0;
  }
  try {
    let domain: DomainInfo;
    try {
      domain = readDomain(await io.readStdin());
    } catch (err) {
      // A stopped domain must not keep its networks because its XML was
      // unreadable: libvirt's DOMAIN argument still names it.
      const [name] = argv;
      if (operation === 'release end' && name) for (const key of domainKeysNamed(name, fx)) await releaseDomain(key, fx);
      throw err;
    }
    if (operation === 'release end') await releaseDomain(domain.key, fx, { detach: !io.background });
    else {
      const defs = definitionsFor(domain, fx);
      // reconnect: libvirtd restarted with this domain running.
      if (operation === 'reconnect begin') await reconnectDomain(domain, defs, fx, nicsFor(domain, defs));
      else await ensureForDomain(domain, defs, fx, nicsFor(domain, defs));
    }
    return 0;
  } catch (err) {
    io.error(formatError(err));
    // A non-zero `reconnect` makes libvirt kill the running guest, and
    // `release` is documented to always succeed: only `prepare` may fail.
    return op === 'prepare' ? 1 : 0;
  }
}
