// set-peers and redefine: change a network that guests may be using. The
// definition is rewritten (atomically) and, if the network is in use on this
// host, its live devices are brought to it in place — under the host lock,
// so no hook's prepare or release interleaves. Changes a live vxlan device
// cannot take are refused while the network is in use (see redefine.ts).
import type { ArgumentsCamelCase, Argv, CommandModule } from 'yargs';
import { DefinitionError, VxvirtError, warn } from '../errors.ts';
import * as iproute from '../iproute.ts';
import { updateLiveNetwork } from '../lifecycle.ts';
import { logChange } from '../log.ts';
import { bridgeName, floodingMode, overlayMtu, validateDefinition, vxlanName, type NetworkDefinition } from '../network-definition.ts';
import { ownedDevices, type Step } from '../plan.ts';
import { describeChange, planRedefine, refusalMessage, vniMessage, type RedefinePlan } from '../redefine.ts';
import * as store from '../store.ts';
import { hasUsers, userNames } from '../users.ts';
import { definitionFromArgs, definitionOptions, type DefinitionArgs } from './define-network.ts';
import { list } from './options.ts';

interface Outcome {
  old: NetworkDefinition;
  next: NetworkDefinition;
  plan: RedefinePlan;
  /** Who or what uses the network here (for messages); undefined = not in use. */
  usedBy?: string;
  /** What the live update planned; undefined = no devices were touched. */
  live?: Step[];
  /** The overlay MTU before and after, when the underlay is here to tell. */
  mtu?: { from: number; to: number };
}

/** Why the network counts as in use here, or undefined: users recorded, or vxvirt's devices present. */
async function usage(def: NetworkDefinition): Promise<string | undefined> {
  const users = store.readUsers(def.name);
  if (hasUsers(users)) return `by ${userNames(users).join(', ')}`;
  const present = ownedDevices(def.vni, await iproute.observe({ devices: [bridgeName(def.vni), vxlanName(def.vni)] }));
  return present.length > 0 ? `its devices ${present.join(', ')} exist` : undefined;
}

/** The same error, with `suffix` added to its message. */
function withSuffix(err: unknown, suffix: string): unknown {
  if (!(err instanceof VxvirtError)) return err;
  return new (err.constructor as new (m: string) => VxvirtError)(`${err.message}${suffix}`);
}

/**
 * Under the host lock: read the definition, refuse what cannot be done,
 * write the new one, update the live devices. If the update fails, the old
 * definition is written back and its devices restored as far as possible,
 * so a failed command changes nothing.
 */
async function changeNetwork(name: string, command: string, makeNext: (old: NetworkDefinition) => NetworkDefinition): Promise<Outcome> {
  return store.withHostLock(`${command} ${name}`, async () => {
    const old = store.readDefinition(name);
    const next = makeNext(old);
    const plan = planRedefine(old, next);
    if (plan.changes.length === 0) return { old, next, plan };
    if (plan.vni) throw new DefinitionError(vniMessage(name, plan.vni));
    // As define-network: an --mtu the underlay cannot carry is refused now if the underlay is here.
    const devMtu = await iproute.linkMtu(next.dev);
    const newMtu = devMtu === undefined ? undefined : overlayMtu(next, devMtu);
    const mtu = devMtu === undefined || newMtu === undefined || next.dev !== old.dev ? undefined : { from: overlayMtuOr(old, devMtu), to: newMtu };
    const usedBy = await usage(old);
    if (usedBy && plan.refused.length > 0) throw new DefinitionError(refusalMessage(name, plan.refused, usedBy));
    store.writeDefinition(next);
    try {
      const live = await updateLiveNetwork(next);
      return { old, next, plan, usedBy, live, mtu };
    } catch (err) {
      store.writeDefinition(old);
      await updateLiveNetwork(old).catch((e: Error) => warn(`network ${name}: could not restore its devices: ${e.message}`));
      throw withSuffix(err, '; the definition is left as it was');
    }
  });
}

/** The overlay MTU of a stored definition, which an underlay changed since may no longer allow. */
function overlayMtuOr(def: NetworkDefinition, devMtu: number): number {
  try {
    return overlayMtu(def, devMtu);
  } catch {
    return def.mtu ?? devMtu;
  }
}

/** What the live update did, for people. */
export function describeLive(def: NetworkDefinition, steps: readonly Step[]): string {
  const vx = vxlanName(def.vni);
  if (steps.length === 0) return `${vx} already matched`;
  const count = (op: Step['op']): number => steps.filter((s) => s.op === op).length;
  const created = steps.flatMap((s) => (s.op === 'add-bridge' || s.op === 'add-vxlan' ? [s.name] : []));
  const parts: string[] = [];
  // Only when devices of a network in use had gone missing or drifted: ensure repairs them as prepare would.
  if (created.length > 0) parts.push(`created ${created.join(', ')}`);
  if (count('flood-add') > 0) parts.push(`${count('flood-add')} flood entr${count('flood-add') === 1 ? 'y' : 'ies'} appended`);
  if (count('flood-del') > 0) parts.push(`${count('flood-del')} deleted`);
  const mtu = steps.flatMap((s) => (s.op === 'set-mtu' ? [s] : []));
  if (mtu.length > 0) parts.push(`${mtu.map((s) => s.name).join(', ')} MTU ${mtu[0]!.mtu}`);
  return `${created.length > 0 ? 'devices repaired' : `${vx} updated in place`}, ${parts.join(', ') || 'attributes repaired'}`;
}

