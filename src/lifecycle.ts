// Bringing pairs up for a domain and down after the last one: the control
// logic between the pure planner and the effectful modules. Every decision
// about users and teardown is taken under the host lock, so one domain's
// release can never delete a bridge that another domain's prepare has just
// ensured (the race that made OpenStack Neutron stop deleting empty bridges).
//
// The qemu hook (prepare, reconnect, release) and the network hook
// (port-created: ensureForDomain for one NIC; port-deleted: unplugNic) both
// come through here; users are kept per domain with the MACs of its NICs
// (users.ts), so the two hooks' calls for the same NIC converge.
//
// Crash safety: the domain's record (store: domains/KEY.json) is written
// before it is added to any network's users and removed only after, so
// whatever step a killed hook stopped at, the next hook run under the lock —
// or `vxvirt reconcile` — can finish the job. `crashPoint` marks those steps
// for the tests that kill the hook there; it is compiled out of dist/.
import { crashPoint } from './crash-point.ts';
import { InternalError, NotFoundError, VxvirtError, warn } from './errors.ts';
import { groupJoinMessage, groupLimitSysctl, isGroupJoinRefusal, socketMemberships } from './host-limits.ts';
import { logChanges, type Change } from './log.ts';
import { addressesNeeded } from './host-address.ts';
import * as iproute from './iproute.ts';
import type { ObserveQuery } from './iproute.ts';
import { bridgeName, floodingMode, sameNetwork, underlayFamily, vxlanName, type NetworkDefinition } from './network-definition.ts';
import { ownedDevices, planEnsure, planTeardown, type Observed, type Step } from './plan.ts';
import { planReconcile, type Action, type LibvirtFacts, type ReconcileFacts, type ReconcilePlan } from './reconcile.ts';
import * as store from './store.ts';
import { readSysctl } from './sysctl.ts';
import type { DomainRecord, LoadedDefinitions, PendingRelease, RecordedDomain, RecordedNetwork } from './store.ts';
import { addUser, hasUsers, planUnplug, removeUser, restoreUser, type Nics, type UserRecord, type Users } from './users.ts';

export type { Change };

/** Changes made in this process, logged together by flushChangeLog (one logger process per hook run). */
const changeLog: Change[] = [];

/** Log the changes made so far (the entry points call it once, at the end). */
export function flushChangeLog(): void {
  if (changeLog.length > 0) logChanges(changeLog.splice(0));
}

/** The effects lifecycle needs; tests replace them with fakes. */
export interface Effects {
  observe(query: ObserveQuery): Promise<Observed>;
  apply(steps: readonly Step[]): Promise<void>;
  /** Every device of the host: only to explain a failure, never on the hook's happy path. */
  observeAll(fdbDevices: readonly string[]): Promise<Observed>;
  /** A numeric kernel setting of this network namespace (undefined: unreadable). */
  readSysctl(name: string): number | undefined;
  readUsers(network: string): Users;
  writeUsers(network: string, users: Users): void;
  readDomainRecord(key: string): DomainRecord | undefined;
  writeDomainRecord(key: string, record: DomainRecord): void;
  beginRelease(key: string): DomainRecord | undefined;
  /** Journal the release of some of a domain's networks (a hot-unplug): finished like a release if cut short. */
  beginPartialRelease(key: string, record: DomainRecord): void;
  pendingReleases(): PendingRelease[];
  endRelease(key: string): void;
  /** The network's definition as it is now (undefined: no longer defined). */
  rereadDefinition(def: NetworkDefinition): NetworkDefinition | undefined;
  withHostLock<T>(holder: string, fn: () => Promise<T>): Promise<T>;
  warn(message: string): void;
  log(change: Change): void;
  now(): Date;
}

export const realEffects: Effects = {
  observe: iproute.observe,
  apply: iproute.apply,
  observeAll: iproute.observeAll,
  readSysctl,
  readUsers: store.readUsers,
  writeUsers: store.writeUsers,
  readDomainRecord: store.readDomainRecord,
  writeDomainRecord: store.writeDomainRecord,
  beginRelease: store.beginRelease,
  beginPartialRelease: store.beginPartialRelease,
  pendingReleases: store.pendingReleases,
  endRelease: store.endRelease,
  rereadDefinition: (def) => store.findDefinition(def.name),
  withHostLock: store.withHostLock,
  warn,
  log: (change) => void changeLog.push(change),
  now: () => new Date(),
};

