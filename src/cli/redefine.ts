// set-peers and redefine: change a network that guests may be using. The
// transaction (src/network-transactions.ts) rewrites the definition and, if
// the network is in use on this host, brings its live devices to it in place
// under the host lock; changes a live vxlan device cannot take are refused
// while the network is in use (see redefine.ts). Here: options in, text out.
import type { ArgumentsCamelCase, Argv, CommandModule } from 'yargs';
import { warn } from '../errors.ts';
import { realEffects } from '../lifecycle.ts';
import { floodingMode, vxlanName, type NetworkDefinition } from '../network-definition.ts';
import { redefineNetwork, setPeers as setPeersTx, type Changed } from '../network-transactions.ts';
import type { Step } from '../plan.ts';
import { describeChange } from '../redefine.ts';
import { definitionFromArgs, definitionOptions, type DefinitionArgs } from './define-network.ts';
import { list } from './options.ts';

/** What the live update did, for people. */
function describeLive(def: NetworkDefinition, steps: readonly Step[]): string {
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

function report(command: string, o: Changed): void {
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
    const outcome = await setPeersTx(argv.name, remotes, realEffects);
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
    const outcome = await redefineNetwork(next, realEffects);
    if (outcome.plan.changes.length === 0) {
      process.stdout.write(`network ${next.name}: unchanged\n`);
      return;
    }
    report('redefine', outcome);
  },
};
