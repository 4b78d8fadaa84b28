// The commands that change a network's definition — define-network,
// undefine-network, set-peers and redefine — as transactions: each reads the
// definitions, refuses what must not be done, writes under the host lock and
// brings this host's devices along, through the same Effects record as the
// hooks' lifecycle (so tests run them on a fake host) and, for the libvirt
// network that goes with a definition, the Libvirt record. The commands in
// src/cli/ only turn options into a definition and print what happened.
//
// libvirt is asked before the host lock is taken, never under it: libvirtd
// runs hooks, and the hooks wait for that lock.
import { DefinitionError, LibvirtUnreachableError, VxvirtError, withMessage } from './errors.ts';
import type { DefineNetworkResult, Libvirt } from './libvirt/index.ts';
import { removeUnusedPairs, updateLiveNetwork, type Effects } from './lifecycle.ts';
import { bridgeName, checkNoConflict, overlayMtu, validateDefinition, vxlanName, type NetworkDefinition } from './network-definition.ts';
import { ownedPairDevices, type Step } from './plan.ts';
import { planRedefine, refusalMessage, vniMessage, type RedefinePlan } from './redefine.ts';
import { hasUsers, userNames } from './users.ts';

// ---- define-network -----------------------------------------------------------

export interface DefineOptions {
  replace: boolean;
  /** Whether to make the libvirt network too (def.libvirt records the choice). */
  libvirt: boolean;
}

export interface Defined {
  /** The overlay MTU, when the underlay device is here to tell it. */
  mtu?: number;
  /** What became of the libvirt network: undefined when none was asked for, 'not-created' when libvirt was unreachable. */
  libvirt?: DefineNetworkResult['action'] | 'not-created';
}

/** The definition `def` replaces, if any, after refusing what must not be replaced. */
function checkAgainst(def: NetworkDefinition, replace: boolean, fx: Effects): NetworkDefinition | undefined {
  const existing = fx.listDefinitions();
  const previous = existing.find((d) => d.name === def.name);
  if (previous && !replace) throw new DefinitionError(`network ${def.name} is already defined: undefine it first, or use --replace`);
  checkNoConflict(def, existing);
  // A new VNI means new device names: the old pair would be orphaned under guests still on it.
  const users = fx.readUsers(def.name);
  if (previous && previous.vni !== def.vni && hasUsers(users)) {
    throw new DefinitionError(
      `--vni ${def.vni}: network ${def.name} is used by ${userNames(users).join(', ')} on VNI ${previous.vni}; stop them before changing its VNI`,
    );
  }
  return previous;
}

/** The libvirt network of a new definition; an unreachable libvirtd leaves it to reconcile. */
async function defineLibvirtPart(def: NetworkDefinition, replace: boolean, fx: Effects, lv: Libvirt): Promise<Defined['libvirt']> {
  try {
    const r = await lv.defineNetwork(def);
    if (r.note) fx.warn(r.note);
    return r.action;
  } catch (err) {
    if (!(err instanceof LibvirtUnreachableError)) throw err;
    fx.warn(
      `libvirt network ${def.name} was not ${replace ? 'created or updated' : 'created'} (${err.message}): \`vxvirt reconcile\` creates it once libvirt is reachable, or run this command again with --replace`,
    );
    return 'not-created';
  }
}

/**
 * `define-network`: check, then the libvirt network, then write — if libvirt
 * refuses, nothing is written. If libvirtd cannot be reached at all, the
 * definition is written anyway (the hook needs no libvirt network) and
 * reconcile makes the libvirt network later. A --replace with a new VNI
 * removes the old VNI's pair (unused: checked) under the lock.
 */
export async function defineNetwork(def: NetworkDefinition, o: DefineOptions, fx: Effects, lv: Libvirt): Promise<Defined> {
  // The MTU is checked against the underlay now if it is here; a host whose
  // underlay comes up later is checked again when a VM starts.
  const devMtu = await fx.linkMtu(def.dev);
  const out: Defined = {};
  if (devMtu === undefined) fx.warn(`underlay device ${def.dev} does not exist on this host yet; VMs on ${def.name} cannot start until it does`);
  else out.mtu = overlayMtu(def, devMtu);
  checkAgainst(def, o.replace, fx);
  if (o.libvirt) out.libvirt = await defineLibvirtPart(def, o.replace, fx, lv);
  await fx.withHostLock(`define-network ${def.name}`, async () => {
    const previous = checkAgainst(def, o.replace, fx);
    fx.writeDefinition(def);
    if (previous && previous.vni !== def.vni) await removeUnusedPairs([previous], fx);
  });
  return out;
}

// ---- undefine-network ---------------------------------------------------------

export interface UndefineOptions {
  force: boolean;
  /** Whether to remove vxvirt's libvirt network of that name now. */
  libvirt: boolean;
}

/**
 * `undefine-network`: refused while domains use the network (unless forced);
 * libvirt first and outside the lock, as in define-network. If libvirtd
 * cannot be reached, the definition is forgotten anyway and reconcile removes
 * the libvirt network (vxvirt's mark is in it) later.
 */
export async function undefineNetwork(name: string, o: UndefineOptions, fx: Effects, lv: Libvirt): Promise<void> {
  const refuseIfUsed = (network: string): void => {
    const users = fx.readUsers(network);
    if (hasUsers(users) && !o.force) throw new DefinitionError(`network ${network} is used by ${userNames(users).join(', ')}: stop them first, or use --force`);
  };
  refuseIfUsed(fx.readDefinition(name).name);
  let libvirtLater: string | undefined;
  if (o.libvirt) {
    try {
      await lv.undefineNetwork(name);
    } catch (err) {
      if (!(err instanceof LibvirtUnreachableError)) throw err;
      libvirtLater = err.message;
    }
  }
  await fx.withHostLock(`undefine-network ${name}`, async () => {
    const def = fx.readDefinition(name);
    refuseIfUsed(def.name);
    await removeUnusedPairs([def], fx);
    fx.removeDefinition(def.name);
  });
  if (libvirtLater !== undefined) {
    fx.warn(`libvirt network ${name} was not removed (${libvirtLater}): \`vxvirt reconcile\` removes it, if vxvirt made it, once libvirt is reachable`);
  }
}