export interface DomainRef {
  key: string;
  name: string;
}

const pairOf = (vni: number): string[] => [bridgeName(vni), vxlanName(vni)];
const recorded = (def: Pick<NetworkDefinition, 'name' | 'vni'>): RecordedNetwork => ({ name: def.name, vni: def.vni });

const MAX_ATTEMPTS = 3;

/** What planEnsure needs to see: the underlay, the pair, the flood entries of unicast peers, this host's addresses. */
function ensureQuery(def: NetworkDefinition): ObserveQuery {
  const query: ObserveQuery = {
    devices: [def.dev, ...pairOf(def.vni)],
    fdbDevices: floodingMode(def) === 'unicast' ? [vxlanName(def.vni)] : [],
    neighOf: floodingMode(def) === 'evpn' ? [bridgeName(def.vni)] : [],
  };
  const family = addressesNeeded(def);
  if (family !== undefined) query.addresses = family;
  return query;
}

/**
 * Make the kernel hold `def`'s pair: read, plan, apply, and read back until
 * the plan is empty. A step that fails because someone else changed the
 * device meanwhile ("File exists", "Cannot find device") is retried from a
 * fresh read; conflicts with devices that are not ours fail at once.
 */
export async function ensureNetwork(def: NetworkDefinition, fx: Effects, domain?: string): Promise<void> {
  const query = ensureQuery(def);
  let lastError: unknown;
  let changed: Step[] = [];
  for (let attempt = 0; attempt <= MAX_ATTEMPTS; attempt++) {
    const steps = planEnsure(def, await fx.observe(query));
    if (steps.length === 0) {
      if (changed.length > 0) {
        const created = changed.some((s) => s.op === 'add-bridge' || s.op === 'add-vxlan');
        fx.log({
          action: created ? 'created' : 'repaired',
          network: def.name,
          ...(domain ? { domain } : {}),
          devices: pairOf(def.vni),
          ...(created ? {} : { detail: [...new Set(changed.map((s) => s.op))].join(',') }),
        });
      }
      return;
    }
    if (attempt === MAX_ATTEMPTS) break;
    try {
      await fx.apply(steps);
      lastError = undefined;
      changed = changed.concat(steps);
      crashPoint('ensure:applied');
    } catch (err) {
      lastError = err;
      // A host limit does not go away by trying again.
      if (isGroupJoinRefusal(def, (err as Error).message)) break;
    }
  }
  if (lastError instanceof VxvirtError) {
    const message = isGroupJoinRefusal(def, lastError.message) ? await explainGroupJoin(def, lastError.message, fx) : lastError.message;
    throw new (lastError.constructor as new (m: string) => VxvirtError)(`network ${def.name}: ${message}`);
  }
  throw new InternalError(`network ${def.name}: devices ${bridgeName(def.vni)}/${vxlanName(def.vni)} still differ from the definition after ${MAX_ATTEMPTS} attempts`);
}

/**
 * The kernel would not join one more multicast group: read the limit and the
 * groups joined (only now, after the failure) and say what to do.
 */
async function explainGroupJoin(def: NetworkDefinition, message: string, fx: Effects): Promise<string> {
  let memberships: ReturnType<typeof socketMemberships> | undefined;
  try {
    memberships = socketMemberships(def, (await fx.observeAll([])).links.values());
  } catch {
    // the message says the groups could not be counted; the limit is still named
  }
  return groupJoinMessage(def, message, { limit: fx.readSysctl(groupLimitSysctl(underlayFamily(def))), memberships });
}

/**
 * Remove the pairs of those `networks` that have no users left; the caller
 * holds the host lock. Never throws: teardown is best effort (a warning says
 * what failed) and converges on the next release or `vxvirt reconcile`.
 */
