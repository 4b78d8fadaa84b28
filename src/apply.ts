// `vxvirt apply FILE`: make this host's definitions equal to a file in the
// format `vxvirt list-networks --json` prints. Pure: the file is read and
// validated whole here, and the plan — what to create, change in place,
// remove, and what to refuse — is decided here from the definitions and
// what uses them; the CLI (cli/apply.ts) reads the host and carries it out.
// Changes to an existing network are redefine's (redefine.ts planRedefine):
// the same rules say what a network in use can take in place.
import { DefinitionError } from './errors.ts';
import { parseJson } from './formats.ts';
import {
  bridgeName,
  checkNoConflict,
  floodingMode,
  NAME_PATTERN,
  shown,
  validateDefinition,
  vxlanName,
  type DefinitionInput,
  type NetworkDefinition,
} from './network-definition.ts';
import { describeChange, planRedefine, refusalMessage, type Change, type RedefinePlan } from './redefine.ts';

/** The keys of one entry: list-networks --json's, the derived ones (mode, bridge, vxlan) checked against the rest. */
const DEFINITION_KEYS = ['name', 'vni', 'dev', 'local', 'remotes', 'group', 'evpn', 'dstport', 'mtu', 'ttl', 'learning', 'libvirt'] as const;
const DERIVED_KEYS = ['mode', 'bridge', 'vxlan'] as const;

/**
 * The networks a file asks for, every entry validated before anything is
 * decided: a bad file is one line naming the entry and the field. `null`
 * (as list-networks prints an unset value) is the same as absent; `libvirt`
 * absent is define-network's default (a libvirt network) for a network the
 * host lacks, and the host's choice for one it has (see planApply).
 */
export function parseNetworkFile(text: string, source: string): NetworkDefinition[] {
  const raw = parseJson(text, source);
  if (!Array.isArray(raw)) throw new DefinitionError(`${source}: must hold a JSON array of networks, as \`vxvirt list-networks --json\` prints`);
  const defs: NetworkDefinition[] = [];
  raw.forEach((entry: unknown, i) => {
    const where = (name?: unknown): string =>
      typeof name === 'string' && NAME_PATTERN.test(name) ? `${source}: network ${name}` : `${source}: entry ${i + 1}`;
    if (typeof entry !== 'object' || entry === null || Array.isArray(entry)) throw new DefinitionError(`${where()}: must be a JSON object`);
    const e = entry as Record<string, unknown>;
    const unknown = Object.keys(e).find((k) => !(DEFINITION_KEYS as readonly string[]).includes(k) && !(DERIVED_KEYS as readonly string[]).includes(k));
    if (unknown !== undefined) {
      throw new DefinitionError(`${where(e.name)}: unknown field ${shown(unknown)} (fields: ${[...DEFINITION_KEYS, ...DERIVED_KEYS].join(', ')})`);
    }
    const input: Record<string, unknown> = {};
    for (const k of DEFINITION_KEYS) if (e[k] !== null && e[k] !== undefined) input[k] = e[k];
    if (input.remotes !== undefined && !Array.isArray(input.remotes)) {
      throw new DefinitionError(`${where(e.name)}: field "remotes" ${shown(input.remotes)}: must be a list of addresses`);
    }
    let def: NetworkDefinition;
    try {
      def = validateDefinition(input as DefinitionInput);
    } catch (err) {
      throw new DefinitionError(`${where(e.name)}: ${(err as Error).message}`);
    }
    const derived: Record<(typeof DERIVED_KEYS)[number], string> = { mode: floodingMode(def), bridge: bridgeName(def.vni), vxlan: vxlanName(def.vni) };
    for (const k of DERIVED_KEYS) {
      if (e[k] !== undefined && e[k] !== null && e[k] !== derived[k]) {
        throw new DefinitionError(`${where(def.name)}: field "${k}" ${shown(e[k])} does not match the definition, which makes it ${shown(derived[k])} (leave it out)`);
      }
    }
    if (defs.some((d) => d.name === def.name)) throw new DefinitionError(`${where(def.name)}: defined more than once`);
    try {
      checkNoConflict(def, defs);
    } catch (err) {
      throw new DefinitionError(`${where(def.name)}: ${(err as Error).message}`);
    }
    defs.push(def);
  });
  return defs;
}

/** What uses a network on this host now: its recorded users, and vxvirt's devices of it that exist. */
export interface Usage {
  users: string[];
  devices: string[];
}

