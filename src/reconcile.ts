// `vxvirt reconcile`: what to change so that the state files, the kernel's
// devices and the domains libvirt runs agree. Pure: facts in, actions out;
// lifecycle.ts gathers the facts under the host lock and carries the actions
// out. Everything the hook does on the way is in the facts (records written
// before users, pending releases), so this also finishes whatever a killed
// hook or a lost state directory (a host reboot wipes /run) left behind.
//
// The rules, in the order the actions are carried out:
//  1. A release a killed hook left in releasing/ is finished.
//  2. Users and records: with libvirt, a domain it does not run is dropped
//     from every network and its record goes; one it runs is a user of every
//     network its record lists (or its live XML puts it on). Without libvirt
//     (not installed, not running), a user is dropped only when nothing can
//     be using the network: recorded longer ago than the grace period (a
//     guest between `prepare` and the attachment of its tap has no port yet)
//     AND its bridge has no port but the vxlan.
//  3. Devices: a defined network with users gets its pair ensured (planEnsure);
//     vxvirt's devices that no one uses are removed (planTeardown, which never
//     removes a bridge with ports vxvirt does not know), including those of
//     networks no longer defined — their VNI is in their device group.
// A network whose definition cannot be read is never acted on, nor are
// devices that may be its own.
import { orphanPairs, describeSteps, type DeviceChange, type OrphanPair } from './drift.ts';
import { indexOf, isBridgedNic, isUuid, networksOfSources, readDomain } from './domain-xml.ts';
import { bridgeName, sameNetwork, vxlanName, type NetworkDefinition } from './network-definition.ts';
import { groupDevices, guestPorts, planEnsure, planTeardown, type Observed, type Step } from './plan.ts';
import { hasUsers, type DomainRecord, type RecordedDomain, type RecordedNetwork, type Users } from './users.ts';

/** A domain libvirt has active, and the bridges and libvirt networks its NICs are on. */
export interface ActiveDomainFacts {
  uuid: string;
  name: string;
  bridges: string[];
  networks: string[];
}

export type LibvirtFacts =
  | {
      reachable: true;
      /** When libvirt was asked: a user recorded after that may be a domain that started since. */
      asOf: Date;
      domains: ActiveDomainFacts[];
    }
  | { reachable: false; reason: string };

export interface ReconcileFacts {
  defs: NetworkDefinition[];
  broken: Array<{ name: string; message: string }>;
  /** Each users file, by network name. */
  users: Map<string, Users>;
  /** domains/ */
  domains: RecordedDomain[];
  /** releasing/ */
  releasing: RecordedDomain[];
  /** Every device of the host; the flood entries of the defined unicast vxlans. */
  observed: Observed;
  libvirt: LibvirtFacts;
  now: Date;
  graceSeconds: number;
}

interface Base {
  /** What is done and why, one line each (a repair has one per device). */
  lines: string[];
}
export type Action = Base &
  (
    | { kind: 'finish-release'; key: string; domain: string; networks: RecordedNetwork[] }
    | { kind: 'add-record'; key: string; domain: string; network: RecordedNetwork }
    | { kind: 'add-user'; key: string; domain: string; network: string }
    | { kind: 'drop-user'; key: string; domain: string; network: string }
    | { kind: 'drop-record'; key: string; domain: string; network: RecordedNetwork }
    | { kind: 'repair'; network: string; def: NetworkDefinition; changes: DeviceChange[] }
    | { kind: 'remove'; network?: string; vni: number; devices: string[]; steps: Step[] }
  );

export interface ReconcilePlan {
  actions: Action[];
  /** What was left alone and needs a person (one line each). */
  left: string[];
  /** What the decisions rested on, when it is worth saying (libvirt unreachable). */
  notes: string[];
}


/** The vxvirt networks a domain's live XML puts it on: by bridge vxbrN first, then by libvirt network name. */
export function activeDomainFacts(uuid: string, name: string, liveXml: string): ActiveDomainFacts {
  const nics = readDomain(liveXml).nics.filter(isBridgedNic);
  return {
    uuid: uuid.toLowerCase(),
    name,
    bridges: nics.flatMap((n) => (n.bridge ? [n.bridge] : [])),
    networks: nics.flatMap((n) => (n.network ? [n.network] : [])),
  };
}