export async function removeUnusedPairs(networks: readonly RecordedNetwork[], fx: Effects = realEffects, domain?: string): Promise<string[]> {
  const removed: RecordedNetwork[] = [];
  try {
    const unused = networks.filter((n) => !hasUsers(fx.readUsers(n.name)));
    if (unused.length === 0) return [];
    const observed = await fx.observe({
      devices: unused.flatMap((n) => pairOf(n.vni)),
      portsOf: unused.map((n) => bridgeName(n.vni)),
    });
    const steps: Step[] = [];
    for (const n of unused) {
      const plan = planTeardown(n.vni, observed);
      if (plan.kept) fx.warn(`network ${n.name}: ${plan.kept}`);
      if (plan.steps.length > 0) removed.push(n);
      steps.push(...plan.steps);
    }
    if (steps.length > 0) {
      crashPoint('teardown:planned'); // found unused, not yet deleted: the lock keeps a prepare out of this gap
      await fx.apply(steps);
    }
  } catch (err) {
    fx.warn(`could not remove unused devices: ${(err as Error).message}`);
    return [];
  }
  for (const n of removed) fx.log({ action: 'deleted', network: n.name, ...(domain ? { domain } : {}), devices: pairOf(n.vni) });
  return removed.map((n) => n.name);
}

/** Take `key` off these networks' users, logging each removal. */
function unrecord(key: string, name: string, networks: readonly RecordedNetwork[], fx: Effects): void {
  for (const n of networks) {
    const users = fx.readUsers(n.name);
    if (!(key in users)) continue;
    fx.writeUsers(n.name, removeUser(users, key));
    fx.log({ action: 'user-removed', network: n.name, domain: name });
    crashPoint('release:unrecorded');
  }
}

/**
 * Take networks off a domain's record once it is no longer their user (after
 * a hot-unplug). A whole release moved the record away: then nothing is there.
 */
function forgetNetworks(key: string, networks: readonly RecordedNetwork[], fx: Effects): void {
  const record = fx.readDomainRecord(key);
  if (!record) return;
  const keep = record.networks.filter((n) => !networks.some((g) => sameNetwork(g, n)));
  if (keep.length !== record.networks.length) fx.writeDomainRecord(key, { ...record, networks: keep });
}

/** Finish releases that a killed hook left half done (normally there are none). */
async function finishPendingReleases(fx: Effects): Promise<void> {
  for (const { key, record } of fx.pendingReleases()) {
    unrecord(key, record.name, record.networks, fx);
    forgetNetworks(key, record.networks, fx);
    await removeUnusedPairs(record.networks, fx, record.name);
    fx.endRelease(key);
  }
}

/**
 * The definitions as they are now that the lock is held: the hook read them
 * before waiting for it, and a `set-peers` may have changed one meanwhile.
 * One undefined meanwhile fails a start; a running guest keeps what it has.
 */
function current(defs: readonly NetworkDefinition[], fx: Effects, whenUndefined: 'fail' | 'keep'): NetworkDefinition[] {
  return defs.map((d) => {
    const now = fx.rereadDefinition(d);
    if (now) return now;
    if (whenUndefined === 'keep') return d;
    throw new NotFoundError(`network ${d.name} was undefined while the domain was starting`);
  });
}

/** Add networks to the domain's record (before its users entries: the record is a superset). Returns those it added. */
function extendRecord(domain: DomainRef, defs: readonly NetworkDefinition[], fx: Effects): RecordedNetwork[] {
  const record = fx.readDomainRecord(domain.key) ?? { name: domain.name, networks: [] };
  const added = defs.filter((d) => !record.networks.some((n) => sameNetwork(n, d))).map(recorded);
  if (added.length > 0 || record.name !== domain.name) {
    fx.writeDomainRecord(domain.key, { name: domain.name, networks: [...record.networks, ...added] });
    crashPoint('prepare:recorded-domain');
  }
  return added;
}

/**
 * A domain's NICs on each network, by network name. A network missing from
 * it has NICs vxvirt cannot name ('unknown': `vxvirt attach --live`, whose
 * NIC libvirt may give its MAC only as it plugs it): the domain then stays a
 * user until it stops.
 */
export type NicsByNetwork = ReadonlyMap<string, Nics>;

