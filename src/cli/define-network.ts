import type { ArgumentsCamelCase, Argv, CommandModule } from 'yargs';
import { realLibvirt } from '../libvirt/index.ts';
import { realEffects } from '../lifecycle.ts';
import { NAME_RULE, validateDefinition, type NetworkDefinition } from '../network-definition.ts';
import { defineNetwork as defineNetworkTx } from '../network-transactions.ts';
import { list, single } from './options.ts';

/** The options that make up a definition (define-network and redefine). */
export interface DefinitionArgs {
  name: string;
  vni?: unknown;
  dev?: unknown;
  local?: unknown;
  remote?: unknown;
  group?: unknown;
  dstport?: unknown;
  mtu?: unknown;
  ttl?: unknown;
  learning: boolean;
}

interface Args extends DefinitionArgs {
  replace: boolean;
  libvirt: boolean;
}

export function definitionFromArgs(argv: DefinitionArgs): NetworkDefinition {
  return validateDefinition({
    name: argv.name,
    vni: single('vni', argv.vni),
    dev: single('dev', argv.dev),
    local: single('local', argv.local),
    remotes: list(argv.remote),
    group: single('group', argv.group),
    dstport: single('dstport', argv.dstport),
    mtu: single('mtu', argv.mtu),
    ttl: single('ttl', argv.ttl),
    learning: argv.learning,
  });
}

/** NAME and the options of a definition, as define-network and redefine take them. */
export function definitionOptions(y: Argv): Argv {
  return y
    .positional('name', { type: 'string', describe: `network name (${NAME_RULE})` })
    .option('vni', { type: 'string', describe: 'VXLAN network identifier, 1..16777215', demandOption: '--vni is required' })
    .option('dev', { type: 'string', describe: 'underlay device the VXLAN packets use', demandOption: '--dev is required' })
    .option('local', { type: 'string', describe: 'source IP of the VXLAN packets (this host)' })
    .option('remote', {
      type: 'string',
      describe: 'peer host: once for point-to-point, repeated for unicast peers (head-end replication)',
    })
    .option('group', { type: 'string', describe: 'multicast group instead of --remote' })
    .option('dstport', { type: 'string', describe: 'UDP destination port (default 4789)' })
    .option('mtu', { type: 'string', describe: 'overlay MTU (default: underlay MTU - 50, or - 70 over IPv6)' })
    .option('ttl', { type: 'string', describe: 'TTL of the VXLAN packets, 1..255 (default: inherit)' })
    .option('learning', { type: 'boolean', default: true, describe: 'learn remote MACs from received packets (--no-learning)' }) as unknown as Argv;
}

export const defineNetwork: CommandModule<object, Args> = {
  command: 'define-network <name>',
  describe: 'Record a VXLAN network: its VNI, underlay device and flooding mode',
  builder: (y: Argv) =>
    definitionOptions(y)
      .option('replace', { type: 'boolean', default: false, describe: 'replace an existing definition of the same name' })
      .option('libvirt', {
        type: 'boolean',
        default: true,
        describe: 'also define a libvirt network NAME that bridges to vxbrN, for virt-install/virt-manager (--no-libvirt to skip)',
      })
      .example('$0 define-network tenant1 --vni 42 --dev ens47f1 --local 192.168.8.100 --remote 192.168.8.101', 'point-to-point to one other host')
      .example('$0 define-network tenant2 --vni 43 --dev ens47f1 --remote 192.168.8.101 --remote 192.168.8.102', 'unicast peers: each host lists all the others')
      .example('$0 define-network tenant3 --vni 44 --dev ens47f1 --group 239.1.1.44', 'multicast: the same command on every host') as unknown as Argv<Args>,
  handler: async (argv: ArgumentsCamelCase<Args>) => {
    // The choice is recorded: reconcile makes the libvirt network of a definition that wants one.
    const def: NetworkDefinition = { ...definitionFromArgs(argv), libvirt: argv.libvirt };
    const r = await defineNetworkTx(def, { replace: argv.replace, libvirt: argv.libvirt }, realEffects, realLibvirt);
    const mtuNote = r.mtu !== undefined ? `MTU ${r.mtu}` : def.mtu === undefined ? 'MTU from the underlay' : `MTU ${def.mtu}`;
    const libvirtNote =
      r.libvirt === undefined
        ? ''
        : r.libvirt === 'not-created'
          ? '; libvirt network not created yet'
          : r.libvirt === 'unchanged'
            ? '; libvirt network unchanged'
            : `; libvirt network ${r.libvirt}`;
    process.stdout.write(`defined network ${def.name}: VNI ${def.vni} on ${def.dev}, ${mtuNote}${libvirtNote}\n`);
  },
};