export type ApplyStep =
  | { op: 'create'; def: NetworkDefinition }
  /** In place (or not in use here: nothing but the file changes); `changes` are redefine's, and --libvirt. */
  | { op: 'change'; old: NetworkDefinition; next: NetworkDefinition; plan: RedefinePlan; changes: Change[]; usedBy?: string }
  | { op: 'remove'; def: NetworkDefinition };

export interface ApplyPlan {
  /** In the order they are carried out: removals, then changes and creations in the file's order. */
  steps: ApplyStep[];
  /** Networks already as the file has them. */
  unchanged: string[];
  /** Networks the file lacks, kept (no --prune). */
  kept: string[];
  /** Why the file cannot be applied, one line each; any = nothing is done. */
  refused: string[];
}

/** In words, for messages: who or what uses a network (redefine's wording). */
export function usedByOf(u: Usage | undefined): string | undefined {
  if (!u) return undefined;
  if (u.users.length > 0) return `by ${u.users.join(', ')}`;
  return u.devices.length > 0 ? `its devices ${u.devices.join(', ')} exist` : undefined;
}

/**
 * The steps that make `current` equal to `wanted`. A network in use (users,
 * or its devices exist) takes only what a live device can (planRedefine);
 * with `prune`, a network the file lacks is removed, unless guests use it.
 */
export function planApply(
  current: readonly NetworkDefinition[],
  wanted: readonly NetworkDefinition[],
  usage: ReadonlyMap<string, Usage>,
  options: { prune: boolean },
): ApplyPlan {
  const plan: ApplyPlan = { steps: [], unchanged: [], kept: [], refused: [] };
  for (const w of wanted) {
    const old = current.find((c) => c.name === w.name);
    if (!old) {
      // As define-network: a libvirt network unless the file says no.
      plan.steps.push({ op: 'create', def: { ...w, libvirt: w.libvirt ?? true } });
      continue;
    }
    // As redefine: the libvirt choice is kept unless the file makes one.
    const next: NetworkDefinition = w.libvirt === undefined ? (old.libvirt === undefined ? w : { ...w, libvirt: old.libvirt }) : w;
    const redefine = planRedefine(old, next);
    const changes = [...redefine.changes];
    if (old.libvirt !== next.libvirt) changes.push({ what: '--libvirt', from: String(old.libvirt ?? 'none'), to: String(next.libvirt ?? 'none') });
    if (changes.length === 0) {
      plan.unchanged.push(w.name);
      continue;
    }
    const usedBy = usedByOf(usage.get(w.name));
    if (usedBy && redefine.refused.length > 0) {
      plan.refused.push(refusalMessage(w.name, redefine.refused, usedBy));
      continue;
    }
    const step: ApplyStep = { op: 'change', old, next, plan: redefine, changes };
    if (usedBy) step.usedBy = usedBy;
    plan.steps.push(step);
  }
  // Networks the file lacks that stay (no --prune, or in use): they keep their VNI.
  const staying: NetworkDefinition[] = [];
  for (const c of current.filter((d) => !wanted.some((w) => w.name === d.name))) {
    const users = usage.get(c.name)?.users ?? [];
    if (!options.prune) plan.kept.push(c.name);
    else if (users.length > 0) plan.refused.push(`network ${c.name} is not in the file, but is used by ${users.join(', ')}: not removed (--prune); stop them first`);
    else {
      // Removals first: a VNI they free may be the one a network of the file takes.
      plan.steps.splice(plan.steps.filter((st) => st.op === 'remove').length, 0, { op: 'remove', def: c });
      continue;
    }
    staying.push(c);
  }
  for (const w of wanted) {
    try {
      checkNoConflict(w, staying);
    } catch (err) {
      plan.refused.push(`network ${w.name}: ${(err as Error).message} (not in the file: remove it, or apply with --prune)`);
    }
  }
  return plan;
}

/** One line per step, for people (and --dry-run: `would …`). */
export function describeStep(step: ApplyStep): string {
  switch (step.op) {
    case 'create':
      return `create network ${step.def.name}: VNI ${step.def.vni} on ${step.def.dev}`;
    case 'change':
      return `change network ${step.old.name}: ${step.changes.map(describeChange).join(', ')}${step.usedBy ? ` (in use ${step.usedBy}: in place)` : ''}`;
    case 'remove':
      return `remove network ${step.def.name} (VNI ${step.def.vni})`;
  }
}
