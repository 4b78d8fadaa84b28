// Desired devices + observed devices -> ordered steps. Pure: iproute.ts reads
// the kernel's state into `Observed` and applies the steps; everything that
// decides (is this device ours, does it match, what must change) is here.
import { DeviceConflictError, DefinitionError } from './errors.ts';
import { resolveForHost, type HostAddress } from './host-address.ts';
import {
  bridgeName,
  floodingMode,
  overlayMtu,
  vxlanName,
  type NetworkDefinition,
} from './network-definition.ts';

/** A network device as read back from `ip -d -j link show`. */
export interface Link {
  name: string;
  kind: string; // '' for devices without linkinfo (physical NICs)
  group: number; // numeric device group; 0 = default
  mtu: number;
  up: boolean; // administratively up (IFF_UP)
  master?: string;
  alias?: string;
  vxlan?: VxlanAttrs;
  /** Its settings as a port of a bridge (only when it is one). */
  bridgePort?: BridgePortAttrs;
  /** A bridge's neighbour settings from /proc/sys (absent: not read, or this kernel has none). */
  neigh?: NeighSettings;
}

/** The bridge port flags an EVPN vxlan needs (`bridge link set … learning off neigh_suppress on`). */
export interface BridgePortAttrs {
  learning: boolean;
  neighSuppress: boolean;
}

/**
 * A bridge's ARP/ND settings: with arp_accept (and IPv6's accept_untracked_na,
 * kernel 5.18+) the host records the IP<->MAC pairs guests announce, which
 * zebra reads and advertises, so neigh_suppress can answer ARP locally.
 */
export interface NeighSettings {
  arpAccept?: number;
  acceptUntrackedNa?: number;
}

/** The sysctl that holds each NeighSettings key, for bridge `dev`. */
export const NEIGH_SYSCTLS = {
  arpAccept: (dev: string): string => `net.ipv4.conf.${dev}.arp_accept`,
  acceptUntrackedNa: (dev: string): string => `net.ipv6.conf.${dev}.accept_untracked_na`,
} as const;

export interface VxlanAttrs {
  id: number;
  port: number;
  dev?: string;
  local?: string;
  remote?: string;
  group?: string;
  ttl: number; // 0 = inherit
  learning: boolean;
}

export interface Observed {
  /** Every device of the namespace, by name. */
  links: Map<string, Link>;
  /** Destinations of the all-zero fdb entries of vxlan devices (unicast head-end replication). */
  floodDsts: Map<string, string[]>;
  /**
   * This host's addresses of the underlay's family (all families for
   * observeAll): what a definition without --local, or with a peer list, is
   * resolved with. Absent: not read.
   */
  addresses?: HostAddress[];
}

export type Step =
  | { op: 'add-bridge'; name: string; mtu: number; group: number }
  | { op: 'add-vxlan'; name: string; mtu: number; group: number; attrs: VxlanAttrs }
  | { op: 'delete'; name: string }
  | { op: 'delete-group'; group: number }
  | { op: 'set-mtu'; name: string; mtu: number }
  | { op: 'set-master'; name: string; master: string }
  | { op: 'prepare-port'; name: string; alias: string } // alias + no IPv6 address on the host side
  | { op: 'up'; name: string }
  | { op: 'set-port'; name: string; port: BridgePortAttrs }
  /** A kernel setting of a device; `optional`: skipped where this kernel does not have it. */
  | { op: 'sysctl'; device: string; key: keyof NeighSettings; value: number; optional: boolean }
  | { op: 'flood-add'; dev: string; dst: string }
  | { op: 'flood-del'; dev: string; dst: string };

/**
 * The ownership mark: vxvirt creates its devices in device group
 * 0x76000000 + VNI. The group is set atomically by the kernel at creation
 * (unlike the alias, which takes a second request), so a device in that group
 * was made by vxvirt and nothing else — and one that is not, is never touched.
 */
const GROUP_BASE = 0x76000000;
export const ownerGroup = (vni: number): number => GROUP_BASE + vni;
const ownerAlias = (def: NetworkDefinition): string => `vxvirt:${def.name}`;

export function isOwned(link: Link | undefined, vni: number): boolean {
  return link !== undefined && link.group === ownerGroup(vni);
}

/** The vxlan attributes a definition asks for, as the kernel reports them. */
export function desiredVxlan(def: NetworkDefinition): VxlanAttrs {
  const mode = floodingMode(def);
  const attrs: VxlanAttrs = {
    id: def.vni,
    port: def.dstport,
    dev: def.dev,
    ttl: def.ttl ?? 0,
    learning: def.learning,
  };
  if (def.local) attrs.local = def.local;
  if (mode === 'evpn') attrs.learning = false;
  if (mode === 'point-to-point') attrs.remote = def.remotes[0];
  if (mode === 'multicast') attrs.group = def.group;
  return attrs;
}

