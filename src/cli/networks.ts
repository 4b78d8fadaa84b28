// undefine-network, list-networks, status.
import type { ArgumentsCamelCase, Argv, CommandModule } from 'yargs';
import { DefinitionError, LibvirtUnreachableError, oneLine, warn } from '../errors.ts';
import { guestPorts, networkDrift, orphanPairs, unrecordedDetail, unrecordedGuests, type Drift } from '../drift.ts';
import * as iproute from '../iproute.ts';
import { removeUnusedPairs } from '../lifecycle.ts';
import { listActiveDomains, listLibvirtNetworks, undefineLibvirtNetwork } from '../libvirt/index.ts';
import { activeDomainFacts, libvirtNetworkDrift, type ActiveDomainFacts, type LibvirtNetworkFacts, type LibvirtNetworkView } from '../reconcile.ts';
import { bridgeName, floodingMode, vxlanName, type NetworkDefinition } from '../network-definition.ts';
import { isOwned, type Observed } from '../plan.ts';
import * as store from '../store.ts';
import { hasUsers, userNames, type Users } from '../users.ts';
import { printJson, table } from './output.ts';

const peersOf = (def: NetworkDefinition): string => (def.evpn ? 'BGP' : (def.group ?? def.remotes.join(',')));

function networkSummary(def: NetworkDefinition) {
  return {
    name: def.name,
    vni: def.vni,
    mode: floodingMode(def),
    dev: def.dev,
    local: def.local ?? null,
    remotes: def.remotes,
    group: def.group ?? null,
    dstport: def.dstport,
    mtu: def.mtu ?? null,
    ttl: def.ttl ?? null,
    learning: def.learning,
    evpn: def.evpn === true,
    libvirt: def.libvirt ?? null,
    bridge: bridgeName(def.vni),
    vxlan: vxlanName(def.vni),
  };
}

/**
 * The readable definitions, each unreadable one named in a warning: the
 * commands that show what is there must keep working when one file is broken
 * (that is when they are needed), as the hook does.
 */
function readableDefinitions(): NetworkDefinition[] {
  const loaded = store.loadDefinitions();
  for (const b of loaded.broken) warn(`skipping network ${b.name}: ${b.error.message}`);
  return loaded.defs;
}

interface JsonArgs {
  json: boolean;
}
const jsonOption = (y: Argv) => y.option('json', { type: 'boolean', default: false, describe: 'print JSON' }) as unknown as Argv<JsonArgs>;
/** Both forms of a read-only command, as --help examples. */
const jsonExamples = (command: string, what: string) => (y: Argv) =>
  jsonOption(y)
    .example(`$0 ${command}`, `${what}, as a table`)
    .example(`$0 ${command} --json`, `the same as JSON, for scripts`);

export const listNetworks: CommandModule<object, JsonArgs> = {
  command: 'list-networks',
  describe: 'List the defined networks',
  builder: jsonExamples('list-networks', 'the definitions on this host'),
  handler: (argv: ArgumentsCamelCase<JsonArgs>) => {
    const defs = readableDefinitions();
    if (argv.json) return printJson(defs.map(networkSummary));
    if (defs.length === 0) {
      process.stdout.write(`no networks defined (in ${store.networksDir()})\n`);
      return;
    }
    process.stdout.write(
      table(
        ['NAME', 'VNI', 'MODE', 'DEV', 'LOCAL', 'PEERS', 'PORT', 'MTU'],
        defs.map((d) => [d.name, String(d.vni), floodingMode(d), d.dev, d.local ?? 'auto', peersOf(d), String(d.dstport), d.mtu ? String(d.mtu) : 'auto']),
      ),
    );
  },
};

type DeviceView = { name: string; exists: false } | { name: string; exists: true; owned: boolean; mtu: number; up: boolean; master: string | null };

function deviceView(name: string, vni: number, observed: Observed): DeviceView {
  const l = observed.links.get(name);
  return l ? { name, exists: true, owned: isOwned(l, vni), mtu: l.mtu, up: l.up, master: l.master ?? null } : { name, exists: false };
}

