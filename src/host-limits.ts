// Where the host says no: the kernel's limits vxvirt can run into, what they
// are, and what to do about them. Pure — the effectful callers read the
// sysctl and the devices (lifecycle.ts only after the kernel has refused, so
// the hook's happy path never pays for it; check-facts.ts for `vxvirt check`).
//
// Multicast groups. A VXLAN device joins its group on the underlay when it
// goes up, through the one UDP socket the kernel keeps per network namespace,
// destination port and address family (every VXLAN device of that port shares
// it). A socket joins a limited number of groups (measured on Linux 6.18 in a
// private namespace, where both sysctls are per network namespace; older
// kernels have one optmem_max for the whole host):
//   - IPv4: at most net.ipv4.igmp_max_memberships (default 20). The next join
//     fails with ENOBUFS, "No buffer space available".
//   - IPv6: no count; each membership takes socket option memory, at most
//     net.core.optmem_max bytes (default 20480 on older kernels, 131072 on
//     recent ones: hundreds to thousands of groups). The next join fails with ENOMEM,
//     "Cannot allocate memory". IPv4 memberships take that memory too.
// A group counts once per underlay device: two VNIs with the same group on
// the same device join it once (the kernel sees that the group is in use),
// the same group on another device is another membership.
import type { NetworkDefinition } from './network-definition.ts';
import { floodingMode, underlayFamily, vxlanName } from './network-definition.ts';
import { isOwned, type Link } from './plan.ts';

export const IGMP_MAX_MEMBERSHIPS = 'net.ipv4.igmp_max_memberships';
export const OPTMEM_MAX = 'net.core.optmem_max';

/** The sysctl that limits the groups a VXLAN socket of this family joins. */
export const groupLimitSysctl = (family: 4 | 6): string => (family === 4 ? IGMP_MAX_MEMBERSHIPS : OPTMEM_MAX);

/** Where /proc/sys shows a sysctl (the reading process's network namespace for net.*). */
export const sysctlPath = (name: string): string => `/proc/sys/${name.replace(/\./g, '/')}`;

/** `sysctl -w` and a file in /etc/sysctl.d/: how an operator raises a limit for good. */
function raise(sysctl: string, value: number): string {
  return `raise ${sysctl} (sysctl -w ${sysctl}=${value}; to keep it after a reboot, put ${sysctl} = ${value} in /etc/sysctl.d/90-vxvirt.conf)`;
}
const SHARE = 'or let several networks share one group (--group may be the same for several VNIs; each VNI still gets only its own traffic)';

/**
 * Whether an error of bringing up `def`'s VXLAN device is the kernel refusing
 * to join one more multicast group (as iproute.ts reports a failed step).
 */
export function isGroupJoinRefusal(def: NetworkDefinition, message: string): boolean {
  if (floodingMode(def) !== 'multicast') return false;
  if (!message.includes(`link set dev ${vxlanName(def.vni)} up`)) return false;
  return /No buffer space available|Cannot allocate memory/.test(message);
}

/** One membership of a VXLAN socket: a group on an underlay device, and the devices that need it. */
export interface Membership {
  group: string;
  dev: string;
  devices: string[];
}

/**
 * The memberships that the socket `def`'s device would join through already
 * holds: VXLAN devices that are up, with a group of the same family, on the
 * same destination port — split into vxvirt's and the others.
 */
export function socketMemberships(def: NetworkDefinition, links: Iterable<Link>): { vxvirt: Membership[]; other: Membership[] } {
  const family = underlayFamily(def);
  const out = { vxvirt: new Map<string, Membership>(), other: new Map<string, Membership>() };
  for (const l of links) {
    const v = l.vxlan;
    if (l.kind !== 'vxlan' || !v || !l.up || !v.group || !v.dev || v.port !== def.dstport) continue;
    if ((v.group.includes(':') ? 6 : 4) !== family) continue;
    const key = `${v.group.toLowerCase()}%${v.dev}`;
    const map = isOwned(l, v.id) ? out.vxvirt : out.other;
    const m = map.get(key) ?? { group: v.group, dev: v.dev, devices: [] };
    m.devices.push(l.name);
    map.set(key, m);
  }
  // A group a vxvirt device needs is vxvirt's, whoever else shares it.
  for (const key of out.vxvirt.keys()) out.other.delete(key);
  return { vxvirt: [...out.vxvirt.values()], other: [...out.other.values()] };
}

