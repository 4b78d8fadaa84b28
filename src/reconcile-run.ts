// One `vxvirt reconcile` run, as a transaction: libvirt networks first (made
// or removed as src/reconcile.ts plans them), then the host's definitions,
// state and devices under the host lock (lifecycle.reconcileHost), and
// whether both have converged. libvirt is asked which domains run and which
// libvirt networks exist — the hook never may — and its networks are changed
// before the host lock is taken: libvirtd holds a domain while its hook runs,
// runs network hooks as it starts a network, and the hooks wait for the lock.
// It takes the host's Effects and the Libvirt record, so tests run it on a
// fake host and a fake libvirt; src/cli/reconcile.ts parses and prints.
import { oneLine } from './errors.ts';
import type { Libvirt } from './libvirt/index.ts';
import { reconcileHost, type Effects, type ReconcileReport } from './lifecycle.ts';
import { activeDomainFacts, planLibvirtNetworks, type LibvirtFacts, type LibvirtNetworkAction, type LibvirtNetworkFacts, type LibvirtNetworkPlan } from './reconcile.ts';

/** libvirt's networks as reconcile and status see them, or why libvirt could not be asked. */
export async function askLibvirtNetworks(lv: Libvirt): Promise<LibvirtNetworkFacts> {
  try {
    return { reachable: true, networks: await lv.listNetworks() };
  } catch (err) {
    return { reachable: false, reason: oneLine(err) };
  }
}

async function askLibvirt(lv: Libvirt): Promise<LibvirtFacts> {
  const asOf = new Date();
  try {
    const domains = await lv.listActiveDomains();
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

const NO_NETWORK_PLAN: LibvirtNetworkPlan = { actions: [], left: [], notes: [] };

/** Step 4 of reconcile (src/reconcile.ts), with libvirt asked now: the definitions are read again each time. */
async function planNetworks(fx: Effects, lv: Libvirt): Promise<{ facts: LibvirtNetworkFacts; plan: LibvirtNetworkPlan }> {
  const facts = await askLibvirtNetworks(lv);
  const { defs, broken } = fx.loadDefinitions();
  return { facts, plan: planLibvirtNetworks(defs, broken.map((b) => b.name), facts) };
}

async function carryOutNetwork(a: LibvirtNetworkAction, fx: Effects, lv: Libvirt): Promise<void> {
  if (a.kind === 'define-libvirt-network') {
    const r = await lv.defineNetwork(a.def);
    if (r.note) fx.warn(r.note);
  } else {
    await lv.undefineNetwork(a.network);
  }
}

/** libvirt networks' part of a reconcile run. */
export interface NetworkReport {
  /** What libvirt said of its networks; undefined with --no-libvirt. */
  facts?: LibvirtNetworkFacts;
  plan: LibvirtNetworkPlan;
  failed: Array<{ action: LibvirtNetworkAction; error: string }>;
  remaining: LibvirtNetworkPlan;
}

async function reconcileNetworks(dryRun: boolean, fx: Effects, lv: Libvirt): Promise<NetworkReport> {
  const first = await planNetworks(fx, lv);
  const net: NetworkReport = { facts: first.facts, plan: first.plan, failed: [], remaining: first.plan };
  if (dryRun || first.plan.actions.length === 0) return net;
  for (const action of first.plan.actions) {
    try {
      await carryOutNetwork(action, fx, lv);
    } catch (err) {
      net.failed.push({ action, error: oneLine(err) });
    }
  }
  net.remaining = (await planNetworks(fx, lv)).plan;
  return net;
}

export interface RunOptions {
  dryRun: boolean;
  graceSeconds: number;
  /** Whether to ask libvirt at all (--no-libvirt: users judged by age and bridge ports, libvirt networks left alone). */
  libvirt: boolean;
}

export interface RunReport {
  host: ReconcileReport;
  net: NetworkReport;
  /** What libvirt said of the running domains. */
  libvirt: LibvirtFacts;
  notes: string[];
  converged: boolean;
}

/** A whole `vxvirt reconcile`: libvirt networks, then the host; on a dry run, nothing is changed. */
export async function reconcileAll(o: RunOptions, fx: Effects, lv: Libvirt): Promise<RunReport> {
  const net: NetworkReport = o.libvirt ? await reconcileNetworks(o.dryRun, fx, lv) : { plan: NO_NETWORK_PLAN, failed: [], remaining: NO_NETWORK_PLAN };
  const libvirt: LibvirtFacts = o.libvirt ? await askLibvirt(lv) : { reachable: false, reason: '--no-libvirt' };
  const host = await reconcileHost({ dryRun: o.dryRun, graceSeconds: o.graceSeconds, libvirt }, fx);
  const netConverged = o.dryRun
    ? net.plan.actions.length === 0 && net.plan.left.length === 0
    : net.failed.length === 0 && net.remaining.actions.length === 0 && net.remaining.left.length === 0;
  return { host, net, libvirt, notes: [...net.plan.notes, ...host.plan.notes], converged: host.converged && netConverged };
}
