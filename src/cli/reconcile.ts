// `vxvirt reconcile`: converge definitions, state, devices and libvirt
// networks (the rules are in src/reconcile.ts, the carrying out of the host's
// part in src/lifecycle.ts). This command asks libvirt which domains run and
// which libvirt networks exist — the hook never may — and does so, and makes
// or removes libvirt networks, before it takes the host lock: libvirtd holds
// a domain while its hook runs, runs network hooks as it starts a network,
// and the hooks wait for the lock.
import type { ArgumentsCamelCase, Argv, CommandModule } from 'yargs';
import { NotConvergedError, oneLine, UsageError, warn } from '../errors.ts';
import { defineLibvirtNetwork, listActiveDomains, listLibvirtNetworks, undefineLibvirtNetwork } from '../libvirt/index.ts';
import { reconcileHost, type ReconcileReport } from '../lifecycle.ts';
import {
  activeDomainFacts,
  planLibvirtNetworks,
  type Action,
  type LibvirtFacts,
  type LibvirtNetworkAction,
  type LibvirtNetworkFacts,
  type LibvirtNetworkPlan,
} from '../reconcile.ts';
import * as store from '../store.ts';
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

async function askLibvirtNetworks(): Promise<LibvirtNetworkFacts> {
  try {
    return { reachable: true, networks: await listLibvirtNetworks() };
  } catch (err) {
    return { reachable: false, reason: oneLine(err) };
  }
}

const NO_NETWORK_PLAN: LibvirtNetworkPlan = { actions: [], left: [], notes: [] };

/** Step 4 of reconcile (src/reconcile.ts), with libvirt asked now: the definitions are read again each time. */
async function planNetworks(): Promise<{ facts: LibvirtNetworkFacts; plan: LibvirtNetworkPlan }> {
  const facts = await askLibvirtNetworks();
  const { defs, broken } = store.loadDefinitions();
  return { facts, plan: planLibvirtNetworks(defs, broken.map((b) => b.name), facts) };
}

async function carryOutNetwork(a: LibvirtNetworkAction): Promise<void> {
  if (a.kind === 'define-libvirt-network') {
    const r = await defineLibvirtNetwork(a.def);
    if (r.note) warn(r.note);
  } else {
    await undefineLibvirtNetwork(a.network);
  }
}

/** libvirt networks' part of a reconcile run. */
interface NetworkReport {
  facts?: LibvirtNetworkFacts;
  plan: LibvirtNetworkPlan;
  failed: Array<{ action: LibvirtNetworkAction; error: string }>;
  remaining: LibvirtNetworkPlan;
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

function printText(report: ReconcileReport, net: NetworkReport, dryRun: boolean): void {
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
    // libvirt networks first, outside the host lock: libvirt runs network hooks as it starts one.
    const net: NetworkReport = { plan: NO_NETWORK_PLAN, failed: [], remaining: NO_NETWORK_PLAN };
    if (argv.libvirt) {
      const first = await planNetworks();
      net.facts = first.facts;
      net.plan = first.plan;
      net.remaining = first.plan;
      if (!argv.dryRun && first.plan.actions.length > 0) {
        for (const action of first.plan.actions) {
          try {
            await carryOutNetwork(action);
          } catch (err) {
            net.failed.push({ action, error: oneLine(err) });
          }
        }
        net.remaining = (await planNetworks()).plan;
      }
    }
    const libvirt: LibvirtFacts = argv.libvirt ? await askLibvirt() : { reachable: false, reason: '--no-libvirt' };
    const report = await reconcileHost({ dryRun: argv.dryRun, graceSeconds: grace, libvirt });
    const netConverged = argv.dryRun
      ? net.plan.actions.length === 0 && net.plan.left.length === 0
      : net.failed.length === 0 && net.remaining.actions.length === 0 && net.remaining.left.length === 0;
    const converged = report.converged && netConverged;
    const notes = [...net.plan.notes, ...report.plan.notes];
    if (argv.json) {
      const failedOf = (a: unknown): string | null =>
        report.failed.find((f) => f.action === a)?.error ?? net.failed.find((f) => f.action === a)?.error ?? null;
      printJson({
        dryRun: argv.dryRun,
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
        notes,
        remaining: argv.dryRun ? [] : [...net.remaining.actions, ...report.remaining.actions].flatMap((a) => a.lines),
        converged,
      });
    } else {
      for (const note of notes) warn(note);
      printText(report, net, argv.dryRun);
    }
    if (!converged) {
      const count = (n: number, what: string): string[] => (n > 0 ? [`${n} ${what}`] : []);
      const lines = (actions: ReadonlyArray<{ lines: string[] }>): number => actions.reduce((n, a) => n + a.lines.length, 0);
      const parts = argv.dryRun
        ? [
            ...count(lines(net.plan.actions) + lines(report.plan.actions), 'change(s) to make'),
            ...count(net.plan.left.length + report.plan.left.length, 'thing(s) left for a person'),
          ]
        : [
            ...count(net.failed.length + report.failed.length, 'change(s) failed'),
            ...count(net.remaining.actions.length + report.remaining.actions.length, 'change(s) still to make'),
            ...count(net.remaining.left.length + report.remaining.left.length, 'thing(s) left for a person'),
          ];
      throw new NotConvergedError(`${argv.dryRun ? 'dry run' : 'not converged'}: ${parts.join(', ')}`);
    }
  },
};