const seconds = (ms: number): string => `${Math.round(ms / 1000)} s`;

/**
 * What the plan has decided so far: the users and domain records as they
 * will be once its actions are carried out, and those actions. Each change
 * is made here and nowhere else, so the state and the action that brings it
 * about cannot part.
 */
class Ledger {
  readonly actions: Action[] = [];
  readonly left: string[] = [];
  readonly notes: string[] = [];
  readonly users: Map<string, Users>;
  readonly records: Map<string, DomainRecord>;
  /** Why a user was dropped in this plan, so its record entry goes for the same reason. */
  private readonly droppedWhy = new Map<string, string>();

  constructor(
    facts: ReconcileFacts,
    private readonly broken: ReadonlySet<string>,
  ) {
    this.users = new Map([...facts.users].map(([n, u]) => [n, { ...u }]));
    this.records = new Map(facts.domains.map((d) => [d.key, structuredClone(d.record)]));
  }

  isUser(network: string, key: string): boolean {
    return key in (this.users.get(network) ?? {});
  }

  /** Every user of a readable network as [network, key, name, since], networks by name. */
  userEntries(): Array<[string, string, string, string]> {
    return [...this.users]
      .filter(([network]) => !this.broken.has(network))
      .sort(([a], [b]) => a.localeCompare(b))
      .flatMap(([network, us]) => Object.entries(us).map(([key, u]): [string, string, string, string] => [network, key, u.name, u.since]));
  }

  droppedReason(key: string, network: string): string | undefined {
    return this.droppedWhy.get(`${key}\n${network}`);
  }

  dropUser(network: string, key: string, domain: string, why: string): void {
    const u = this.users.get(network);
    if (u) delete u[key];
    this.droppedWhy.set(`${key}\n${network}`, why);
    this.actions.push({ kind: 'drop-user', key, domain, network, lines: [`dropped user ${domain} from ${network}: ${why}`] });
  }

  addUser(network: string, key: string, domain: string, since: Date, why: string): void {
    this.users.set(network, { ...(this.users.get(network) ?? {}), [key]: { name: domain, since: since.toISOString() } });
    this.actions.push({ kind: 'add-user', key, domain, network, lines: [`added user ${domain} to ${network}: ${why}`] });
  }

  addRecord(key: string, domain: string, network: RecordedNetwork, why: string): void {
    const r: DomainRecord = this.records.get(key) ?? { name: domain, networks: [] };
    if (r.networks.some((n) => sameNetwork(n, network))) return;
    r.networks.push(network);
    this.records.set(key, r);
    this.actions.push({ kind: 'add-record', key, domain, network, lines: [`recorded ${domain} on ${network.name}: ${why}`] });
  }

  dropRecord(key: string, network: RecordedNetwork, why: string): void {
    const r = this.records.get(key);
    if (!r) return;
    this.forgetNetworks(key, [network]);
    this.actions.push({ kind: 'drop-record', key, domain: r.name, network, lines: [`dropped the record of ${r.name} on ${network.name}: ${why}`] });
  }

  /** Take networks out of a domain's record (the record goes with its last network); no action of its own. */
  forgetNetworks(key: string, networks: readonly RecordedNetwork[]): void {
    const r = this.records.get(key);
    if (!r) return;
    r.networks = r.networks.filter((n) => !networks.some((g) => sameNetwork(g, n)));
    if (r.networks.length === 0) this.records.delete(key);
  }
}

/** What every phase reads and never changes. */
interface Context {
  facts: ReconcileFacts;
  defByName: Map<string, NetworkDefinition>;
  broken: Set<string>;
  orphans: OrphanPair[];
}

