// What `vxvirt status` reports, gathered: each defined network's devices,
// users, libvirt network and drift, and vxvirt's devices and libvirt
// networks left over from networks no longer defined. It only reads — the
// host through Effects, libvirt through the Libvirt record, both replaceable
// by fakes — and works without libvirt (it then cannot tell unrecorded
// guests or libvirt networks). src/cli/networks.ts prints the result.
import { networkDrift, orphanPairs, unrecordedDetail, unrecordedGuests, type Drift } from './drift.ts';
import type { Libvirt } from './libvirt/index.ts';
import type { Effects } from './lifecycle.ts';
import { bridgeName, floodingMode, vxlanName, type NetworkDefinition } from './network-definition.ts';
import { guestPorts, isOwned, type Observed } from './plan.ts';
import { askLibvirtNetworks } from './reconcile-run.ts';
import { activeDomainFacts, libvirtNetworkDrift, type ActiveDomainFacts, type LibvirtNetworkFacts } from './reconcile.ts';
import type { LoadedDefinitions } from './store.ts';
import type { Users } from './users.ts';

export type DeviceView = { name: string; exists: false } | { name: string; exists: true; owned: boolean; mtu: number; up: boolean; master: string | null };

/** What status says of a libvirt network: whether the definition wants one, and libvirt's, if it could be asked. */
export type LibvirtNetworkStatus =
  | { wanted: boolean | null; checked: false; reason: string }
  | { wanted: boolean | null; checked: true; exists: boolean; ours: boolean; active: boolean; autostart: boolean; bridge: string | null; connections: number };

export interface DomainView {
  key: string;
  name: string;
  since: string;
}

/** A defined network's row. */
export interface NetworkRow {
  name: string;
  vni: number;
  defined: true;
  mode: ReturnType<typeof floodingMode>;
  dev: string;
  underlay: { exists: boolean; mtu?: number };
  bridge: DeviceView;
  vxlan: DeviceView;
  ports: string[];
  domains: DomainView[];
  libvirtNetwork: LibvirtNetworkStatus;
  drift: Drift[];
}

/** vxvirt's devices or libvirt network of a network that is not defined. */
export interface OrphanRow {
  name: string | null;
  vni: number;
  defined: false;
  bridge: DeviceView;
  vxlan: DeviceView;
  devices: string[];
  ports: string[];
  domains: DomainView[];
  libvirtNetwork: LibvirtNetworkStatus | null;
  drift: Drift[];
}

export interface HostStatus {
  rows: NetworkRow[];
  orphans: OrphanRow[];
}

function deviceView(name: string, vni: number, observed: Observed): DeviceView {
  const l = observed.links.get(name);
  return l ? { name, exists: true, owned: isOwned(l, vni), mtu: l.mtu, up: l.up, master: l.master ?? null } : { name, exists: false };
}

function libvirtNetworkStatus(wanted: boolean | null, name: string, facts: LibvirtNetworkFacts): LibvirtNetworkStatus {
  if (!facts.reachable) return { wanted, checked: false, reason: facts.reason };
  const n = facts.networks.find((x) => x.name === name);
  return {
    wanted,
    checked: true,
    exists: n !== undefined,
    ours: n?.ours ?? false,
    active: n?.active ?? false,
    autostart: n?.autostart ?? false,
    bridge: n?.vni !== undefined ? bridgeName(n.vni) : null,
    connections: n?.connections ?? 0,
  };
}

/** The running domains and their networks, if libvirt answers. */
async function runningDomains(lv: Libvirt): Promise<ActiveDomainFacts[] | undefined> {
  try {
    return (await lv.listActiveDomains()).flatMap((d) => {
      try {
        return [activeDomainFacts(d.uuid, d.name, d.liveXml)];
      } catch {
        return [];
      }
    });
  } catch {
    return undefined;
  }
}

const domainsOf = (users: Users): DomainView[] => Object.entries(users).map(([key, u]) => ({ key, name: u.name, since: u.since }));

interface Seen {
  observed: Observed;
  running: ActiveDomainFacts[] | undefined;
  lv: LibvirtNetworkFacts;
}

