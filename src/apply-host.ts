// `vxvirt apply`'s transaction: under the host lock, read the definitions
// and what uses each network, plan (apply.ts), refuse the whole file if any
// part is refused, then write and update in place step by step. Each step
// is redefine's or undefine's own: a changed network in use gets its live
// devices brought to the new definition (lifecycle's updateLiveNetwork),
// and a step that fails has its definition written back, as redefine does.
import { DefinitionError, VxvirtError, warn } from './errors.ts';
import { planApply, type ApplyPlan, type Usage } from './apply.ts';
import * as iproute from './iproute.ts';
import { removeUnusedPairs, updateLiveNetwork } from './lifecycle.ts';
import { logChange } from './log.ts';
import { bridgeName, vxlanName, type NetworkDefinition } from './network-definition.ts';
import { ownedDevices, type Step } from './plan.ts';
import * as store from './store.ts';
import { userNames } from './users.ts';

export interface ApplyOutcome {
  plan: ApplyPlan;
  /** Per network changed in use: the steps its live update took. */
  live: Map<string, Step[]>;
}

async function usageOf(defs: readonly NetworkDefinition[]): Promise<Map<string, Usage>> {
  const out = new Map<string, Usage>();
  if (defs.length === 0) return out;
  const observed = await iproute.observe({ devices: defs.flatMap((d) => [bridgeName(d.vni), vxlanName(d.vni)]) });
  for (const d of defs) out.set(d.name, { users: userNames(store.readUsers(d.name)), devices: ownedDevices(d.vni, observed) });
  return out;
}

export async function applyPlanToHost(wanted: readonly NetworkDefinition[], options: { prune: boolean; dryRun: boolean }): Promise<ApplyOutcome> {
  return store.withHostLock(options.dryRun ? 'apply --dry-run' : 'apply', async () => {
    const { defs: current, broken } = store.loadDefinitions();
    for (const b of broken) {
      if (wanted.some((w) => w.name === b.name)) warn(`network ${b.name}: its definition cannot be read (${b.error.message}); the file's replaces it`);
      else warn(`skipping network ${b.name}: ${b.error.message}`);
    }
    const plan = planApply(current, wanted, await usageOf(current), { prune: options.prune });
    if (plan.refused.length > 0) throw new DefinitionError(`nothing applied: ${plan.refused.join('; ')}`);
    const live = new Map<string, Step[]>();
    if (options.dryRun) return { plan, live };
    for (const step of plan.steps) {
      switch (step.op) {
        case 'create':
          store.writeDefinition(step.def);
          logChange({ network: step.def.name, action: 'defined', command: 'apply' });
          break;
        case 'change': {
          const { old, next } = step;
          store.writeDefinition(next);
          try {
            const steps = await updateLiveNetwork(next);
            if (steps !== undefined) live.set(next.name, steps);
            // A new VNI (only while unused): the old VNI's pair goes, as with define-network --replace.
            if (old.vni !== next.vni) await removeUnusedPairs([old]);
          } catch (err) {
            store.writeDefinition(old);
            await updateLiveNetwork(old).catch((e: Error) => warn(`network ${old.name}: could not restore its devices: ${e.message}`));
            if (err instanceof VxvirtError) {
              throw new (err.constructor as new (m: string) => VxvirtError)(`${err.message}; network ${old.name} is left as it was (the steps before it were applied)`);
            }
            throw err;
          }
          logChange({
            network: next.name,
            action: step.changes.every((c) => c.what === '--remote') ? 'peers-changed' : 'redefined',
            command: 'apply',
            changed: step.changes.map((c) => c.what.replace(/^--/, '').replace(/ /g, '-')),
            added: step.plan.added.length ? step.plan.added : undefined,
            removed: step.plan.removed.length ? step.plan.removed : undefined,
            live: live.has(next.name),
          });
          break;
        }
        case 'remove':
          await removeUnusedPairs([step.def]);
          store.removeDefinition(step.def.name);
          logChange({ network: step.def.name, action: 'undefined', command: 'apply' });
          break;
      }
    }
    return { plan, live };
  });
}