/** Whether a vxlan device has the attributes the definition asks for (unset and absent are alike). */
function sameVxlan(actual: VxlanAttrs, want: VxlanAttrs): boolean {
  const keys = ['id', 'port', 'dev', 'local', 'remote', 'group', 'ttl', 'learning'] as const;
  return keys.every((key) => normalise(actual[key]) === normalise(want[key]));
}
const normalise = (v: unknown): string => (v === undefined || v === null ? '' : String(v).toLowerCase());

function notOurs(link: Link, def: NetworkDefinition): DeviceConflictError {
  return new DeviceConflictError(
    `network ${def.name}: device ${link.name} already exists and was not created by vxvirt (device group ${link.group}, not ${ownerGroup(def.vni)}); remove or rename it, or give the network another --vni`,
  );
}

/**
 * Steps that make the kernel hold `def`'s bridge + vxlan pair, up, with the
 * right attributes and MTU. Returns [] when everything already matches.
 * Throws (and plans nothing) when the underlay device is missing, the MTU is
 * impossible, or a device with one of the names exists but is not vxvirt's —
 * so a failed plan never leaves half a pair behind.
 */
export function planEnsure(def: NetworkDefinition, observed: Observed): Step[] {
  const br = bridgeName(def.vni);
  const vx = vxlanName(def.vni);
  const group = ownerGroup(def.vni);
  const underlay = observed.links.get(def.dev);
  if (!underlay) {
    throw new DefinitionError(`network ${def.name}: underlay device ${def.dev} does not exist on this host (--dev ${def.dev})`);
  }
  // The definition as this host uses it: its own local address, itself out of the peers.
  def = resolveForHost(def, observed.addresses);
  const mtu = overlayMtu(def, underlay.mtu);
  const bridge = observed.links.get(br);
  const vxlan = observed.links.get(vx);
  if (bridge && !isOwned(bridge, def.vni)) throw notOurs(bridge, def);
  if (vxlan && !isOwned(vxlan, def.vni)) throw notOurs(vxlan, def);

  const deletes: Step[] = [];
  const steps: Step[] = [];
  const want = desiredVxlan(def);

  // Bridge: create, or replace a device of ours that is not a bridge, or fix its MTU.
  let bridgeIsNew = false;
  if (!bridge || bridge.kind !== 'bridge') {
    if (bridge) deletes.push({ op: 'delete', name: br });
    steps.push({ op: 'add-bridge', name: br, mtu, group });
    bridgeIsNew = true;
  } else if (bridge.mtu !== mtu) {
    steps.push({ op: 'set-mtu', name: br, mtu });
  }

  // VXLAN: most attributes cannot be changed on a live device, so a mismatch means replace.
  let vxlanIsNew = false;
  if (!vxlan || vxlan.kind !== 'vxlan' || !vxlan.vxlan || !sameVxlan(vxlan.vxlan, want)) {
    if (vxlan) deletes.push({ op: 'delete', name: vx });
    steps.push({ op: 'add-vxlan', name: vx, mtu, group, attrs: want });
    vxlanIsNew = true;
  } else if (vxlan.mtu !== mtu) {
    steps.push({ op: 'set-mtu', name: vx, mtu });
  }

  const attached = vxlanIsNew || vxlan?.master !== br;
  if (attached) steps.push({ op: 'set-master', name: vx, master: br });
  if (floodingMode(def) === 'evpn') steps.push(...evpnSteps(br, vx, bridgeIsNew ? undefined : bridge, attached ? undefined : vxlan));
  if (bridgeIsNew || bridge?.alias !== ownerAlias(def)) steps.push({ op: 'prepare-port', name: br, alias: ownerAlias(def) });
  if (vxlanIsNew || vxlan?.alias !== ownerAlias(def)) steps.push({ op: 'prepare-port', name: vx, alias: ownerAlias(def) });
  if (vxlanIsNew || !vxlan?.up) steps.push({ op: 'up', name: vx });
  if (bridgeIsNew || !bridge?.up) steps.push({ op: 'up', name: br });

  // Unicast peers: one all-zero fdb entry per remote, and no others.
  const wantDsts = floodingMode(def) === 'unicast' ? def.remotes : [];
  const haveDsts = vxlanIsNew ? [] : (observed.floodDsts.get(vx) ?? []);
  for (const dst of wantDsts) if (!haveDsts.includes(dst)) steps.push({ op: 'flood-add', dev: vx, dst });
  for (const dst of haveDsts) if (!wantDsts.includes(dst)) steps.push({ op: 'flood-del', dev: vx, dst });

  // Replaced devices go first, so their names are free for the new ones.
  return [...deletes, ...steps];
}

/** What EVPN asks of the vxlan as a bridge port. */
export const EVPN_PORT: BridgePortAttrs = { learning: false, neighSuppress: true };

/**
 * An EVPN pair's extras: the vxlan port learns nothing and suppresses ARP/ND
 * (zebra answers from the MACs and IPs BGP brought), and the bridge accepts
 * the ARP/NA guests announce themselves with, so zebra learns their IPs.
 * `bridge`/`vxlan` are the devices as they are, undefined when just made.
 */