/** Add the domain (with these NICs) to a network's users; returns the entry as it was before. */
function addToUsers(domain: DomainRef, def: NetworkDefinition, nics: Nics, fx: Effects): { before: UserRecord | undefined } {
  const users = fx.readUsers(def.name);
  const before = users[domain.key];
  const after = addUser(users, domain.key, domain.name, fx.now(), nics);
  const entry = after[domain.key]!;
  const had = before?.macs ?? [];
  const has = entry.macs ?? [];
  if (!before || entry.name !== before.name || has.join() !== had.join() || (entry.macs === undefined) !== (before.macs === undefined)) fx.writeUsers(def.name, after);
  if (!before) fx.log({ action: 'user-added', network: def.name, domain: domain.name, ...(has.length > 0 ? { macs: has } : {}) });
  else if (has.length > had.length) fx.log({ action: 'nic-added', network: def.name, domain: domain.name, macs: has.filter((m) => !had.includes(m)) });
  return { before };
}

/**
 * `prepare`: ensure every pair the domain needs, then record it as a user.
 * On failure, the records this call added are removed again and pairs left
 * unused are deleted, so a failed start leaves nothing half-made — while
 * records from before (a domain prepared twice) stay.
 */
export async function ensureForDomain(domain: DomainRef, defs: readonly NetworkDefinition[], fx: Effects = realEffects, nics: NicsByNetwork = new Map(), holder = 'prepare'): Promise<void> {
  if (defs.length === 0) return;
  await fx.withHostLock(`${holder} ${domain.name}`, async () => {
    await finishPendingReleases(fx);
    defs = current(defs, fx, 'fail');
    const addedToRecord = extendRecord(domain, defs, fx);
    const touched: NetworkDefinition[] = [];
    const usersBefore = new Map<NetworkDefinition, UserRecord | undefined>();
    try {
      for (const def of defs) {
        touched.push(def);
        await ensureNetwork(def, fx, domain.name);
        crashPoint('prepare:ensured');
        usersBefore.set(def, addToUsers(domain, def, nics.get(def.name) ?? 'unknown', fx).before);
        crashPoint('prepare:recorded-user');
      }
    } catch (err) {
      // Users entries back as they were: a new user goes, NICs this call added go.
      for (const [def, before] of usersBefore) {
        const users = fx.readUsers(def.name);
        fx.writeUsers(def.name, restoreUser(users, domain.key, before));
        if (!before) fx.log({ action: 'user-removed', network: def.name, domain: domain.name });
      }
      await removeUnusedPairs(touched.map(recorded), fx, domain.name);
      if (addedToRecord.length > 0) {
        const record = fx.readDomainRecord(domain.key);
        if (record) {
          const keep = record.networks.filter((n) => !addedToRecord.some((a) => sameNetwork(a, n)));
          fx.writeDomainRecord(domain.key, { ...record, networks: keep });
        }
      }
      throw err;
    }
  });
}

/**
 * `reconnect`: libvirtd restarted while the domain runs. It uses all of its
 * networks whatever happens here, so it is recorded on each first; then each
 * pair is ensured on its own, and the failures are reported together. Nothing
 * is rolled back: the guest is running on those bridges.
 */
export async function reconnectDomain(domain: DomainRef, defs: readonly NetworkDefinition[], fx: Effects = realEffects, nics: NicsByNetwork = new Map()): Promise<void> {
  if (defs.length === 0) return;
  const failures = await fx.withHostLock(`reconnect ${domain.name}`, async () => {
    await finishPendingReleases(fx);
    defs = current(defs, fx, 'keep');
    extendRecord(domain, defs, fx);
    const errors: string[] = [];
    for (const def of defs) {
      addToUsers(domain, def, nics.get(def.name) ?? 'unknown', fx);
      try {
        await ensureNetwork(def, fx, domain.name);
      } catch (err) {
        errors.push((err as Error).message);
      }
    }
    return errors;
  });
  if (failures.length > 0) throw new InternalError(`domain ${domain.name} keeps running, but ${failures.join('; ')}`);
}

/**
 * `release`: the domain stops being a user of the networks it was recorded
 * on, and those left without users lose their pair. Only that domain's
 * networks are read, however many the host has. The record moves to
 * releasing/ first, so a release killed half-way is finished by the next
 * hook run.
 */
