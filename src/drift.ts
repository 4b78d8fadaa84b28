// How the kernel differs from what vxvirt's state asks for, in words. Pure:
// `vxvirt status` shows these differences, `vxvirt reconcile` acts on them.
// The plan is planEnsure's: a network's devices have drifted exactly when
// planEnsure has steps for them, so status and the hook never disagree.
import { bridgeName, vxlanName, type NetworkDefinition } from './network-definition.ts';
import { isOwned, NEIGH_SYSCTLS, ownerGroup, planEnsure, type Link, type Observed, type Step, type VxlanAttrs } from './plan.ts';
import { hasUsers, userNames, type Users } from './users.ts';

/** One device's difference from the definition, as "was -> will be". */
export interface DeviceChange {
  device: string;
  /** Whether the device is missing (or not of its kind) and is created anew. */
  created: boolean;
  changes: string[];
}

const VXLAN_KEYS: ReadonlyArray<keyof VxlanAttrs> = ['id', 'port', 'dev', 'local', 'remote', 'group', 'ttl', 'learning'];
const shown = (v: unknown): string => (v === undefined || v === '' ? '(none)' : String(v));

/** The attributes in which a vxlan device differs from the wanted ones, as "remote A -> B". */
function vxlanDifferences(have: VxlanAttrs | undefined, want: VxlanAttrs): string[] {
  if (!have) return ['no vxlan attributes'];
  return VXLAN_KEYS.filter((k) => String(have[k] ?? '').toLowerCase() !== String(want[k] ?? '').toLowerCase()).map(
    (k) => `${k === 'dev' ? 'underlay' : k} ${shown(have[k])} -> ${shown(want[k])}`,
  );
}

/**
 * planEnsure's steps, described per device against what was observed. The
 * steps that follow a device's creation (attach, alias, up) are part of
 * "created" and not listed again.
 */
export function describeSteps(steps: readonly Step[], observed: Observed): DeviceChange[] {
  const byDevice = new Map<string, DeviceChange>();
  const entry = (device: string): DeviceChange => {
    let e = byDevice.get(device);
    if (!e) byDevice.set(device, (e = { device, created: false, changes: [] }));
    return e;
  };
  for (const s of steps) {
    switch (s.op) {
      case 'add-bridge':
      case 'add-vxlan': {
        const e = entry(s.name);
        e.created = true;
        const old = observed.links.get(s.name);
        const kind = s.op === 'add-bridge' ? 'bridge' : 'vxlan';
        if (!old) e.changes.push('missing -> created');
        else if (old.kind !== kind) e.changes.push(`a ${old.kind || 'device'}, not a ${kind} -> replaced`);
        else if (s.op === 'add-vxlan') e.changes.push(`${vxlanDifferences(old.vxlan, s.attrs).join(', ')} (replaced)`);
        else e.changes.push('replaced');
        break;
      }
      case 'set-mtu':
        entry(s.name).changes.push(`mtu ${observed.links.get(s.name)?.mtu ?? '?'} -> ${s.mtu}`);
        break;
      case 'set-master': {
        const e = entry(s.name);
        if (e.created) break;
        const master = observed.links.get(s.name)?.master;
        e.changes.push(`${master ? `port of ${master}` : 'not a port of any bridge'} -> port of ${s.master}`);
        break;
      }
      case 'prepare-port': {
        const e = entry(s.name);
        if (!e.created) e.changes.push(`alias ${shown(observed.links.get(s.name)?.alias)} -> ${s.alias}`);
        break;
      }
      case 'up': {
        const e = entry(s.name);
        if (!e.created) e.changes.push('down -> up');
        break;
      }
      case 'set-port': {
        const e = entry(s.name);
        if (e.created) break;
        const have = observed.links.get(s.name)?.bridgePort;
        const onOff = (b: boolean | undefined): string => (b === undefined ? '?' : b ? 'on' : 'off');
        if (have?.learning !== s.port.learning) e.changes.push(`port learning ${onOff(have?.learning)} -> ${onOff(s.port.learning)}`);
        if (have?.neighSuppress !== s.port.neighSuppress) e.changes.push(`neigh_suppress ${onOff(have?.neighSuppress)} -> ${onOff(s.port.neighSuppress)}`);
        break;
      }
      case 'sysctl': {
        const e = entry(s.device);
        if (e.created) break;
        const name = NEIGH_SYSCTLS[s.key](s.device);
        e.changes.push(`${name} ${shown(observed.links.get(s.device)?.neigh?.[s.key])} -> ${s.value}`);
        break;
      }
      case 'flood-add': {
        const e = entry(s.dev);
        if (!e.created) e.changes.push(`no flood entry for ${s.dst} -> added`);
        break;
      }
      case 'flood-del':
        entry(s.dev).changes.push(`flood entry for ${s.dst} -> removed`);
        break;
      case 'delete':
      case 'delete-group':
        // Part of a replacement, described by the add that follows.
        break;
    }
  }
  return [...byDevice.values()].filter((e) => e.changes.length > 0).sort((a, b) => a.device.localeCompare(b.device));
}

/** One difference `vxvirt status` reports for a network. */
export interface Drift {
  /**
   * device: differs from the definition; missing: used but absent; unused:
   * exists without users; error: cannot be made as defined; undefined: the
   * devices of a network no longer defined; libvirt-network: its libvirt
   * network is not as the definition wants it (reconcile.ts, step 4);
   * unrecorded: a running domain on the network that is not one of its users.
   */
  kind: 'device' | 'missing' | 'unused' | 'error' | 'undefined' | 'libvirt-network' | 'unrecorded';
  devices: string[];
  detail: string;
}