function networkRows({ defs }: LoadedDefinitions, seen: Seen, fx: Effects): NetworkRow[] {
  const { observed, running, lv } = seen;
  const unrecorded = running ? unrecordedGuests(defs, fx.readUsers, running) : [];
  return defs.map((def: NetworkDefinition): NetworkRow => {
    const users = fx.readUsers(def.name);
    const lvDrift = lv.reachable ? libvirtNetworkDrift(def, lv.networks.find((n) => n.name === def.name)) : undefined;
    const notRecorded = unrecorded.filter((u) => u.network === def.name).map((u): Drift => ({ kind: 'unrecorded', devices: [u.bridge], detail: unrecordedDetail(u) }));
    return {
      name: def.name,
      vni: def.vni,
      defined: true,
      mode: floodingMode(def),
      dev: def.dev,
      underlay: observed.links.has(def.dev) ? { exists: true, mtu: observed.links.get(def.dev)?.mtu } : { exists: false },
      bridge: deviceView(bridgeName(def.vni), def.vni, observed),
      vxlan: deviceView(vxlanName(def.vni), def.vni, observed),
      ports: guestPorts(def.vni, observed),
      domains: domainsOf(users),
      libvirtNetwork: libvirtNetworkStatus(def.libvirt ?? null, def.name, lv),
      drift: [...networkDrift(def, users, observed), ...(lvDrift ? [{ kind: 'libvirt-network' as const, devices: [], detail: lvDrift }] : []), ...notRecorded],
    };
  });
}

/** vxvirt's devices of networks that are no longer defined (known by the VNI in their device group), and its libvirt networks of them. */
function orphanRows({ defs, broken }: LoadedDefinitions, { observed, lv }: Seen, fx: Effects): OrphanRow[] {
  const orphans = orphanPairs(defs, observed).map((o): OrphanRow => {
    const users = o.name !== undefined && !broken.some((b) => b.name === o.name) ? fx.readUsers(o.name) : {};
    const drift: Drift = { kind: 'undefined', devices: o.devices, detail: `${o.devices.join('+')} belong to a network that is not defined` };
    return {
      name: o.name ?? null,
      vni: o.vni,
      defined: false,
      bridge: deviceView(bridgeName(o.vni), o.vni, observed),
      vxlan: deviceView(vxlanName(o.vni), o.vni, observed),
      devices: o.devices,
      ports: o.ports,
      domains: domainsOf(users),
      libvirtNetwork: o.name !== undefined ? libvirtNetworkStatus(null, o.name, lv) : null,
      drift: [drift],
    };
  });
  // libvirt networks vxvirt made for networks no longer defined (reconcile removes them).
  const defined = new Set([...defs.map((d) => d.name), ...broken.map((b) => b.name)]);
  const orphanNets = lv.reachable ? lv.networks.filter((n) => n.ours && !defined.has(n.name)).sort((a, b) => a.name.localeCompare(b.name)) : [];
  for (const n of orphanNets) {
    const detail = `libvirt network ${n.name} was made by vxvirt for a network that is not defined`;
    const row = orphans.find((o) => o.name === n.name);
    if (row) {
      row.drift.push({ kind: 'libvirt-network', devices: [], detail });
      continue;
    }
    const vni = n.vni ?? 0;
    orphans.push({
      name: n.name,
      vni,
      defined: false,
      bridge: deviceView(bridgeName(vni), vni, observed),
      vxlan: deviceView(vxlanName(vni), vni, observed),
      devices: [],
      ports: [],
      domains: [],
      libvirtNetwork: libvirtNetworkStatus(null, n.name, lv),
      drift: [{ kind: 'libvirt-network', devices: [], detail }],
    });
  }
  return orphans;
}

/**
 * Everything status shows. Unreadable definitions are named in warnings and
 * skipped: status must keep working when one file is broken (that is when it
 * is needed), as the hook does.
 */
export async function hostStatus(fx: Effects, lv: Libvirt): Promise<HostStatus> {
  const loaded = fx.loadDefinitions();
  for (const b of loaded.broken) fx.warn(`skipping network ${b.name}: ${b.error.message}`);
  const unicast = loaded.defs.filter((d) => floodingMode(d) === 'unicast').map((d) => vxlanName(d.vni));
  const [observed, running, facts] = await Promise.all([fx.observeAll(unicast), runningDomains(lv), askLibvirtNetworks(lv)]);
  // Said only when it matters: a network defined with --no-libvirt has no libvirt network to show.
  if (!facts.reachable && loaded.defs.some((d) => d.libvirt === true)) fx.warn(`libvirt networks not shown: ${facts.reason}`);
  const seen: Seen = { observed, running, lv: facts };
  return { rows: networkRows(loaded, seen, fx), orphans: orphanRows(loaded, seen, fx) };
}