export interface GroupJoinFacts {
  /** The limit's value in this host's network namespace; undefined when it could not be read. */
  limit: number | undefined;
  /** What the VXLAN socket has joined; undefined when the devices could not be read. */
  memberships: { vxvirt: Membership[]; other: Membership[] } | undefined;
}

/**
 * The one line that replaces the kernel's bare "No buffer space available":
 * which limit, its value here, how many groups are joined, and the two ways out.
 */
export function groupJoinMessage(def: NetworkDefinition, kernelMessage: string, facts: GroupJoinFacts): string {
  const family = underlayFamily(def);
  const sysctl = groupLimitSysctl(family);
  const { limit, memberships } = facts;
  const joined = memberships?.vxvirt.length ?? 0;
  const others = memberships?.other.length ?? 0;
  const socket = `on UDP port ${def.dstport}`;
  const count = !memberships
    ? `the groups VXLAN devices ${socket} have joined could not be read`
    : `vxvirt's VXLAN devices ${socket} have joined ${joined} group${joined === 1 ? '' : 's'}${others > 0 ? ` and other VXLAN devices ${others} more` : ''}`;
  const refused = `the kernel refused to join multicast group ${def.group} on ${def.dev} (${kernelMessage.trim()})`;
  if (family === 4) {
    const value = limit === undefined ? `${sysctl} (could not be read)` : `${sysctl} = ${limit}`;
    const next = Math.max(2 * (limit ?? 20), joined + others + 1);
    return `${refused}: a host joins at most ${value} IPv4 groups per VXLAN port (a group counts once per underlay device) and ${count}; ${raise(sysctl, next)}, ${SHARE}`;
  }
  const value = limit === undefined ? `${sysctl} (could not be read)` : `${sysctl} = ${limit} bytes`;
  const next = Math.max(2 * (limit ?? 0), 131072);
  return `${refused}: IPv6 groups of a VXLAN port take socket option memory, at most ${value}, and ${count}; ${raise(sysctl, next)}, ${SHARE}`;
}

// ---- vxvirt check -----------------------------------------------------------

/** The IPv4 groups the definitions need, per VXLAN port: what `vxvirt check` compares with the limit. */
export interface GroupBudget {
  port: number;
  memberships: Array<{ group: string; dev: string; networks: string[] }>;
}

/** Distinct (group, underlay device) pairs of the IPv4 multicast definitions, per destination port. */
export function ipv4GroupBudgets(defs: readonly NetworkDefinition[]): GroupBudget[] {
  const ports = new Map<number, Map<string, { group: string; dev: string; networks: string[] }>>();
  for (const d of defs) {
    if (floodingMode(d) !== 'multicast' || underlayFamily(d) !== 4 || !d.group) continue;
    const byKey = ports.get(d.dstport) ?? new Map();
    const key = `${d.group}%${d.dev}`;
    const m = byKey.get(key) ?? { group: d.group, dev: d.dev, networks: [] };
    m.networks.push(d.name);
    byKey.set(key, m);
    ports.set(d.dstport, byKey);
  }
  return [...ports].sort(([a], [b]) => a - b).map(([port, m]) => ({ port, memberships: [...m.values()] }));
}

/** How close to the limit `vxvirt check` starts warning. */
export const NEAR_LIMIT = 0.8;

/** What the hint of a check finding says to do. */
export function groupLimitHint(sysctl: string, value: number): string {
  return `${raise(sysctl, value)}, ${SHARE}`;
}
