// `vxvirt reconcile`: converge definitions, state, devices and libvirt
// networks (the rules are in src/reconcile.ts, the run in src/reconcile-run.ts,
// the host's part in src/lifecycle.ts). Here: options in, text or JSON out,
// and the exit status of a run that did not converge.
import type { ArgumentsCamelCase, Argv, CommandModule } from 'yargs';
import { NotConvergedError, UsageError, warn } from '../errors.ts';
import { realLibvirt } from '../libvirt/index.ts';
import { realEffects } from '../lifecycle.ts';
import type { Action } from '../reconcile.ts';
import { reconcileAll, type RunReport } from '../reconcile-run.ts';
import { printJson } from './output.ts';

const DEFAULT_GRACE_S = 120;

interface ReconcileArgs {
  dryRun: boolean;
  json: boolean;
  grace: string;
  libvirt: boolean;
}

/** The network an action is about (by name; a VNI for devices of a network whose name is unknown). */
function networkOf(a: Action): string {
  switch (a.kind) {
    case 'finish-release':
      return a.networks.map((n) => n.name).join(',');
    case 'add-record':
    case 'drop-record':
      return a.network.name;
    case 'remove':
      return a.network ?? `VNI ${a.vni}`;
    default:
      return a.network;
  }
}

function graceSeconds(raw: string): number {
  const n = Number(raw);
  if (raw.trim() === '' || !Number.isFinite(n) || n < 0) throw new UsageError(`--grace ${JSON.stringify(raw)}: must be a number of seconds >= 0`);
  return n;
}

function printText({ host: report, net }: RunReport, dryRun: boolean): void {
  const out: string[] = [];
  const failedLine = (lines: string[], error: string): string => `failed: ${lines.join('; ')}: ${error}`;
  for (const a of net.plan.actions) {
    const failed = net.failed.find((f) => f.action === a);
    out.push(...(failed ? [failedLine(a.lines, failed.error)] : a.lines));
  }
  for (const a of report.plan.actions) {
    const failed = report.failed.find((f) => f.action === a);
    out.push(...(failed ? [failedLine(a.lines, failed.error)] : a.lines));
  }
  out.push(...net.plan.left, ...report.plan.left);
  if (!dryRun && report.failed.length + net.failed.length === 0) {
    // Everything was done, yet a second look finds more: say what (left-overs are listed above).
    for (const a of [...net.remaining.actions, ...report.remaining.actions]) out.push(...a.lines.map((l) => `still to do: ${l}`));
  }
  const changes = net.plan.actions.length + report.plan.actions.length;
  if (out.length === 0) out.push('nothing to do');
  else if (dryRun && changes > 0) out.push('dry run: nothing was changed');
  process.stdout.write(`${out.join('\n')}\n`);
}

function jsonReport(run: RunReport, dryRun: boolean) {
  const { host: report, net, libvirt } = run;
  const failedOf = (a: unknown): string | null => report.failed.find((f) => f.action === a)?.error ?? net.failed.find((f) => f.action === a)?.error ?? null;
  return {
    dryRun,
    libvirt: libvirt.reachable ? { reachable: true, active: libvirt.domains.length } : { reachable: false, reason: libvirt.reason },
    libvirtNetworks: !net.facts
      ? { reachable: false, reason: '--no-libvirt' }
      : net.facts.reachable
        ? { reachable: true, vxvirt: net.facts.networks.filter((n) => n.ours).length }
        : { reachable: false, reason: net.facts.reason },
    actions: [
      ...net.plan.actions.map((a) => ({ kind: a.kind, lines: a.lines, network: a.network, domain: null, failed: failedOf(a) })),
      ...report.plan.actions.map((a) => ({
        kind: a.kind,
        lines: a.lines,
        network: networkOf(a),
        domain: 'domain' in a ? a.domain : null,
        failed: failedOf(a),
      })),
    ],
    left: [...net.plan.left, ...report.plan.left],
    notes: run.notes,
    remaining: dryRun ? [] : [...net.remaining.actions, ...report.remaining.actions].flatMap((a) => a.lines),
    converged: run.converged,
  };
}

/** Why the run did not converge, counted: the NotConvergedError's message. */
function notConverged({ host: report, net }: RunReport, dryRun: boolean): string {
  const count = (n: number, what: string): string[] => (n > 0 ? [`${n} ${what}`] : []);
  const lines = (actions: ReadonlyArray<{ lines: string[] }>): number => actions.reduce((n, a) => n + a.lines.length, 0);
  const parts = dryRun
    ? [
        ...count(lines(net.plan.actions) + lines(report.plan.actions), 'change(s) to make'),
        ...count(net.plan.left.length + report.plan.left.length, 'thing(s) left for a person'),
      ]
    : [
        ...count(net.failed.length + report.failed.length, 'change(s) failed'),
        ...count(net.remaining.actions.length + report.remaining.actions.length, 'change(s) still to make'),
        ...count(net.remaining.left.length + report.remaining.left.length, 'thing(s) left for a person'),
      ];
  return `${dryRun ? 'dry run' : 'not converged'}: ${parts.join(', ')}`;
}

export const reconcileCommand: CommandModule<object, ReconcileArgs> = {
  command: 'reconcile',
  describe: 'Make devices and state agree with the definitions and the running domains',
  builder: (y: Argv) =>
    y
      .option('dry-run', { type: 'boolean', default: false, describe: 'print what would change, change nothing' })
      .option('json', { type: 'boolean', default: false, describe: 'print JSON' })
      .option('grace', {
        type: 'string',
        default: String(DEFAULT_GRACE_S),
        describe: 'without libvirt, a user younger than this many seconds is kept (its guest may be starting)',
      })
      .option('libvirt', { type: 'boolean', default: true, describe: 'ask libvirt which domains run and which libvirt networks exist (--no-libvirt: judge users by age and bridge ports, leave libvirt networks alone)' })
      .example('$0 reconcile --dry-run', 'what would change; exit 11 if anything would (0: converged)')
      .example('$0 reconcile', 'after a crash, a reboot or a hand edit: repair, drop stale users, remove unused pairs') as unknown as Argv<ReconcileArgs>,
  handler: async (argv: ArgumentsCamelCase<ReconcileArgs>) => {
    const grace = graceSeconds(argv.grace);
    const run = await reconcileAll({ dryRun: argv.dryRun, graceSeconds: grace, libvirt: argv.libvirt }, realEffects, realLibvirt);
    if (argv.json) printJson(jsonReport(run, argv.dryRun));
    else {
      for (const note of run.notes) warn(note);
      printText(run, argv.dryRun);
    }
    if (!run.converged) throw new NotConvergedError(notConverged(run, argv.dryRun));
  },
};