/** A network's VNI: its definition's, else what a record or its devices' alias says. */
function vniOf(network: string, cx: Context, ledger: Ledger): number | undefined {
  const def = cx.defByName.get(network);
  if (def) return def.vni;
  for (const r of [...ledger.records.values(), ...cx.facts.releasing.map((p) => p.record)]) {
    const n = r.networks.find((x) => x.name === network);
    if (n) return n.vni;
  }
  return cx.orphans.find((o) => o.name === network)?.vni;
}

/** 1. Releases a killed hook left half done. */
function finishCutShortReleases(cx: Context, ledger: Ledger): void {
  for (const { key, record } of cx.facts.releasing) {
    const from = record.networks.filter((n) => ledger.isUser(n.name, key));
    for (const n of from) delete ledger.users.get(n.name)?.[key];
    // A hot-unplug's release leaves the running domain's record in domains/: those networks leave it.
    ledger.forgetNetworks(key, record.networks);
    ledger.actions.push({
      kind: 'finish-release',
      key,
      domain: record.name,
      networks: record.networks,
      lines: [`finished the release of ${record.name} that was cut short${from.length > 0 ? `: no longer a user of ${from.map((n) => n.name).join(', ')}` : ''}`],
    });
  }
}

const NOT_RUNNING = 'domain is not running (libvirt)';

/** 2a. Users and records when libvirt says which domains run. */
function usersWithLibvirt(cx: Context, ledger: Ledger, lv: Extract<LibvirtFacts, { reachable: true }>): void {
  const active = new Map<string, ActiveDomainFacts>();
  for (const d of lv.domains) {
    active.set(d.uuid.toLowerCase(), d);
    active.set(d.name, d);
  }
  // A record without a UUID is keyed by the domain's name.
  const activeOf = (key: string): ActiveDomainFacts | undefined => active.get(isUuid(key) ? key.toLowerCase() : key);

  for (const [network, key, name, since] of ledger.userEntries()) {
    if (activeOf(key)) continue;
    // It may have started between libvirt's answer and the lock.
    if (Date.parse(since) >= lv.asOf.getTime()) continue;
    ledger.dropUser(network, key, name, NOT_RUNNING);
  }
  for (const [key, record] of [...ledger.records]) {
    for (const n of [...record.networks]) {
      if (cx.broken.has(n.name) || ledger.isUser(n.name, key)) continue;
      if (!activeOf(key)) {
        ledger.dropRecord(key, n, NOT_RUNNING);
        continue;
      }
      const def = cx.defByName.get(n.name);
      if (def && def.vni !== n.vni) {
        ledger.left.push(`${record.name} runs, recorded on ${n.name} with VNI ${n.vni}, but ${n.name} now has VNI ${def.vni}: left as it is`);
        continue;
      }
      ledger.addUser(n.name, key, record.name, cx.facts.now, `the domain is running (libvirt) and recorded on ${n.name}`);
    }
  }
  recordUnrecordedRunning(cx, ledger, lv.domains);
}

/** Running domains on vxvirt's bridges that were not recorded (state lost). */
function recordUnrecordedRunning(cx: Context, ledger: Ledger, domains: readonly ActiveDomainFacts[]): void {
  const index = indexOf(cx.facts.defs);
  for (const d of domains) {
    const key = d.uuid;
    for (const def of networksOfSources(d, index)) {
      // Users are keyed as the hook keys them: by the UUID as written in the XML.
      const existing = Object.keys(ledger.users.get(def.name) ?? {}).find((k) => k.toLowerCase() === key);
      if (existing) continue;
      const why = `the domain is running on ${bridgeName(def.vni)} (libvirt) but was not recorded`;
      ledger.addRecord(key, d.name, { name: def.name, vni: def.vni }, why);
      ledger.addUser(def.name, key, d.name, cx.facts.now, why);
    }
  }
}

