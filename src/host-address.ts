// One definition for every host: a network defined without --local sends
// from this host's own address on its underlay device, and a peer list may
// name every host of the fleet, this one included — this host's own
// addresses are left out of it (head-end replication to itself would loop
// each flooded frame back). Pure: iproute.ts reads the host's addresses into
// `Observed`, and planEnsure resolves every definition through
// resolveForHost before it plans, so the hook's prepare, reconcile, status
// and check all expect the same device.
import { isIP } from 'node:net';
import { DefinitionError, InternalError } from './errors.ts';
import { floodingMode, underlayFamily, type NetworkDefinition } from './network-definition.ts';

/** An address assigned on this host, in the kernel's spelling. */
export interface HostAddress {
  dev: string;
  address: string;
  /** `global`, `link` (fe80::/10), `host` (loopback): only global ones may be a VTEP's source. */
  scope?: string;
  /** Duplicate address detection failed: the kernel will not send from it. */
  dadfailed?: boolean;
}

/**
 * The family of addresses a definition's resolution reads, or undefined when
 * it needs none (a --local given and no peer list to take this host out of).
 */
export function addressesNeeded(def: NetworkDefinition): 4 | 6 | undefined {
  return def.local === undefined || def.remotes.length > 0 ? underlayFamily(def) : undefined;
}

/** This host's source address on the underlay: the first global one of `family` on `dev` that DAD has not refused. */
export function ownUnderlayAddress(dev: string, family: 4 | 6, addresses: readonly HostAddress[]): string | undefined {
  return addresses.find(
    (a) => a.dev === dev && isIP(a.address) === family && !a.dadfailed && (a.scope === undefined || a.scope === 'global'),
  )?.address;
}

/**
 * The definition as this host uses it: `local` set (given, or this host's
 * address on the underlay) and this host's own addresses out of the peers
 * (kept in `ownRemotes`, so the flooding mode stays the definition's).
 * `addresses` undefined means they were not read: only a definition with a
 * --local can then be resolved, with nothing skipped. Throws one line naming
 * the device and the family when the underlay has no such address, or when
 * a point-to-point remote is this host itself.
 */
export function resolveForHost(def: NetworkDefinition, addresses: readonly HostAddress[] | undefined): NetworkDefinition {
  const family = underlayFamily(def);
  if (addresses === undefined) {
    if (def.local === undefined) throw new InternalError(`network ${def.name}: the addresses of ${def.dev} were not read`);
    return def;
  }
  const own = new Set(addresses.filter((a) => isIP(a.address) === family).map((a) => a.address.toLowerCase()));
  const ownRemotes = def.remotes.filter((r) => own.has(r.toLowerCase()));
  if (ownRemotes.length > 0 && floodingMode(def) === 'point-to-point') {
    const where = addresses.find((a) => a.address.toLowerCase() === ownRemotes[0]!.toLowerCase())?.dev;
    throw new DefinitionError(
      `network ${def.name}: --remote ${ownRemotes[0]} is this host's own address (on ${where}): a point-to-point network needs the other host's address; to use one definition on several hosts, list them all (--remote repeated)`,
    );
  }
  let local = def.local;
  if (local === undefined) {
    local = ownUnderlayAddress(def.dev, family, addresses);
    if (local === undefined) {
      throw new DefinitionError(
        `network ${def.name}: underlay device ${def.dev} has no IPv${family} address to send VXLAN packets from: assign one to ${def.dev}, or define the network with --local`,
      );
    }
  }
  const resolved: NetworkDefinition = { ...def, local, remotes: def.remotes.filter((r) => !own.has(r.toLowerCase())) };
  if (ownRemotes.length > 0) resolved.ownRemotes = ownRemotes;
  return resolved;
}