export async function releaseDomain(key: string, fx: Effects = realEffects): Promise<string[]> {
  return fx.withHostLock(`release ${key}`, async () => {
    await finishPendingReleases(fx);
    const record = fx.beginRelease(key);
    if (!record) return [];
    crashPoint('release:begun');
    unrecord(key, record.name, record.networks, fx);
    const removed = await removeUnusedPairs(record.networks, fx, record.name);
    crashPoint('release:torn-down');
    fx.endRelease(key);
    return removed;
  });
}

/**
 * libvirt's network hook `port-deleted`: the NIC `mac` of the domain left
 * `network` (a hot-unplug, or the first step of a stop: libvirt runs it
 * before the qemu hook's `release`). The domain stays a user while it has
 * other NICs there that vxvirt knows of (planUnplug); after its last one it
 * is released from that network exactly as a stop releases it — journaled in
 * releasing/ first, so a hook killed half-way is finished by the next — and
 * the network leaves its record, so a later `release` does not touch it.
 * Returns what the unplug meant.
 */
export async function unplugNic(domain: DomainRef, network: RecordedNetwork, mac: string, fx: Effects = realEffects): Promise<ReturnType<typeof planUnplug>['outcome']> {
  return fx.withHostLock(`port-deleted ${domain.name}`, async () => {
    await finishPendingReleases(fx);
    const users = fx.readUsers(network.name);
    const plan = planUnplug(users, domain.key, mac);
    if (plan.outcome === 'still-used') {
      fx.writeUsers(network.name, plan.users);
      fx.log({ action: 'nic-removed', network: network.name, domain: domain.name, macs: [mac.toLowerCase()] });
    } else if (plan.outcome === 'last-nic') {
      const name = users[domain.key]?.name ?? domain.name;
      fx.beginPartialRelease(domain.key, { name, networks: [network] });
      crashPoint('unplug:begun');
      unrecord(domain.key, name, [network], fx);
      forgetNetworks(domain.key, [network], fx);
      crashPoint('unplug:unrecorded');
      await removeUnusedPairs([network], fx, name);
      fx.endRelease(domain.key);
    }
    return plan.outcome;
  });
}

// ---- reconcile -------------------------------------------------------------

/** What `vxvirt reconcile` reads besides what the hook reads: it surveys the whole host. */
export interface SurveyEffects extends Effects {
  loadDefinitions(): LoadedDefinitions;
  listUserNetworks(): string[];
  listDomainRecords(): RecordedDomain[];
}

// A function, not a constant, so that the hook's bundle does not carry it.
export const realSurveyEffects = (): SurveyEffects => ({
  ...realEffects,
  loadDefinitions: store.loadDefinitions,
  listUserNetworks: store.listUserNetworks,
  listDomainRecords: store.listDomainRecords,
});

export interface ReconcileOptions {
  dryRun: boolean;
  graceSeconds: number;
  /** Asked before the host lock is taken: libvirtd waits for a running hook, and the hook for the lock. */
  libvirt: LibvirtFacts;
}

export interface ReconcileReport {
  plan: ReconcilePlan;
  failed: Array<{ action: Action; error: string }>;
  /** What a second look after the changes still finds (on a dry run, the plan itself). */
  remaining: ReconcilePlan;
  converged: boolean;
}

async function survey(fx: SurveyEffects, options: ReconcileOptions): Promise<ReconcileFacts> {
  const { defs, broken } = fx.loadDefinitions();
  const users = new Map(fx.listUserNetworks().map((n) => [n, fx.readUsers(n)]));
  const unicast = defs.filter((d) => floodingMode(d) === 'unicast').map((d) => vxlanName(d.vni));
  return {
    defs,
    broken: broken.map((b) => ({ name: b.name, message: b.error.message })),
    users,
    domains: fx.listDomainRecords(),
    releasing: fx.pendingReleases(),
    observed: await fx.observeAll(unicast),
    libvirt: options.libvirt,
    now: fx.now(),
    graceSeconds: options.graceSeconds,
  };
}