/** 2b. Users and records without libvirt: a user goes only when nothing can be using the network. */
function usersWithoutLibvirt(cx: Context, ledger: Ledger, reason: string): void {
  const { facts } = cx;
  const why = 'libvirt unreachable';
  if (ledger.userEntries().length > 0 || ledger.records.size > 0) {
    ledger.notes.push(
      `${reason === '--no-libvirt' ? 'libvirt is not asked (--no-libvirt)' : `libvirt is unreachable (${reason})`}: a user counts as gone only when recorded over ${facts.graceSeconds} s ago and its bridge has no port but the vxlan`,
    );
  }
  const graceMs = facts.graceSeconds * 1000;
  for (const [network, key, name, since] of ledger.userEntries()) {
    const age = facts.now.getTime() - Date.parse(since);
    const vni = vniOf(network, cx, ledger);
    const ports = vni === undefined ? [] : guestPorts(vni, facts.observed);
    if (!(age > graceMs) && !Number.isNaN(age)) continue; // may be starting: its tap is not attached yet
    if (ports.length > 0) continue; // someone is on the bridge; it may be this domain
    const where = vni === undefined ? 'the network has no devices' : `${bridgeName(vni)} has no port but the vxlan`;
    ledger.dropUser(network, key, name, `${where} and it was recorded ${Number.isNaN(age) ? 'at an unknown time' : `${seconds(age)} ago`} (${why})`);
  }
  for (const [key, record] of [...ledger.records]) {
    for (const n of [...record.networks]) {
      if (cx.broken.has(n.name) || ledger.isUser(n.name, key)) continue;
      // Under the host lock no prepare is under way, so a record without
      // the user is a start that was cut short (libvirt then stops the domain).
      const ports = guestPorts(n.vni, facts.observed);
      const dropped = ledger.droppedReason(key, n.name);
      if (dropped) ledger.dropRecord(key, n, dropped);
      else if (ports.length === 0) ledger.dropRecord(key, n, `not a user of it, and ${bridgeName(n.vni)} has no port but the vxlan`);
      else ledger.left.push(`${record.name} is recorded on ${n.name} but not a user of it, and ${bridgeName(n.vni)} has ports ${ports.join(', ')}: cannot tell whether it runs (${why})`);
    }
  }
}

/** Users without a record of that network: a release would miss them. */
function recordUsers(cx: Context, ledger: Ledger): void {
  for (const [network, key, name] of ledger.userEntries()) {
    if (ledger.records.get(key)?.networks.some((n) => n.name === network)) continue;
    const vni = vniOf(network, cx, ledger);
    if (vni !== undefined) ledger.addRecord(key, name, { name: network, vni }, `a user of ${network} without a record of it, which its release needs`);
  }
}

/** 3a. Devices of defined networks: ensured while used, removed when not. */
function devicesOfDefinedNetworks(cx: Context, ledger: Ledger): void {
  const { facts } = cx;
  for (const def of [...facts.defs].sort((a, b) => a.name.localeCompare(b.name))) {
    const us = ledger.users.get(def.name) ?? {};
    if (hasUsers(us)) {
      try {
        const steps = planEnsure(def, facts.observed);
        if (steps.length === 0) continue;
        const changes = describeSteps(steps, facts.observed);
        ledger.actions.push({
          kind: 'repair',
          network: def.name,
          def,
          changes,
          lines: changes.map((c) => `repaired ${c.device} (network ${def.name}): ${c.changes.join(', ')}`),
        });
      } catch (err) {
        ledger.left.push(`cannot repair network ${def.name}, used by ${Object.values(us).map((u) => u.name).sort().join(', ')}: ${(err as Error).message}`);
      }
      continue;
    }
    const owned = groupDevices(def.vni, facts.observed);
    if (owned.length === 0) continue;
    const teardown = planTeardown(def.vni, facts.observed);
    if (teardown.kept) ledger.left.push(`left ${owned.join('+')} (network ${def.name}) in place: no users, but ${teardown.kept}`);
    else ledger.actions.push({ kind: 'remove', network: def.name, vni: def.vni, devices: owned, steps: teardown.steps, lines: [`removed ${owned.join('+')} (network ${def.name}): no users`] });
  }
}