/** The devices of group 0x76000000+VNI (vxvirt's) among the observed ones, by name. */
export function ownedDevices(vni: number, observed: Observed): string[] {
  return [...observed.links.values()]
    .filter((l) => isOwned(l, vni))
    .map((l) => l.name)
    .sort();
}

/** The ports of vxbrN other than vxlanN: guests' taps, or something vxvirt does not know. */
export function guestPorts(vni: number, observed: Observed): string[] {
  return [...observed.links.values()]
    .filter((l) => l.master === bridgeName(vni) && l.name !== vxlanName(vni))
    .map((l) => l.name)
    .sort();
}

/**
 * How a defined network's devices differ from what its users need: with
 * users, every step planEnsure would take; without, devices of vxvirt's that
 * are left over. An empty list means in sync.
 */
export function networkDrift(def: NetworkDefinition, users: Users, observed: Observed): Drift[] {
  const owned = ownedDevices(def.vni, observed);
  if (!hasUsers(users)) {
    return owned.length > 0 ? [{ kind: 'unused', devices: owned, detail: `${owned.join('+')} exist but no domain uses them` }] : [];
  }
  let steps: Step[];
  try {
    steps = planEnsure(def, observed);
  } catch (err) {
    return [{ kind: 'error', devices: [], detail: (err as Error).message }];
  }
  return describeSteps(steps, observed).map((c) => {
    const missing = c.created && !observed.links.has(c.device);
    return {
      kind: missing ? 'missing' : 'device',
      devices: [c.device],
      detail: missing ? `${c.device} is missing, used by ${userNames(users).join(', ')}` : `${c.device}: ${c.changes.join(', ')}`,
    };
  });
}

const GROUP_BASE = ownerGroup(0);
const MAX_VNI = 0xffffff;

/** The VNI whose ownership group a device is in, if it is one of vxvirt's. */
export function ownedVni(link: Link): number | undefined {
  const vni = link.group - GROUP_BASE;
  return vni >= 1 && vni <= MAX_VNI ? vni : undefined;
}

/** Devices vxvirt made for a VNI that no definition has (a network undefined or given another VNI). */
export interface OrphanPair {
  vni: number;
  /** The network they were made for, from their alias `vxvirt:NAME`, if they have one. */
  name?: string;
  devices: string[];
  /** Ports of vxbrN other than vxlanN. */
  ports: string[];
}

const ALIAS = /^vxvirt:(.+)$/;

export function orphanPairs(defs: readonly NetworkDefinition[], observed: Observed): OrphanPair[] {
  const defined = new Set(defs.map((d) => d.vni));
  const byVni = new Map<number, OrphanPair>();
  for (const link of observed.links.values()) {
    const vni = ownedVni(link);
    if (vni === undefined || defined.has(vni)) continue;
    let pair = byVni.get(vni);
    if (!pair) byVni.set(vni, (pair = { vni, devices: [], ports: guestPorts(vni, observed) }));
    pair.devices.push(link.name);
    const name = link.alias !== undefined ? ALIAS.exec(link.alias)?.[1] : undefined;
    if (name !== undefined && pair.name === undefined) pair.name = name;
  }
  for (const p of byVni.values()) p.devices.sort();
  return [...byVni.values()].sort((a, b) => a.vni - b.vni);
}

/** A running domain (libvirt's word) with a NIC on a vxvirt network that it is not recorded as a user of. */
export interface UnrecordedGuest {
  network: string;
  bridge: string;
  domain: string;
  uuid: string;
}

/**
 * Running domains on a vxvirt network that its users do not list: a NIC
 * hot-plugged with `<interface type='bridge'>` onto a vxbrN (no hook runs
 * for that), or state lost. Its pair stays only while someone else uses it,
 * and its stop releases nothing: `vxvirt reconcile` records it. `active`
 * lists each running domain's bridges and libvirt networks (reconcile.ts's
 * ActiveDomainFacts).
 */
export function unrecordedGuests(
  defs: readonly NetworkDefinition[],
  usersOf: (network: string) => Users,
  active: ReadonlyArray<{ uuid: string; name: string; bridges: readonly string[]; networks: readonly string[] }>,
): UnrecordedGuest[] {
  const out: UnrecordedGuest[] = [];
  for (const d of active) {
    const seen = new Set<string>();
    for (const def of defs) {
      const bridge = bridgeName(def.vni);
      if (seen.has(def.name) || !(d.bridges.includes(bridge) || d.networks.includes(def.name))) continue;
      seen.add(def.name);
      const recorded = Object.keys(usersOf(def.name)).some((k) => k.toLowerCase() === d.uuid.toLowerCase() || k === d.name);
      if (!recorded) out.push({ network: def.name, bridge, domain: d.name, uuid: d.uuid });
    }
  }
  return out.sort((a, b) => a.network.localeCompare(b.network) || a.domain.localeCompare(b.domain));
}

/** What `vxvirt status` says about one. */
export const unrecordedDetail = (u: UnrecordedGuest): string =>
  `${u.domain} runs on ${u.bridge} but is not recorded as a user (a NIC hot-plugged with type='bridge'?): vxvirt does not count it, and its stop releases nothing`;