// ---- set-peers, redefine ------------------------------------------------------

export interface Changed {
  old: NetworkDefinition;
  next: NetworkDefinition;
  plan: RedefinePlan;
  /** Who or what uses the network here (for messages); undefined = not in use. */
  usedBy?: string;
  /** What the live update planned; undefined = no devices were touched. */
  live?: Step[];
  /** The overlay MTU before and after, when the underlay is here to tell. */
  mtu?: { from: number; to: number };
}

/** Why the network counts as in use here, or undefined: users recorded, or vxvirt's devices present. */
async function usage(def: NetworkDefinition, fx: Effects): Promise<string | undefined> {
  const users = fx.readUsers(def.name);
  if (hasUsers(users)) return `by ${userNames(users).join(', ')}`;
  const present = ownedPairDevices(def.vni, await fx.observe({ devices: [bridgeName(def.vni), vxlanName(def.vni)] }));
  return present.length > 0 ? `its devices ${present.join(', ')} exist` : undefined;
}

/** The same error, with `suffix` added to its message. */
function withSuffix(err: unknown, suffix: string): unknown {
  if (!(err instanceof VxvirtError)) return err;
  return withMessage(err, `${err.message}${suffix}`);
}

/** The overlay MTU of a stored definition, which an underlay changed since may no longer allow. */
function overlayMtuOr(def: NetworkDefinition, devMtu: number): number {
  try {
    return overlayMtu(def, devMtu);
  } catch {
    return def.mtu ?? devMtu;
  }
}

/**
 * Under the host lock: read the definition, refuse what cannot be done,
 * write the new one, update the live devices. If the update fails, the old
 * definition is written back and its devices restored as far as possible,
 * so a failed command changes nothing.
 */
async function changeNetwork(name: string, command: string, makeNext: (old: NetworkDefinition) => NetworkDefinition, fx: Effects): Promise<Changed> {
  return fx.withHostLock(`${command} ${name}`, async () => {
    const old = fx.readDefinition(name);
    const next = makeNext(old);
    const plan = planRedefine(old, next);
    if (plan.changes.length === 0) return { old, next, plan };
    if (plan.vni) throw new DefinitionError(vniMessage(name, plan.vni));
    // As define-network: an --mtu the underlay cannot carry is refused now if the underlay is here.
    const devMtu = await fx.linkMtu(next.dev);
    const newMtu = devMtu === undefined ? undefined : overlayMtu(next, devMtu);
    const mtu = devMtu === undefined || newMtu === undefined || next.dev !== old.dev ? undefined : { from: overlayMtuOr(old, devMtu), to: newMtu };
    const usedBy = await usage(old, fx);
    if (usedBy && plan.refused.length > 0) throw new DefinitionError(refusalMessage(name, plan.refused, usedBy));
    fx.writeDefinition(next);
    try {
      const live = await updateLiveNetwork(next, fx);
      return { old, next, plan, usedBy, live, mtu };
    } catch (err) {
      fx.writeDefinition(old);
      await updateLiveNetwork(old, fx).catch((e: Error) => fx.warn(`network ${name}: could not restore its devices: ${e.message}`));
      throw withSuffix(err, '; the definition is left as it was');
    }
  });
}

/** Put a change in the change log: peers changed, or which options were redefined. */
function logChanged(command: string, o: Changed, fx: Effects): void {
  const { next, plan } = o;
  if (plan.changes.length === 0) return;
  const onlyPeers = plan.changes.every((c) => c.what === '--remote');
  fx.log({
    network: next.name,
    action: onlyPeers ? 'peers-changed' : 'redefined',
    command,
    changed: onlyPeers ? undefined : plan.changes.map((c) => c.what.replace(/^--/, '').replace(/ /g, '-')),
    peers: next.group === undefined ? next.remotes : undefined,
    group: next.group,
    added: plan.added.length ? plan.added : undefined,
    removed: plan.removed.length ? plan.removed : undefined,
    mtu: o.mtu && o.mtu.from !== o.mtu.to ? o.mtu.to : undefined,
    devices: o.live === undefined ? undefined : [bridgeName(next.vni), vxlanName(next.vni)],
    live: o.live !== undefined,
  });
}

/** `set-peers`: a unicast or point-to-point network's whole new peer list. */
export async function setPeers(name: string, remotes: string[], fx: Effects): Promise<Changed> {
  const changed = await changeNetwork(
    name,
    'set-peers',
    (old) => {
      if (old.group !== undefined) {
        throw new DefinitionError(`network ${old.name} floods to multicast group ${old.group}, it has no peers: change its flooding mode with redefine`);
      }
      return validateDefinition({ ...old, remotes });
    },
    fx,
  );
  logChanged('set-peers', changed, fx);
  return changed;
}

/** `redefine`: the whole new definition; whether it has a libvirt network stays define-network's choice. */
export async function redefineNetwork(next: NetworkDefinition, fx: Effects): Promise<Changed> {
  const changed = await changeNetwork(next.name, 'redefine', (old) => (old.libvirt === undefined ? next : { ...next, libvirt: old.libvirt }), fx);
  logChanged('redefine', changed, fx);
  return changed;
}
