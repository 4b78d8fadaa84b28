// Bringing pairs up for a domain and down after the last one: the control
// logic between the pure planner and the effectful modules. Every decision
// about users and teardown is taken under the host lock, so one domain's
// release can never delete a bridge that another domain's prepare has just
// ensured (the race that made OpenStack Neutron stop deleting empty bridges).
import { InternalError, VxvirtError, warn } from './errors.ts';
import * as iproute from './iproute.ts';
import { bridgeName, floodingMode, vxlanName, type NetworkDefinition } from './network-definition.ts';
import { planEnsure, planTeardown, type Observed, type Step } from './plan.ts';
import * as store from './store.ts';
import { addUser, hasUsers, removeUser, type Users } from './users.ts';

/** The effects lifecycle needs; tests replace them with fakes. */
export interface Effects {
  observe(fdbDevices: readonly string[]): Promise<Observed>;
  apply(steps: readonly Step[]): Promise<void>;
  readUsers(network: string): Users;
  writeUsers(network: string, users: Users): void;
  listUserNetworks(): string[];
  withHostLock<T>(holder: string, fn: () => Promise<T>): Promise<T>;
  warn(message: string): void;
  now(): Date;
}

export const realEffects: Effects = {
  observe: iproute.observe,
  apply: iproute.apply,
  readUsers: store.readUsers,
  writeUsers: store.writeUsers,
  listUserNetworks: store.listUserNetworks,
  withHostLock: store.withHostLock,
  warn,
  now: () => new Date(),
};

export interface DomainRef {
  key: string;
  name: string;
}

const fdbDevicesOf = (defs: readonly NetworkDefinition[]): string[] =>
  defs.filter((d) => floodingMode(d) === 'unicast').map((d) => vxlanName(d.vni));

const MAX_ATTEMPTS = 3;

/**
 * Make the kernel hold `def`'s pair: read, plan, apply, and read back until
 * the plan is empty. A step that fails because someone else changed the
 * device meanwhile ("File exists", "Cannot find device") is retried from a
 * fresh read; conflicts with devices that are not ours fail at once.
 */
async function ensureNetwork(def: NetworkDefinition, fx: Effects): Promise<void> {
  let lastError: unknown;
  for (let attempt = 0; attempt <= MAX_ATTEMPTS; attempt++) {
    const steps = planEnsure(def, await fx.observe(fdbDevicesOf([def])));
    if (steps.length === 0) return;
    if (attempt === MAX_ATTEMPTS) break;
    try {
      await fx.apply(steps);
    } catch (err) {
      lastError = err;
    }
  }
  if (lastError instanceof VxvirtError) {
    throw new (lastError.constructor as new (m: string) => VxvirtError)(`network ${def.name}: ${lastError.message}`);
  }
  throw new InternalError(`network ${def.name}: devices ${bridgeName(def.vni)}/${vxlanName(def.vni)} still differ from the definition after ${MAX_ATTEMPTS} attempts`);
}

/**
 * Remove the pairs of those `defs` that have no users left; the caller holds
 * the host lock. Never throws: teardown is best effort (a warning says what
 * failed) and converges on the next release.
 */
export async function removeUnusedPairs(defs: readonly NetworkDefinition[], fx: Effects = realEffects): Promise<string[]> {
  const unused = defs.filter((d) => !hasUsers(fx.readUsers(d.name)));
  if (unused.length === 0) return [];
  const removed: string[] = [];
  try {
    const observed = await fx.observe([]);
    const steps: Step[] = [];
    for (const def of unused) {
      const plan = planTeardown(def.vni, observed);
      if (plan.kept) fx.warn(`network ${def.name}: ${plan.kept}`);
      if (plan.steps.length > 0) removed.push(def.name);
      steps.push(...plan.steps);
    }
    if (steps.length > 0) await fx.apply(steps);
  } catch (err) {
    fx.warn(`could not remove unused devices: ${(err as Error).message}`);
    return [];
  }
  return removed;
}

/**
 * `prepare`: ensure every pair the domain needs, then record it as a user.
 * On failure, the records this call added are removed again and pairs left
 * unused are deleted, so a failed start leaves nothing half-made — while
 * records from before (a domain prepared twice) stay.
 */
export async function ensureForDomain(domain: DomainRef, defs: readonly NetworkDefinition[], fx: Effects = realEffects): Promise<void> {
  if (defs.length === 0) return;
  await fx.withHostLock(`prepare ${domain.name}`, async () => {
    const touched: NetworkDefinition[] = [];
    const recorded: NetworkDefinition[] = [];
    try {
      for (const def of defs) {
        touched.push(def);
        await ensureNetwork(def, fx);
        const users = fx.readUsers(def.name);
        if (!(domain.key in users)) recorded.push(def);
        fx.writeUsers(def.name, addUser(users, domain.key, domain.name, fx.now()));
      }
    } catch (err) {
      for (const def of recorded) fx.writeUsers(def.name, removeUser(fx.readUsers(def.name), domain.key));
      await removeUnusedPairs(touched, fx);
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
export async function reconnectDomain(domain: DomainRef, defs: readonly NetworkDefinition[], fx: Effects = realEffects): Promise<void> {
  if (defs.length === 0) return;
  const failures = await fx.withHostLock(`reconnect ${domain.name}`, async () => {
    const errors: string[] = [];
    for (const def of defs) {
      fx.writeUsers(def.name, addUser(fx.readUsers(def.name), domain.key, domain.name, fx.now()));
      try {
        await ensureNetwork(def, fx);
      } catch (err) {
        errors.push((err as Error).message);
      }
    }
    return errors;
  });
  if (failures.length > 0) throw new InternalError(`domain ${domain.name} keeps running, but ${failures.join('; ')}`);
}

/**
 * `release`: the domain stops being a user of every network; every defined
 * network left without users loses its pair. Looking at all of them (not
 * just the domain's) also finishes a teardown an earlier, killed run left.
 */
export async function releaseDomain(key: string, defs: readonly NetworkDefinition[], fx: Effects = realEffects): Promise<string[]> {
  return fx.withHostLock(`release ${key}`, async () => {
    for (const network of fx.listUserNetworks()) {
      const users = fx.readUsers(network);
      if (key in users) fx.writeUsers(network, removeUser(users, key));
    }
    return removeUnusedPairs(defs, fx);
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
  const observed = await fx.observe(fdbDevicesOf([def]));
  // A teardown would find something of ours to remove (or to keep for a
  // foreign port) exactly when vxvirt's devices for this VNI exist.
  const teardown = planTeardown(def.vni, observed);
  const devicesExist = teardown.steps.length > 0 || teardown.kept !== undefined;
  if (!devicesExist && !hasUsers(fx.readUsers(def.name))) return undefined;
  const steps = planEnsure(def, observed);
  await ensureNetwork(def, fx);
  return steps;
}
