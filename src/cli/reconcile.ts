// `vxvirt reconcile`: converge definitions, state and devices (the rules are
// in src/reconcile.ts, the carrying out in src/lifecycle.ts). This command
// asks libvirt which domains run — the hook never may — and does so before
// it takes the host lock: libvirtd holds a domain while its hook runs, and
// the hook waits for the lock.
import type { ArgumentsCamelCase, Argv, CommandModule } from 'yargs';
import { NotConvergedError, oneLine, UsageError, warn } from '../errors.ts';
import { listActiveDomains } from '../libvirt.ts';
import { reconcileHost, type ReconcileReport } from '../lifecycle.ts';
import { activeDomainFacts, type Action, type LibvirtFacts } from '../reconcile.ts';
import { printJson } from './output.ts';

const DEFAULT_GRACE_S = 120;

interface ReconcileArgs {
  dryRun: boolean;
  json: boolean;
  grace: string;
  libvirt: boolean;
}

async function askLibvirt(): Promise<LibvirtFacts> {
  const asOf = new Date();
  try {
    const domains = await listActiveDomains();
    return {
      reachable: true,
      asOf,
      domains: domains.map((d) => {
        try {
          return activeDomainFacts(d.uuid, d.name, d.liveXml);
        } catch {
          // XML libvirt itself wrote cannot be bad; if it were, the domain still runs.
          return { uuid: d.uuid, name: d.name, bridges: [], networks: [] };
        }
      }),
    };
  } catch (err) {
    return { reachable: false, reason: oneLine(err) };
  }
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

function printText(report: ReconcileReport, dryRun: boolean): void {
  const out: string[] = [];
  for (const a of report.plan.actions) {
    const failed = report.failed.find((f) => f.action === a);
    if (failed) out.push(`failed: ${a.lines.join('; ')}: ${failed.error}`);
    else out.push(...a.lines);
  }
  out.push(...report.plan.left);
  if (!dryRun && report.failed.length === 0) {
    // Everything was done, yet a second look finds more: say what (left-overs are listed above).
    for (const a of report.remaining.actions) out.push(...a.lines.map((l) => `still to do: ${l}`));
  }
  if (out.length === 0) out.push('nothing to do');
  else if (dryRun && report.plan.actions.length > 0) out.push('dry run: nothing was changed');
  process.stdout.write(`${out.join('\n')}\n`);
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
      .option('libvirt', { type: 'boolean', default: true, describe: 'ask libvirt which domains run (--no-libvirt: judge by age and bridge ports)' })
      .example('$0 reconcile --dry-run', 'what would change; exit 11 if anything would (0: converged)')
      .example('$0 reconcile', 'after a crash, a reboot or a hand edit: repair, drop stale users, remove unused pairs') as unknown as Argv<ReconcileArgs>,
  handler: async (argv: ArgumentsCamelCase<ReconcileArgs>) => {
    const grace = graceSeconds(argv.grace);
    const libvirt: LibvirtFacts = argv.libvirt ? await askLibvirt() : { reachable: false, reason: '--no-libvirt' };
    const report = await reconcileHost({ dryRun: argv.dryRun, graceSeconds: grace, libvirt });
    if (argv.json) {
      printJson({
        dryRun: argv.dryRun,
        libvirt: libvirt.reachable ? { reachable: true, active: libvirt.domains.length } : { reachable: false, reason: libvirt.reason },
        actions: report.plan.actions.map((a) => ({
          kind: a.kind,
          lines: a.lines,
          network: networkOf(a),
          domain: 'domain' in a ? a.domain : null,
          failed: report.failed.find((f) => f.action === a)?.error ?? null,
        })),
        left: report.plan.left,
        notes: report.plan.notes,
        remaining: argv.dryRun ? [] : report.remaining.actions.flatMap((a) => a.lines),
        converged: report.converged,
      });
    } else {
      for (const note of report.plan.notes) warn(note);
      printText(report, argv.dryRun);
    }
    if (!report.converged) {
      const count = (n: number, what: string): string[] => (n > 0 ? [`${n} ${what}`] : []);
      const changes = report.plan.actions.reduce((n, a) => n + a.lines.length, 0);
      const parts = argv.dryRun
        ? [...count(changes, 'change(s) to make'), ...count(report.plan.left.length, 'thing(s) left for a person')]
        : [
            ...count(report.failed.length, 'change(s) failed'),
            ...count(report.remaining.actions.length, 'change(s) still to make'),
            ...count(report.remaining.left.length, 'thing(s) left for a person'),
          ];
      throw new NotConvergedError(`${argv.dryRun ? 'dry run' : 'not converged'}: ${parts.join(', ')}`);
    }
  },
};