/** 3b. Devices of networks no longer defined (their VNI is in their device group). */
function devicesOfOrphans(cx: Context, ledger: Ledger): void {
  const { broken } = cx;
  for (const o of cx.orphans) {
    const label = `${o.devices.join('+')} (${o.name !== undefined ? `network ${o.name}, ` : ''}VNI ${o.vni}, not defined)`;
    const usedBy = o.name !== undefined ? Object.values(ledger.users.get(o.name) ?? {}).map((u) => u.name) : [];
    if (o.name !== undefined && broken.has(o.name)) {
      ledger.left.push(`left ${label} alone: the definition of ${o.name} cannot be read`);
    } else if (o.name === undefined && broken.size > 0) {
      ledger.left.push(`left ${label} alone: they may belong to ${[...broken].sort().join(', ')}, whose definition cannot be read`);
    } else if (usedBy.length > 0) {
      ledger.left.push(`left ${label} in place: used by ${usedBy.sort().join(', ')}`);
    } else {
      const teardown = planTeardown(o.vni, cx.facts.observed);
      if (teardown.kept) ledger.left.push(`left ${label} in place: no users, but ${teardown.kept}`);
      else if (teardown.steps.length === 0) ledger.left.push(`left ${label} alone: vxvirt's devices are named ${bridgeName(o.vni)} and ${vxlanName(o.vni)}, so these were renamed by someone`);
      else ledger.actions.push({ kind: 'remove', ...(o.name !== undefined ? { network: o.name } : {}), vni: o.vni, devices: o.devices, steps: teardown.steps, lines: [`removed ${label}: no users`] });
    }
  }
}

/** Records before users, users before devices: the order the hook keeps, so a reconcile killed half-way leaves what the next run can finish. */
const ORDER: ReadonlyArray<Action['kind']> = ['finish-release', 'add-record', 'add-user', 'drop-user', 'drop-record', 'repair', 'remove'];

export function planReconcile(facts: ReconcileFacts): ReconcilePlan {
  const broken = new Set(facts.broken.map((b) => b.name));
  const cx: Context = { facts, defByName: new Map(facts.defs.map((d) => [d.name, d])), broken, orphans: orphanPairs(facts.defs, facts.observed) };
  const ledger = new Ledger(facts, broken);
  for (const b of facts.broken) ledger.left.push(`left network ${b.name} alone: ${b.message}`);

  finishCutShortReleases(cx, ledger);
  if (facts.libvirt.reachable) usersWithLibvirt(cx, ledger, facts.libvirt);
  else usersWithoutLibvirt(cx, ledger, facts.libvirt.reason);
  recordUsers(cx, ledger);
  devicesOfDefinedNetworks(cx, ledger);
  devicesOfOrphans(cx, ledger);

  const actions = [...ledger.actions].sort((a, b) => ORDER.indexOf(a.kind) - ORDER.indexOf(b.kind));
  return { actions, left: ledger.left, notes: ledger.notes };
}

// ---- libvirt networks ------------------------------------------------------------
//
// 4. libvirt networks (carried out by the CLI outside the host lock: libvirt
//    runs its network hooks while it starts one): a definition that wants a
//    libvirt network (define-network without --no-libvirt) gets it made,
//    started and autostarted as define-network makes it — the one
//    define-network could not make because libvirtd was down, or one removed
//    by hand; a libvirt network vxvirt made (its metadata carries vxvirt's
//    mark) for a network that is no longer defined is removed. A libvirt
//    network vxvirt did not make is never touched, nor one guests are
//    connected to.

/** A libvirt network as reconcile sees it. */
export interface LibvirtNetworkView {
  name: string;
  /** vxvirt's mark is in its metadata. */
  ours: boolean;
  /** The VNI in vxvirt's mark. */
  vni?: number;
  active: boolean;
  autostart: boolean;
  connections: number;
}

export type LibvirtNetworkFacts = { reachable: true; networks: LibvirtNetworkView[] } | { reachable: false; reason: string };

export type LibvirtNetworkAction = Base &
  ({ kind: 'define-libvirt-network'; network: string; def: NetworkDefinition } | { kind: 'remove-libvirt-network'; network: string });