/** What status says of a libvirt network: whether the definition wants one, and libvirt's, if it could be asked. */
type LibvirtNetworkStatus =
  | { wanted: boolean | null; checked: false; reason: string }
  | { wanted: boolean | null; checked: true; exists: boolean; ours: boolean; active: boolean; autostart: boolean; bridge: string | null; connections: number };

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

/** The LIBVIRT column: the libvirt network of that name. */
function libvirtCell(s: LibvirtNetworkStatus): string {
  if (!s.checked) return '?';
  if (!s.exists) return s.wanted === true ? 'absent' : '-';
  if (!s.ours) return "not vxvirt's";
  return s.active ? 'active' : 'inactive';
}

async function askLibvirtNetworks(): Promise<LibvirtNetworkFacts> {
  try {
    const networks: LibvirtNetworkView[] = await listLibvirtNetworks();
    return { reachable: true, networks };
  } catch (err) {
    return { reachable: false, reason: oneLine(err) };
  }
}

/**
 * The running domains and their networks, if libvirt answers; status works
 * without libvirt, it then cannot tell unrecorded guests.
 */
async function runningDomains(): Promise<ActiveDomainFacts[] | undefined> {
  try {
    return (await listActiveDomains()).flatMap((d) => {
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

const domainsOf = (users: Users) => Object.entries(users).map(([key, u]) => ({ key, name: u.name, since: u.since }));

export const status: CommandModule<object, JsonArgs> = {
  command: 'status',
  describe: "Show each network's devices on this host, the domains using it, and where devices and state have drifted",
  builder: jsonExamples('status', 'bridge and VXLAN device state, users and drift per network'),
  handler: async (argv: ArgumentsCamelCase<JsonArgs>) => {
    const { defs, broken } = store.loadDefinitions();
    for (const b of broken) warn(`skipping network ${b.name}: ${b.error.message}`);
    const unicast = defs.filter((d) => floodingMode(d) === 'unicast').map((d) => vxlanName(d.vni));
    const [observed, running, lv] = await Promise.all([iproute.observeAll(unicast), runningDomains(), askLibvirtNetworks()]);
    // Said only when it matters: a network defined with --no-libvirt has no libvirt network to show.
    if (!lv.reachable && defs.some((d) => d.libvirt === true)) warn(`libvirt networks not shown: ${lv.reason}`);
    const unrecorded = running ? unrecordedGuests(defs, store.readUsers, running) : [];
    const rows = defs.map((def) => {
      const users = store.readUsers(def.name);
      const libvirtNetwork = libvirtNetworkStatus(def.libvirt ?? null, def.name, lv);
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
        libvirtNetwork,
        drift: [...networkDrift(def, users, observed), ...(lvDrift ? [{ kind: 'libvirt-network' as const, devices: [], detail: lvDrift }] : []), ...notRecorded],
      };
    });
    // vxvirt's devices of networks that are no longer defined, known by the VNI in their device group.
    const orphans = orphanPairs(defs, observed).map((o) => {
      const users = o.name !== undefined && !broken.some((b) => b.name === o.name) ? store.readUsers(o.name) : {};
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
    if (argv.json) return printJson([...rows, ...orphans]);
    if (rows.length === 0 && orphans.length === 0) {
      process.stdout.write(`no networks defined (in ${store.networksDir()})\n`);
      return;
    }
    const dev = (d: DeviceView) => (!d.exists ? 'absent' : `${d.up ? 'up' : 'down'}${d.owned ? '' : " (not vxvirt's)"}`);
    const names = (ds: Array<{ name: string }>) => ds.map((d) => d.name).sort().join(',') || '-';
    const out: string[] = [];
    if (rows.length > 0) {
      out.push(
        table(
          ['NAME', 'VNI', 'MODE', 'UNDERLAY', 'BRIDGE', 'VXLAN', 'MTU', 'DOMAINS', 'LIBVIRT'],
          rows.map((r) => [
            r.name,
            String(r.vni),
            r.mode,
            `${r.dev}${r.underlay.exists ? '' : ' (absent)'}`,
            `${r.bridge.name} ${dev(r.bridge)}`,
            `${r.vxlan.name} ${dev(r.vxlan)}`,
            r.bridge.exists ? String(r.bridge.mtu) : '-',
            names(r.domains),
            libvirtCell(r.libvirtNetwork),
          ]),
        ),
      );
    }
    const orphanDevices = orphans.filter((o) => o.devices.length > 0);
    if (orphanDevices.length > 0) {
      out.push(`\nvxvirt's devices of networks no longer defined:\n`);
      out.push(table(['VNI', 'NETWORK', 'DEVICES', 'PORTS', 'DOMAINS'], orphanDevices.map((o) => [String(o.vni), o.name ?? '?', o.devices.join('+'), o.ports.join(',') || '-', names(o.domains)])));
    }
    const drifted = rows.filter((r) => r.drift.length > 0);
    if (drifted.length > 0 || orphans.length > 0) {
      out.push('\ndrift (`vxvirt reconcile` converges it):\n');
      for (const r of drifted) for (const d of r.drift) out.push(`  ${r.name}: ${d.detail}\n`);
      for (const o of orphans) {
        for (const d of o.drift) {
          if (d.kind === 'libvirt-network') out.push(`  ${o.name}: ${d.detail}\n`);
          else out.push(`  VNI ${o.vni}${o.name ? ` (network ${o.name})` : ''}: ${d.detail}${o.domains.length > 0 ? `, used by ${names(o.domains)}` : ''}\n`);
        }
      }
    }
    process.stdout.write(out.join(''));
  },
};

interface UndefineArgs {
  name: string;
  force: boolean;
  libvirt: boolean;
}

export const undefineNetwork: CommandModule<object, UndefineArgs> = {
  command: 'undefine-network <name>',
  describe: 'Forget a network, removing its devices if no domain uses it',
  builder: (y: Argv) =>
    y
      .positional('name', { type: 'string' })
      .option('force', { type: 'boolean', default: false, describe: 'forget it even while domains use it (their devices stay)' })
      .option('libvirt', {
        type: 'boolean',
        default: true,
        describe: "also remove vxvirt's libvirt network of that name (--no-libvirt: do not ask libvirt now; reconcile removes it later)",
      })
      .example('$0 undefine-network tenant1', 'refused while guests use it')
      .example('$0 undefine-network tenant1 --force', 'forget it anyway; the devices of running guests stay') as unknown as Argv<UndefineArgs>,
  handler: async (argv: ArgumentsCamelCase<UndefineArgs>) => {
    const refuseIfUsed = (name: string): void => {
      const users = store.readUsers(name);
      if (hasUsers(users) && !argv.force) {
        throw new DefinitionError(`network ${name} is used by ${userNames(users).join(', ')}: stop them first, or use --force`);
      }
    };
    // As in define-network: libvirt first and outside the host lock. If
    // libvirtd cannot be reached, the definition is forgotten anyway and
    // reconcile removes the libvirt network (vxvirt's mark is in it) later.
    refuseIfUsed(store.readDefinition(argv.name).name);
    let libvirtLater: string | undefined;
    if (argv.libvirt) {
      try {
        await undefineLibvirtNetwork(argv.name);
      } catch (err) {
        if (!(err instanceof LibvirtUnreachableError)) throw err;
        libvirtLater = err.message;
      }
    }
    await store.withHostLock(`undefine-network ${argv.name}`, async () => {
      const def = store.readDefinition(argv.name);
      refuseIfUsed(def.name);
      await removeUnusedPairs([def]);
      store.removeDefinition(def.name);
    });
    if (libvirtLater !== undefined) {
      warn(`libvirt network ${argv.name} was not removed (${libvirtLater}): \`vxvirt reconcile\` removes it, if vxvirt made it, once libvirt is reachable`);
    }
    process.stdout.write(`undefined network ${argv.name}\n`);
  },
};
