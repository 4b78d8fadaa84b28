import type { ArgumentsCamelCase, Argv, CommandModule } from 'yargs';
import { DefinitionError, LibvirtUnreachableError, warn } from '../errors.ts';
import { checkNoConflict, NAME_RULE, overlayMtu, validateDefinition, type NetworkDefinition } from '../network-definition.ts';
import * as iproute from '../iproute.ts';
import { removeUnusedPairs } from '../lifecycle.ts';
import { hasUsers, userNames } from '../users.ts';
import { defineLibvirtNetwork } from '../libvirt/index.ts';
import * as store from '../store.ts';
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
  learning?: boolean;
  evpn: boolean;
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
    evpn: argv.evpn,
  });
}

/** NAME and the options of a definition, as define-network and redefine take them. */
export function definitionOptions(y: Argv): Argv {
  return y
    .positional('name', { type: 'string', describe: `network name (${NAME_RULE})` })
    .option('vni', { type: 'string', describe: 'VXLAN network identifier, 1..16777215', demandOption: '--vni is required' })
    .option('dev', { type: 'string', describe: 'underlay device the VXLAN packets use', demandOption: '--dev is required' })
    .option('local', { type: 'string', describe: "source IP of the VXLAN packets (default, or 'auto': this host's own address on --dev, found when a guest starts)" })
    .option('remote', {
      type: 'string',
      describe: 'peer host: once for point-to-point, repeated for unicast peers (head-end replication)',
    })
    .option('group', { type: 'string', describe: 'multicast group instead of --remote' })
    .option('evpn', {
      type: 'boolean',
      default: false,
      describe: 'BGP EVPN instead of --remote/--group: FRR on each host announces its VTEP and guests (see vxvirt frr-config)',
    })
    .option('dstport', { type: 'string', describe: 'UDP destination port (default 4789)' })
    .option('mtu', { type: 'string', describe: 'overlay MTU (default: underlay MTU - 50, or - 70 over IPv6)' })
    .option('ttl', { type: 'string', describe: 'TTL of the VXLAN packets, 1..255 (default: inherit)' })
    .option('learning', { type: 'boolean', describe: 'learn remote MACs from received packets (default; --no-learning; never with --evpn)' }) as unknown as Argv;
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
      .example('$0 define-network tenant2 --vni 43 --dev ens47f1 --remote 192.168.8.100 --remote 192.168.8.101 --remote 192.168.8.102', 'unicast peers: the same command on every host (each sends from its own address and leaves itself out)')
      .example('$0 define-network tenant3 --vni 44 --dev ens47f1 --group 239.1.1.44', 'multicast: the same command on every host')
      .example('$0 define-network tenant4 --vni 45 --dev ens47f1 --evpn', 'BGP EVPN: FRR brings the other hosts (vxvirt frr-config)') as unknown as Argv<Args>,
  handler: async (argv: ArgumentsCamelCase<Args>) => {
    // The choice is recorded: reconcile makes the libvirt network of a definition that wants one.
    const def: NetworkDefinition = { ...definitionFromArgs(argv), libvirt: argv.libvirt };
    // Check the MTU against the underlay now if it is here; a host whose
    // underlay comes up later is checked again when a VM starts.
    const devMtu = await iproute.linkMtu(def.dev);
    let mtuNote: string;
    if (devMtu === undefined) {
      warn(`underlay device ${def.dev} does not exist on this host yet; VMs on ${def.name} cannot start until it does`);
      mtuNote = def.mtu === undefined ? 'MTU from the underlay' : `MTU ${def.mtu}`;
    } else {
      mtuNote = `MTU ${overlayMtu(def, devMtu)}`;
    }
    /** The definition this one replaces, if any, after refusing what must not be replaced. */
    const checkAgainst = (existing: NetworkDefinition[]): NetworkDefinition | undefined => {
      const previous = existing.find((d) => d.name === def.name);
      if (previous && !argv.replace) {
        throw new DefinitionError(`network ${def.name} is already defined: undefine it first, or use --replace`);
      }
      checkNoConflict(def, existing);
      // A new VNI means new device names: the old pair would be orphaned under guests still on it.
      const users = store.readUsers(def.name);
      if (previous && previous.vni !== def.vni && hasUsers(users)) {
        throw new DefinitionError(
          `--vni ${def.vni}: network ${def.name} is used by ${userNames(users).join(', ')} on VNI ${previous.vni}; stop them before changing its VNI`,
        );
      }
      return previous;
    };
    // Check first, then the libvirt network, then write: if libvirt refuses,
    // vxvirt has written nothing. If libvirtd cannot be reached at all, the
    // definition is written anyway (the hook needs no libvirt network) and
    // reconcile makes the libvirt network later. libvirt is not called under
    // the host lock, which the hooks that libvirtd runs may be waiting for.
    checkAgainst(store.listDefinitions());
    let libvirtNote = '';
    if (argv.libvirt) {
      try {
        const r = await defineLibvirtNetwork(def);
        if (r.note) warn(r.note);
        libvirtNote = r.action === 'unchanged' ? '; libvirt network unchanged' : `; libvirt network ${r.action}`;
      } catch (err) {
        if (!(err instanceof LibvirtUnreachableError)) throw err;
        warn(
          `libvirt network ${def.name} was not ${argv.replace ? 'created or updated' : 'created'} (${err.message}): \`vxvirt reconcile\` creates it once libvirt is reachable, or run this command again with --replace`,
        );
        libvirtNote = '; libvirt network not created yet';
      }
    }
    await store.withHostLock(`define-network ${def.name}`, async () => {
      const previous = checkAgainst(store.listDefinitions());
      store.writeDefinition(def);
      // Unused (checked above): remove the old VNI's pair if it is still there.
      if (previous && previous.vni !== def.vni) await removeUnusedPairs([previous]);
    });
    process.stdout.write(`defined network ${def.name}: VNI ${def.vni} on ${def.dev}, ${mtuNote}${libvirtNote}\n`);
  },
};
