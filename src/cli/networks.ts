// undefine-network, list-networks, status.
import type { ArgumentsCamelCase, Argv, CommandModule } from 'yargs';
import { DefinitionError, warn } from '../errors.ts';
import * as iproute from '../iproute.ts';
import { removeUnusedPairs } from '../lifecycle.ts';
import { undefineLibvirtNetwork } from '../libvirt.ts';
import { bridgeName, floodingMode, vxlanName, type NetworkDefinition } from '../network-definition.ts';
import { isOwned } from '../plan.ts';
import * as store from '../store.ts';
import { hasUsers, userNames } from '../users.ts';
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

export const status: CommandModule<object, JsonArgs> = {
  command: 'status',
  describe: "Show each network's devices on this host and the domains using it",
  builder: jsonExamples('status', 'bridge and VXLAN device state and users per network'),
  handler: async (argv: ArgumentsCamelCase<JsonArgs>) => {
    const defs = readableDefinitions();
    const observed = await iproute.observeAll();
    const rows = defs.map((def) => {
      const br = observed.links.get(bridgeName(def.vni));
      const vx = observed.links.get(vxlanName(def.vni));
      const device = (l: typeof br) =>
        l ? { name: l.name, exists: true, owned: isOwned(l, def.vni), mtu: l.mtu, up: l.up, master: l.master ?? null } : { name: null, exists: false };
      const ports = [...observed.links.values()].filter((l) => br && l.master === br.name && l.name !== vxlanName(def.vni)).map((l) => l.name);
      const users = store.readUsers(def.name);
      return {
        name: def.name,
        vni: def.vni,
        mode: floodingMode(def),
        dev: def.dev,
        underlay: observed.links.has(def.dev) ? { exists: true, mtu: observed.links.get(def.dev)?.mtu } : { exists: false },
        bridge: { ...device(br), name: bridgeName(def.vni) },
        vxlan: { ...device(vx), name: vxlanName(def.vni) },
        ports,
        domains: Object.entries(users).map(([key, u]) => ({ key, name: u.name, since: u.since })),
      };
    });
    if (argv.json) return printJson(rows);
    if (rows.length === 0) {
      process.stdout.write(`no networks defined (in ${store.networksDir()})\n`);
      return;
    }
    const dev = (d: { exists: boolean; owned?: boolean; up?: boolean }) =>
      !d.exists ? 'absent' : `${d.up ? 'up' : 'down'}${d.owned ? '' : ' (not vxvirt\'s)'}`;
    process.stdout.write(
      table(
        ['NAME', 'VNI', 'MODE', 'UNDERLAY', 'BRIDGE', 'VXLAN', 'MTU', 'DOMAINS'],
        rows.map((r) => [
          r.name,
          String(r.vni),
          r.mode,
          `${r.dev}${r.underlay.exists ? '' : ' (absent)'}`,
          `${r.bridge.name} ${dev(r.bridge)}`,
          `${r.vxlan.name} ${dev(r.vxlan)}`,
          'mtu' in r.bridge && r.bridge.mtu !== undefined ? String(r.bridge.mtu) : '-',
          r.domains.map((d) => d.name).sort().join(',') || '-',
        ]),
      ),
    );
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
      .option('libvirt', { type: 'boolean', default: true, describe: 'also remove the libvirt network of that name (--no-libvirt to keep it)' })
      .example('$0 undefine-network tenant1', 'refused while guests use it')
      .example('$0 undefine-network tenant1 --force', 'forget it anyway; the devices of running guests stay') as unknown as Argv<UndefineArgs>,
  handler: async (argv: ArgumentsCamelCase<UndefineArgs>) => {
    const refuseIfUsed = (name: string): void => {
      const users = store.readUsers(name);
      if (hasUsers(users) && !argv.force) {
        throw new DefinitionError(`network ${name} is used by ${userNames(users).join(', ')}: stop them first, or use --force`);
      }
    };
    // As in define-network: libvirt first and outside the host lock.
    refuseIfUsed(store.readDefinition(argv.name).name);
    if (argv.libvirt) await undefineLibvirtNetwork(argv.name);
    await store.withHostLock(`undefine-network ${argv.name}`, async () => {
      const def = store.readDefinition(argv.name);
      refuseIfUsed(def.name);
      await removeUnusedPairs([def]);
      store.removeDefinition(def.name);
    });
    process.stdout.write(`undefined network ${argv.name}\n`);
  },
};
