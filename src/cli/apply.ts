// `vxvirt apply FILE|-`: make this host's definitions equal to a file (the
// format `vxvirt list-networks --json` prints) — what a fleet tool (Ansible,
// Salt, a cron job pulling from git) runs on every host. The file is read
// and validated whole, then, under the host lock, the plan (apply.ts) is
// made from the definitions and what uses them and carried out: files
// written atomically, live devices updated in place as redefine does. libvirt
// networks are defined and removed afterwards, outside the lock (libvirtd
// may be waiting for a hook that waits for the lock).
import { readFileSync } from 'node:fs';
import type { ArgumentsCamelCase, Argv, CommandModule } from 'yargs';
import { applyPlanToHost, type ApplyOutcome } from '../apply-host.ts';
import { LibvirtError, LibvirtUnreachableError, UsageError, VxvirtError, oneLine, warn } from '../errors.ts';
import { describeStep, parseNetworkFile, type ApplyStep } from '../apply.ts';
import { describeChange } from '../redefine.ts';
import * as iproute from '../iproute.ts';
import { defineLibvirtNetwork, undefineLibvirtNetwork } from '../libvirt/index.ts';
import { overlayMtu } from '../network-definition.ts';
import { printJson } from './output.ts';
import { describeLive } from './redefine.ts';

interface ApplyArgs {
  file: string;
  prune: boolean;
  dryRun: boolean;
  json: boolean;
  libvirt: boolean;
}

function readInput(file: string): { text: string; source: string } {
  try {
    return file === '-' ? { text: readFileSync(0, 'utf8'), source: '(stdin)' } : { text: readFileSync(file, 'utf8'), source: file };
  } catch (err) {
    throw new UsageError(`cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? oneLine(err)}`);
  }
}

/** libvirt networks after the definitions: made for networks that want one, removed with pruned ones. */
async function syncLibvirt(steps: readonly ApplyStep[]): Promise<VxvirtError | undefined> {
  let failure: VxvirtError | undefined;
  let unreachable: string | undefined;
  for (const s of steps) {
    const def = s.op === 'change' ? s.next : s.def;
    const wants = s.op === 'remove' ? def.libvirt === true : def.libvirt === true && (s.op === 'create' || s.changes.some((c) => c.what === '--vni' || c.what === '--libvirt'));
    const drop = s.op === 'change' && s.old.libvirt === true && s.next.libvirt === false;
    if (!wants && !drop) continue;
    if (unreachable !== undefined) continue;
    try {
      if (s.op === 'remove' || drop) await undefineLibvirtNetwork(def.name);
      else await defineLibvirtNetwork(def);
    } catch (err) {
      if (err instanceof LibvirtUnreachableError) unreachable = err.message;
      else if (err instanceof LibvirtError) {
        warn(err.message);
        failure ??= err;
      } else throw err;
    }
  }
  if (unreachable !== undefined) warn(`libvirt networks not updated (${unreachable}): \`vxvirt reconcile\` makes and removes them once libvirt is reachable`);
  return failure;
}

function printOutcome(o: ApplyOutcome, source: string, dryRun: boolean): void {
  const { plan } = o;
  const lines: string[] = [];
  for (const step of plan.steps) {
    if (dryRun) lines.push(`would ${describeStep(step)}`);
    else if (step.op === 'change') {
      // As redefine says it: the changes, then what happened to the devices here.
      const steps = o.live.get(step.old.name);
      const live = steps === undefined ? 'not in use on this host: no devices changed' : `in use (${step.usedBy ?? 'its devices exist'}): ${describeLive(step.next, steps)}`;
      lines.push(`changed network ${step.old.name}: ${step.changes.map(describeChange).join(', ')}; ${live}`);
    } else lines.push(describeStep(step).replace(/^(create|remove)/, (w) => `${w}d`));
  }
  const kept = plan.kept.length > 0 ? ` (kept, not in the file: ${plan.kept.join(', ')}; --prune removes them)` : '';
  if (plan.steps.length === 0) {
    lines.push(`nothing to do: ${plan.unchanged.length} network${plan.unchanged.length === 1 ? '' : 's'} as in ${source}${kept}`);
  } else {
    const count = (op: ApplyStep['op']): number => plan.steps.filter((s) => s.op === op).length;
    const summary = `${count('create')} to create, ${count('change')} to change, ${count('remove')} to remove, ${plan.unchanged.length} unchanged${kept}`;
    lines.push(dryRun ? `dry run: ${summary}; nothing was changed` : `applied ${source}: ${summary.replace(/ to (create|change|remove)/g, (_m, w: string) => ({ create: ' created', change: ' changed', remove: ' removed' })[w] ?? w)}`);
  }
  process.stdout.write(`${lines.join('\n')}\n`);
}

export const applyCommand: CommandModule<object, ApplyArgs> = {
  command: 'apply <file>',
  describe: "Make this host's definitions equal to a file as list-networks --json prints it (FILE, or - for stdin)",
  builder: (y: Argv) =>
    y
      .positional('file', { type: 'string', describe: 'the networks, as `vxvirt list-networks --json` prints them; - reads stdin' })
      .option('prune', { type: 'boolean', default: false, describe: 'also undefine the networks the file lacks (refused while guests use them)' })
      .option('dry-run', { type: 'boolean', default: false, describe: 'print the plan, change nothing' })
      .option('json', { type: 'boolean', default: false, describe: 'print the plan and its outcome as JSON' })
      .option('libvirt', { type: 'boolean', default: true, describe: "make and remove the networks' libvirt networks (--no-libvirt: leave them to reconcile)" })
      .example('$0 apply /etc/vxvirt/fleet.json', 'the same file on every host: each takes its own --local and leaves itself out of the peers')
      .example('$0 apply fleet.json --dry-run', 'what would change here')
      .example('$0 list-networks --json | ssh host2 vxvirt apply --prune -', 'make host2 define exactly what this host defines') as unknown as Argv<ApplyArgs>,
  handler: async (argv: ArgumentsCamelCase<ApplyArgs>) => {
    const { text, source } = readInput(argv.file);
    const wanted = parseNetworkFile(text, source);
    // As define-network: an --mtu the underlay cannot carry is refused now where the underlay is here.
    for (const def of wanted) {
      const devMtu = await iproute.linkMtu(def.dev);
      if (devMtu !== undefined) overlayMtu(def, devMtu);
    }
    const outcome = await applyPlanToHost(wanted, { prune: argv.prune, dryRun: argv.dryRun });
    const libvirtFailure = argv.dryRun || !argv.libvirt ? undefined : await syncLibvirt(outcome.plan.steps);
    if (argv.json) {
      printJson({
        file: source,
        dryRun: argv.dryRun,
        nothingToDo: outcome.plan.steps.length === 0,
        steps: outcome.plan.steps.map((s) => ({
          network: s.op === 'change' ? s.old.name : s.def.name,
          action: s.op,
          changes: s.op === 'change' ? s.changes : [],
          inUse: s.op === 'change' && s.usedBy !== undefined,
          live: s.op === 'change' && outcome.live.has(s.old.name) ? describeLive(s.next, outcome.live.get(s.old.name)!) : null,
        })),
        unchanged: outcome.plan.unchanged,
        kept: outcome.plan.kept,
      });
    } else printOutcome(outcome, source, argv.dryRun);
    if (libvirtFailure) throw libvirtFailure;
  },
};
