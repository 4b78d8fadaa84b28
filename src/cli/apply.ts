// `vxvirt apply FILE|-`: make this host's definitions equal to a file (the
// format `vxvirt list-networks --json` prints) — what a fleet tool (Ansible,
// Salt, a cron job pulling from git) runs on every host. The file is read
// and validated whole (apply.ts); the transaction (network-transactions.ts
// applyNetworks) plans and carries it out under the host lock. Here: the
// file in, the plan and what happened out.
import { readFileSync } from 'node:fs';
import type { ArgumentsCamelCase, Argv, CommandModule } from 'yargs';
import { describeStep, parseNetworkFile, type ApplyStep } from '../apply.ts';
import { UsageError, oneLine } from '../errors.ts';
import { realLibvirt } from '../libvirt/index.ts';
import { realEffects } from '../lifecycle.ts';
import { applyNetworks, type Applied } from '../network-transactions.ts';
import { describeChange } from '../redefine.ts';
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

const networkOf = (s: ApplyStep): string => (s.op === 'change' ? s.old.name : s.def.name);

/** A step carried out, as redefine and undefine-network say it. */
function describeDone(step: ApplyStep, o: Applied): string {
  if (step.op !== 'change') return describeStep(step).replace(/^(create|remove)/, (w) => `${w}d`);
  const steps = o.live.get(step.old.name);
  const live = steps === undefined ? 'not in use on this host: no devices changed' : `in use (${step.usedBy ?? 'its devices exist'}): ${describeLive(step.next, steps)}`;
  return `changed network ${step.old.name}: ${step.changes.map(describeChange).join(', ')}; ${live}`;
}

function printOutcome(o: Applied, source: string, dryRun: boolean): void {
  const { plan } = o;
  const lines = plan.steps.map((step) => (dryRun ? `would ${describeStep(step)}` : describeDone(step, o)));
  const kept = plan.kept.length > 0 ? ` (kept, not in the file: ${plan.kept.join(', ')}; --prune removes them)` : '';
  if (plan.steps.length === 0) {
    lines.push(`nothing to do: ${plan.unchanged.length} network${plan.unchanged.length === 1 ? '' : 's'} as in ${source}${kept}`);
  } else {
    const count = (op: ApplyStep['op']): number => plan.steps.filter((s) => s.op === op).length;
    const tally = (verb: (w: string) => string): string =>
      `${count('create')} ${verb('create')}, ${count('change')} ${verb('change')}, ${count('remove')} ${verb('remove')}, ${plan.unchanged.length} unchanged${kept}`;
    lines.push(dryRun ? `dry run: ${tally((w) => `to ${w}`)}; nothing was changed` : `applied ${source}: ${tally((w) => `${w}d`)}`);
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
      .option('libvirt', { type: 'boolean', default: true, describe: "make and remove the networks' libvirt networks now (--no-libvirt: leave them to reconcile)" })
      .example('$0 apply /etc/vxvirt/fleet.json', 'the same file on every host: each sends from its own address and leaves itself out of the peers')
      .example('$0 apply fleet.json --dry-run', 'what would change here')
      .example('$0 list-networks --json | ssh host2 vxvirt apply --prune -', 'make host2 define exactly what this host defines') as unknown as Argv<ApplyArgs>,
  handler: async (argv: ArgumentsCamelCase<ApplyArgs>) => {
    const { text, source } = readInput(argv.file);
    const wanted = parseNetworkFile(text, source);
    const applied = await applyNetworks(wanted, { prune: argv.prune, dryRun: argv.dryRun, libvirt: argv.libvirt }, realEffects, realLibvirt);
    if (!argv.json) printOutcome(applied, source, argv.dryRun);
    else printJson({
      file: source,
      dryRun: argv.dryRun,
      nothingToDo: applied.plan.steps.length === 0,
      steps: applied.plan.steps.map((s) => ({
        network: networkOf(s),
        action: s.op,
        changes: s.op === 'change' ? s.changes : [],
        inUse: s.op === 'change' && s.usedBy !== undefined,
        live: s.op === 'change' && applied.live.has(s.old.name) ? describeLive(s.next, applied.live.get(s.old.name)!) : null,
      })),
      unchanged: applied.plan.unchanged,
      kept: applied.plan.kept,
    });
    // The definitions are applied; a libvirt network libvirt refused is the command's failure, said last.
    if (applied.libvirtFailure) throw applied.libvirtFailure;
  },
};