export interface LibvirtNetworkPlan {
  actions: LibvirtNetworkAction[];
  left: string[];
  notes: string[];
}

/**
 * How a defined network's libvirt network differs from what its definition
 * wants, in words (for status); undefined when it does not. `n` is libvirt's
 * network of that name, if any.
 */
export function libvirtNetworkDrift(def: NetworkDefinition, n: LibvirtNetworkView | undefined): string | undefined {
  if (n?.ours && n.vni !== def.vni) return `libvirt network ${def.name} puts guests on ${n.vni === undefined ? 'another bridge' : bridgeName(n.vni)}, not ${bridgeName(def.vni)}`;
  if (def.libvirt !== true) return undefined;
  if (!n) return `libvirt network ${def.name} does not exist`;
  if (!n.ours) return `libvirt network ${def.name} was not made by vxvirt`;
  if (!n.active) return `libvirt network ${def.name} is not active`;
  if (!n.autostart) return `libvirt network ${def.name} is not autostarted`;
  return undefined;
}

export function planLibvirtNetworks(defs: readonly NetworkDefinition[], broken: readonly string[], facts: LibvirtNetworkFacts): LibvirtNetworkPlan {
  const plan: LibvirtNetworkPlan = { actions: [], left: [], notes: [] };
  const wanted = [...defs].filter((d) => d.libvirt === true).sort((a, b) => a.name.localeCompare(b.name));
  if (!facts.reachable) {
    if (wanted.length > 0) plan.notes.push(`libvirt is unreachable (${facts.reason}): the libvirt networks of ${wanted.map((d) => d.name).join(', ')} were not checked`);
    return plan;
  }
  const byName = new Map(facts.networks.map((n) => [n.name, n]));
  for (const def of wanted) {
    const n = byName.get(def.name);
    const bridge = bridgeName(def.vni);
    const define = (line: string): void => void plan.actions.push({ kind: 'define-libvirt-network', network: def.name, def, lines: [line] });
    if (!n) {
      define(`created libvirt network ${def.name} on ${bridge}: network ${def.name} is defined with one, and libvirt has none`);
    } else if (!n.ours) {
      plan.left.push(`left libvirt network ${def.name} alone: vxvirt did not make it, so network ${def.name} has none (rename one of them, or define ${def.name} again with --no-libvirt)`);
    } else if (n.vni !== def.vni) {
      const was = n.vni === undefined ? 'another bridge' : bridgeName(n.vni);
      if (n.active && n.connections > 0) {
        plan.left.push(`libvirt network ${def.name} puts guests on ${was}, not ${bridge}, and has ${n.connections} guest connection(s): reconcile updates it once they are gone`);
      } else {
        define(`updated libvirt network ${def.name}: ${was} -> ${bridge}`);
      }
    } else if (!n.active || !n.autostart) {
      const what = [!n.active ? 'started' : '', !n.autostart ? 'autostarted' : ''].filter(Boolean).join(' and ');
      define(`${what} libvirt network ${def.name}: it was ${[!n.active ? 'inactive' : '', !n.autostart ? 'not autostarted' : ''].filter(Boolean).join(' and ')}`);
    }
  }
  const defined = new Set(defs.map((d) => d.name));
  const unreadable = new Set(broken);
  for (const n of [...facts.networks].sort((a, b) => a.name.localeCompare(b.name))) {
    if (!n.ours || defined.has(n.name)) continue;
    const on = n.vni === undefined ? '' : ` (${bridgeName(n.vni)})`;
    if (unreadable.has(n.name)) {
      plan.left.push(`left libvirt network ${n.name}${on} alone: the definition of ${n.name} cannot be read`);
    } else if (n.active && n.connections > 0) {
      plan.left.push(`left libvirt network ${n.name}${on} in place: vxvirt made it for a network no longer defined, but it has ${n.connections} guest connection(s)`);
    } else {
      plan.actions.push({ kind: 'remove-libvirt-network', network: n.name, lines: [`removed libvirt network ${n.name}${on}: network ${n.name} is no longer defined`] });
    }
  }
  return plan;
}
