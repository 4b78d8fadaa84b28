// Changing a defined network that may be in use (`set-peers`, `redefine`):
// which differences a live vxlan device can take in place and which need a
// new device. Pure: the CLI reads the definitions, decides with this, and
// hands the in-place ones to lifecycle's updateLiveNetwork.
//
// In place: the unicast peer list (the all-zero forwarding entries of the
// vxlan: entries are appended and deleted one destination at a time, so the
// peers that stay never lose theirs) and the MTU (`ip link set mtu`).
// Everything else is fixed when the kernel creates the vxlan (iproute2 has no
// way to change id, port, underlay, local, group or ttl of an existing one,
// and vxvirt's plan replaces a device that differs), and the flooding mode
// decides what the device is made of: point-to-point has a `remote`
// attribute, unicast peers have forwarding entries, multicast a `group`.
import { bridgeName, floodingMode, type NetworkDefinition } from './network-definition.ts';

/** One field that differs, as the command line names it. */
export interface Change {
  /** The option (`--dstport`) or, for the flooding mode, `flooding mode`. */
  what: string;
  from: string;
  to: string;
}

/** A change a live device cannot take, and why. */
export interface Refusal extends Change {
  why: string;
}

export interface RedefinePlan {
  /** Every difference, in the order of define-network's options; none = the definitions are the same. */
  changes: Change[];
  /** The changes that need a new vxlan device; none = everything applies in place. */
  refused: Refusal[];
  /** A new VNI renames the devices and the libvirt network: refused even while nothing uses the network. */
  vni?: Refusal;
  /** Unicast peers gained and lost (only when old and new are both unicast). */
  added: string[];
  removed: string[];
}

const show = (v: unknown): string => (v === undefined ? 'none' : String(v));
const peers = (def: NetworkDefinition): string => def.remotes.join(',');

const FIXED = 'fixed when the kernel creates the vxlan device';

const modeWhy = (from: string, to: string): string =>
  from === 'evpn' || to === 'evpn'
    ? 'an EVPN vxlan has no remote or group, never learns, and its bridge port suppresses ARP: it is made so when created'
    : from === 'multicast' || to === 'multicast'
    ? 'the kernel sets a vxlan device\'s multicast group only when it creates it'
    : 'one --remote is an attribute of the vxlan device, several are entries of its forwarding table';

/** What changing `old` into `next` (same name) takes. */
export function planRedefine(old: NetworkDefinition, next: NetworkDefinition): RedefinePlan {
  if (old.name !== next.name) throw new Error(`planRedefine: ${old.name} and ${next.name} are different networks`);
  const plan: RedefinePlan = { changes: [], refused: [], added: [], removed: [] };
  const refuse = (what: string, from: string, to: string, why: string): Refusal => {
    const r = { what, from, to, why };
    plan.changes.push({ what, from, to });
    plan.refused.push(r);
    return r;
  };
  const fixed = (option: string, a: unknown, b: unknown): void => {
    if (a !== b) refuse(option, show(a), show(b), FIXED);
  };

  if (old.vni !== next.vni) {
    plan.vni = refuse(
      '--vni',
      String(old.vni),
      String(next.vni),
      `it names the devices and the libvirt network's bridge (${bridgeName(old.vni)} -> ${bridgeName(next.vni)})`,
    );
  }
  fixed('--dev', old.dev, next.dev);
  fixed('--local', old.local, next.local);

  const [oldMode, newMode] = [floodingMode(old), floodingMode(next)];
  const peersShown = (def: NetworkDefinition): string => (def.evpn ? 'BGP' : (def.group ?? peers(def)));
  if (oldMode !== newMode) {
    refuse('flooding mode', `${oldMode} (${peersShown(old)})`, `${newMode} (${peersShown(next)})`, modeWhy(oldMode, newMode));
  } else if (newMode === 'multicast') {
    fixed('--group', old.group, next.group);
  } else if (newMode === 'point-to-point') {
    if (old.remotes[0] !== next.remotes[0]) refuse('--remote', show(old.remotes[0]), show(next.remotes[0]), 'a point-to-point remote is an attribute of the vxlan device');
  } else if (peers(old) !== peers(next)) {
    plan.changes.push({ what: '--remote', from: peers(old), to: peers(next) });
    plan.added = next.remotes.filter((r) => !old.remotes.includes(r));
    plan.removed = old.remotes.filter((r) => !next.remotes.includes(r));
  }

  fixed('--dstport', old.dstport, next.dstport);
  if (old.mtu !== next.mtu) plan.changes.push({ what: '--mtu', from: old.mtu === undefined ? 'auto' : String(old.mtu), to: next.mtu === undefined ? 'auto' : String(next.mtu) });
  fixed('--ttl', old.ttl, next.ttl);
  const onOff = (b: boolean): string => (b ? 'on' : 'off');
  // EVPN implies no learning: its mode change says it already.
  if (oldMode !== 'evpn' && newMode !== 'evpn') fixed('--learning', onOff(old.learning), onOff(next.learning));
  return plan;
}

export const describeChange = (c: Change): string => `${c.what} ${c.from} -> ${c.to}`;

/**
 * The one-line reason a change is refused while `usedBy` (domain names, or a
 * description of the devices that exist) uses the network.
 */
export function refusalMessage(name: string, refused: readonly Refusal[], usedBy: string): string {
  // Changes refused for the same reason share it: "--local a -> b, --ttl 1 -> 2 (fixed when …)".
  const byWhy = new Map<string, string[]>();
  for (const r of refused) byWhy.set(r.why, [...(byWhy.get(r.why) ?? []), describeChange(r)]);
  const each = [...byWhy].map(([why, changes]) => `${changes.join(', ')} (${why})`).join('; ');
  const noun = refused.length === 1 ? 'this change needs' : 'these changes need';
  return `network ${name} is in use (${usedBy}) and ${noun} a new vxlan device: ${each}; stop the guests, or use define-network --replace when nothing uses it`;
}

/** The one-line reason a new VNI is refused by `set-peers`/`redefine` whether or not the network is in use. */
export function vniMessage(name: string, r: Refusal): string {
  return `network ${name}: ${describeChange(r)} is not a change in place: ${r.why}; use define-network --replace, which also redefines the libvirt network (it refuses while guests use the network)`;
}
