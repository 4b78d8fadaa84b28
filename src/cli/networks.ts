// undefine-network, list-networks, status: options in, text or JSON out (the
// transaction is in src/network-transactions.ts, the survey in src/status.ts).
import type { ArgumentsCamelCase, Argv, CommandModule } from 'yargs';
import { warn } from '../errors.ts';
import { realLibvirt } from '../libvirt/index.ts';
import { realEffects } from '../lifecycle.ts';
import { bridgeName, floodingMode, vxlanName, type NetworkDefinition } from '../network-definition.ts';
import { undefineNetwork as undefineNetworkTx } from '../network-transactions.ts';
import { hostStatus, type DeviceView, type HostStatus, type LibvirtNetworkStatus } from '../status.ts';
import * as store from '../store.ts';
import { printJson, table } from './output.ts';

const peersOf = (def: NetworkDefinition): string => def.group ?? def.remotes.join(',');

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
        defs.map((d) => [d.name, String(d.vni), floodingMode(d), d.dev, d.local ?? '-', peersOf(d), String(d.dstport), d.mtu ? String(d.mtu) : 'auto']),
      ),
    );
  },
};

/** The LIBVIRT column: the libvirt network of that name. */
function libvirtCell(s: LibvirtNetworkStatus): string {
  if (!s.checked) return '?';
  if (!s.exists) return s.wanted === true ? 'absent' : '-';
  if (!s.ours) return "not vxvirt's";
  return s.active ? 'active' : 'inactive';
}

const deviceCell = (d: DeviceView) => (!d.exists ? 'absent' : `${d.up ? 'up' : 'down'}${d.owned ? '' : " (not vxvirt's)"}`);
const names = (ds: Array<{ name: string }>) => ds.map((d) => d.name).sort().join(',') || '-';

/** The drift lines, for the rows and the orphans that have any. */
function driftLines({ rows, orphans }: HostStatus): string[] {
  const out: string[] = [];
  const drifted = rows.filter((r) => r.drift.length > 0);
  if (drifted.length === 0 && orphans.length === 0) return out;
  out.push('\ndrift (`vxvirt reconcile` converges it):\n');
  for (const r of drifted) for (const d of r.drift) out.push(`  ${r.name}: ${d.detail}\n`);
  for (const o of orphans) {
    for (const d of o.drift) {
      if (d.kind === 'libvirt-network') out.push(`  ${o.name}: ${d.detail}\n`);
      else out.push(`  VNI ${o.vni}${o.name ? ` (network ${o.name})` : ''}: ${d.detail}${o.domains.length > 0 ? `, used by ${names(o.domains)}` : ''}\n`);
    }
  }
  return out;
}

function statusText(st: HostStatus): string {
  const { rows, orphans } = st;
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
          `${r.bridge.name} ${deviceCell(r.bridge)}`,
          `${r.vxlan.name} ${deviceCell(r.vxlan)}`,
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
  return [...out, ...driftLines(st)].join('');
}

export const status: CommandModule<object, JsonArgs> = {
  command: 'status',
  describe: "Show each network's devices on this host, the domains using it, and where devices and state have drifted",
  builder: jsonExamples('status', 'bridge and VXLAN device state, users and drift per network'),
  handler: async (argv: ArgumentsCamelCase<JsonArgs>) => {
    const st = await hostStatus(realEffects, realLibvirt);
    if (argv.json) return printJson([...st.rows, ...st.orphans]);
    if (st.rows.length === 0 && st.orphans.length === 0) {
      process.stdout.write(`no networks defined (in ${store.networksDir()})\n`);
      return;
    }
    process.stdout.write(statusText(st));
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
    await undefineNetworkTx(argv.name, { force: argv.force, libvirt: argv.libvirt }, realEffects, realLibvirt);
    process.stdout.write(`undefined network ${argv.name}\n`);
  },
};