function report(command: string, o: Outcome): void {
  const { next, plan } = o;
  if (o.usedBy && o.mtu && o.mtu.to < o.mtu.from) {
    warn(
      `network ${next.name}: overlay MTU ${o.mtu.from} -> ${o.mtu.to} while guests use it: their NICs keep MTU ${o.mtu.from} (and any <mtu> in their XML), and larger frames are dropped until they are lowered or the guests restarted with regenerated XML`,
    );
  }
  const live = o.live === undefined ? 'not in use on this host: no devices changed' : `in use (${o.usedBy ?? 'its devices exist'}): ${describeLive(next, o.live)}`;
  const onlyPeers = plan.changes.every((c) => c.what === '--remote');
  const peerDelta = [plan.added.length ? `added ${plan.added.join(', ')}` : '', plan.removed.length ? `removed ${plan.removed.join(', ')}` : '']
    .filter(Boolean)
    .join('; ');
  if (command === 'set-peers' && onlyPeers && floodingMode(next) === 'unicast' && floodingMode(o.old) === 'unicast') {
    process.stdout.write(`network ${next.name}: peers ${next.remotes.join(', ')}${peerDelta ? ` (${peerDelta})` : ''}; ${live}\n`);
  } else {
    process.stdout.write(`network ${next.name}: ${plan.changes.map(describeChange).join(', ')}; ${live}\n`);
  }
  logChange({
    network: next.name,
    action: onlyPeers ? 'peers-changed' : 'redefined',
    command,
    changed: onlyPeers ? undefined : plan.changes.map((c) => c.what.replace(/^--/, '').replace(/ /g, '-')),
    peers: next.group === undefined ? next.remotes : undefined,
    group: next.group,
    added: plan.added.length ? plan.added : undefined,
    removed: plan.removed.length ? plan.removed : undefined,
    mtu: o.mtu && o.mtu.from !== o.mtu.to ? o.mtu.to : undefined,
    devices: o.live === undefined ? undefined : [bridgeName(next.vni), vxlanName(next.vni)],
    live: o.live !== undefined,
  });
}

interface SetPeersArgs {
  name: string;
  remote?: unknown;
}

export const setPeers: CommandModule<object, SetPeersArgs> = {
  command: 'set-peers <name>',
  describe: "Replace a network's unicast peers; a network in use is updated in place",
  builder: (y: Argv) =>
    y
      .positional('name', { type: 'string', describe: 'a defined network' })
      .option('remote', {
        type: 'string',
        describe: 'peer host, repeated: the whole new list (one alone makes the network point-to-point)',
        demandOption: '--remote is required: give every peer, e.g. --remote 192.168.8.101 --remote 192.168.8.102',
      })
      .example('$0 set-peers tenant2 --remote 192.168.8.101 --remote 192.168.8.103', 'swap peer .102 for .103 while guests run: .101 keeps its entry') as unknown as Argv<SetPeersArgs>,
  handler: async (argv: ArgumentsCamelCase<SetPeersArgs>) => {
    const remotes = list(argv.remote);
    const outcome = await changeNetwork(argv.name, 'set-peers', (old) => {
      if (old.evpn) {
        throw new DefinitionError(
          `network ${old.name} is an EVPN network: its peers come from BGP (FRR announces each host's VTEP), not from a list; to change its flooding mode use redefine`,
        );
      }
      if (old.group !== undefined) {
        throw new DefinitionError(`network ${old.name} floods to multicast group ${old.group}, it has no peers: change its flooding mode with redefine`);
      }
      return validateDefinition({ ...old, remotes });
    });
    if (outcome.plan.changes.length === 0) {
      process.stdout.write(`network ${argv.name}: peers unchanged (${outcome.old.remotes.join(', ')})\n`);
      return;
    }
    report('set-peers', outcome);
  },
};

export const redefine: CommandModule<object, DefinitionArgs> = {
  command: 'redefine <name>',
  describe: 'Change a defined network (options as define-network: the whole new definition); a network in use is updated in place where the kernel allows',
  builder: (y: Argv) =>
    definitionOptions(y).example(
      '$0 redefine tenant1 --vni 42 --dev ens47f1 --local 192.168.8.100 --remote 192.168.8.101 --mtu 1400',
      'lower the MTU of a network in use (both devices take it in place)',
    ) as unknown as Argv<DefinitionArgs>,
  handler: async (argv: ArgumentsCamelCase<DefinitionArgs>) => {
    const next = definitionFromArgs(argv);
    // Whether the network has a libvirt network is define-network's choice: kept.
    const outcome = await changeNetwork(next.name, 'redefine', (old) => (old.libvirt === undefined ? next : { ...next, libvirt: old.libvirt }));
    if (outcome.plan.changes.length === 0) {
      process.stdout.write(`network ${next.name}: unchanged\n`);
      return;
    }
    report('redefine', outcome);
  },
};