function evpnSteps(br: string, vx: string, bridge: Link | undefined, vxlan: Link | undefined): Step[] {
  const steps: Step[] = [];
  const port = vxlan?.bridgePort;
  if (!port || port.learning !== EVPN_PORT.learning || port.neighSuppress !== EVPN_PORT.neighSuppress) {
    steps.push({ op: 'set-port', name: vx, port: EVPN_PORT });
  }
  // arp_accept exists on every kernel vxvirt runs on; accept_untracked_na only
  // from 5.18: an existing bridge without it is left as it is.
  if (!bridge || bridge.neigh?.arpAccept !== 1) steps.push({ op: 'sysctl', device: br, key: 'arpAccept', value: 1, optional: false });
  const na = bridge?.neigh?.acceptUntrackedNa;
  if (!bridge || (na !== undefined && na !== 1)) steps.push({ op: 'sysctl', device: br, key: 'acceptUntrackedNa', value: 1, optional: true });
  return steps;
}

export interface TeardownPlan {
  steps: Step[];
  /** Why devices were left in place, if they were (for a warning). */
  kept?: string;
}

/** The names of the devices of VNI `vni`'s pair that exist and are vxvirt's. */
export function ownedDevices(vni: number, observed: Observed): string[] {
  return [bridgeName(vni), vxlanName(vni)].filter((name) => isOwned(observed.links.get(name), vni));
}

/**
 * Steps that remove an unused network's pair. Only devices in vxvirt's group
 * for this VNI are removed; a bridge that still has ports other than our vxlan
 * (a guest vxvirt does not know about) is left alone rather than pulled from
 * under that guest.
 */
export function planTeardown(vni: number, observed: Observed): TeardownPlan {
  const br = bridgeName(vni);
  const vx = vxlanName(vni);
  if (ownedDevices(vni, observed).length === 0) return { steps: [] };
  if (isOwned(observed.links.get(br), vni)) {
    const foreign = [...observed.links.values()]
      .filter((l) => l.master === br && l.name !== vx)
      .map((l) => l.name)
      .sort();
    if (foreign.length > 0) {
      return { steps: [], kept: `bridge ${br} still has ports ${foreign.join(', ')}; leaving ${br} and ${vx} in place` };
    }
  }
  // One request deletes both: one RCU grace period instead of two.
  return { steps: [{ op: 'delete-group', group: ownerGroup(vni) }] };
}

/** The lines of an `ip -batch` script for the link steps (fdb steps are not ip's). */
export function renderIpBatch(steps: readonly Step[]): string[] {
  const lines: string[] = [];
  for (const s of steps) {
    switch (s.op) {
      case 'add-bridge':
        lines.push(`link add ${s.name} group ${s.group} mtu ${s.mtu} type bridge`);
        break;
      case 'add-vxlan': {
        const a = s.attrs;
        const parts = [`link add ${s.name} group ${s.group} mtu ${s.mtu} type vxlan id ${a.id} dstport ${a.port}`];
        if (a.local) parts.push(`local ${a.local}`);
        if (a.remote) parts.push(`remote ${a.remote}`);
        if (a.group) parts.push(`group ${a.group}`);
        if (a.dev) parts.push(`dev ${a.dev}`);
        if (a.ttl) parts.push(`ttl ${a.ttl}`);
        parts.push(a.learning ? 'learning' : 'nolearning');
        lines.push(parts.join(' '));
        break;
      }
      case 'delete':
        lines.push(`link del dev ${s.name}`);
        break;
      case 'delete-group':
        lines.push(`link del group ${s.group}`);
        break;
      case 'set-mtu':
        lines.push(`link set dev ${s.name} mtu ${s.mtu}`);
        break;
      case 'set-master':
        lines.push(`link set dev ${s.name} master ${s.master}`);
        break;
      case 'prepare-port':
        // The host takes no part in the tenant's network: no IPv6 link-local
        // address (and so no DAD/RS packets) on the bridge or the vxlan.
        lines.push(`link set dev ${s.name} alias ${s.alias} addrgenmode none`);
        break;
      case 'up':
        lines.push(`link set dev ${s.name} up`);
        break;
      case 'set-port':
        lines.push(`link set dev ${s.name} type bridge_slave learning ${s.port.learning ? 'on' : 'off'} neigh_suppress ${s.port.neighSuppress ? 'on' : 'off'}`);
        break;
      case 'sysctl':
      case 'flood-add':
      case 'flood-del':
        break;
    }
  }
  return lines;
}

/** The lines of a `bridge -batch` script for the flood (all-zero fdb) steps. */
export function renderBridgeBatch(steps: readonly Step[]): string[] {
  const lines: string[] = [];
  for (const s of steps) {
    if (s.op === 'flood-add') lines.push(`fdb append 00:00:00:00:00:00 dev ${s.dev} dst ${s.dst} self permanent`);
    if (s.op === 'flood-del') lines.push(`fdb del 00:00:00:00:00:00 dev ${s.dev} dst ${s.dst} self`);
  }
  return lines;
}