/** Remove a pair nobody uses, checking again under the lock that its bridge has no foreign ports. */
async function removePair(vni: number, devices: readonly string[], fx: Effects): Promise<void> {
  const observed = await fx.observe({ devices: [...new Set([...pairOf(vni), ...devices])], portsOf: [bridgeName(vni)] });
  const plan = planTeardown(vni, observed);
  if (plan.kept) throw new InternalError(plan.kept);
  if (plan.steps.length > 0) await fx.apply(plan.steps);
}

async function carryOut(action: Action, fx: Effects): Promise<void> {
  switch (action.kind) {
    case 'finish-release':
      unrecord(action.key, action.domain, action.networks, fx);
      forgetNetworks(action.key, action.networks, fx);
      fx.endRelease(action.key);
      return;
    case 'add-record': {
      const record = fx.readDomainRecord(action.key) ?? { name: action.domain, networks: [] };
      if (!record.networks.some((n) => sameNetwork(n, action.network))) {
        fx.writeDomainRecord(action.key, { ...record, networks: [...record.networks, action.network] });
      }
      return;
    }
    case 'add-user':
      // Made from libvirt's word that the domain runs there: which NICs, vxvirt cannot say.
      fx.writeUsers(action.network, addUser(fx.readUsers(action.network), action.key, action.domain, fx.now(), 'unknown'));
      fx.log({ action: 'user-added', network: action.network, domain: action.domain });
      return;
    case 'drop-user':
      fx.writeUsers(action.network, removeUser(fx.readUsers(action.network), action.key));
      fx.log({ action: 'user-removed', network: action.network, domain: action.domain });
      return;
    case 'drop-record': {
      const record = fx.readDomainRecord(action.key);
      if (record) {
        const networks = record.networks.filter((n) => !sameNetwork(n, action.network));
        fx.writeDomainRecord(action.key, { ...record, networks });
      }
      return;
    }
    case 'repair':
      await ensureNetwork(action.def, fx);
      return;
    case 'remove':
      await removePair(action.vni, action.devices, fx);
      fx.log({ action: 'deleted', network: action.network ?? `VNI ${action.vni}`, devices: action.devices });
      return;
  }
}

/**
 * `vxvirt reconcile`: under the host lock, survey definitions, state and
 * devices, plan (reconcile.ts), carry the actions out one by one — a failed
 * one does not stop the others — and survey again to tell whether the host
 * has converged.
 */
export async function reconcileHost(options: ReconcileOptions, fx: SurveyEffects = realSurveyEffects()): Promise<ReconcileReport> {
  return fx.withHostLock(options.dryRun ? 'reconcile --dry-run' : 'reconcile', async () => {
    const plan = planReconcile(await survey(fx, options));
    if (options.dryRun) {
      return { plan, failed: [], remaining: plan, converged: plan.actions.length === 0 && plan.left.length === 0 };
    }
    const failed: ReconcileReport['failed'] = [];
    for (const action of plan.actions) {
      try {
        await carryOut(action, fx);
      } catch (err) {
        failed.push({ action, error: (err as Error).message });
      }
    }
    const remaining = planReconcile(await survey(fx, options));
    return { plan, failed, remaining, converged: failed.length === 0 && remaining.actions.length === 0 && remaining.left.length === 0 };
  });
}

/**
 * `set-peers`/`redefine`: bring the live devices of a changed network to
 * `def` — if the network is in use here, that is if it has users or its
 * devices exist; otherwise nothing is done and the next prepare builds them.
 * The caller holds the host lock and has refused changes a live device
 * cannot take (redefine.ts), so the plan only appends and deletes flood
 * entries and sets MTUs: the vxlan keeps its ifindex, and the peers that
 * stay keep their forwarding entries. Writes no file. Returns the steps the
 * first plan asked for (empty when the devices already match), or undefined
 * when the network is not in use here.
 */
export async function updateLiveNetwork(def: NetworkDefinition, fx: Effects = realEffects): Promise<Step[] | undefined> {
  const observed = await fx.observe(ensureQuery(def));
  if (ownedDevices(def.vni, observed).length === 0 && !hasUsers(fx.readUsers(def.name))) return undefined;
  const steps = planEnsure(def, observed);
  await ensureNetwork(def, fx);
  return steps;
}
