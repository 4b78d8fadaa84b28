// What the libvirt qemu hook does for each operation. libvirt calls
// `qemu DOMAIN OP SUBOP EXTRA` with the domain XML on stdin (docs/hooks.rst).
// The hook never calls back into libvirt (that deadlocks) and never writes to
// stdout: for `migrate` and `restore` libvirt reads stdout as replacement XML.
import { networksUsedBy, readDomain, type DomainInfo } from './domain-xml.ts';
import { formatError } from './errors.ts';
import { ensureForDomain, realEffects, reconnectDomain, releaseDomain, type Effects } from './lifecycle.ts';
import { bridgeName } from './network-definition.ts';
import * as store from './store.ts';
import type { LoadedDefinitions } from './store.ts';

export interface HookIo {
  readStdin(): Promise<string>;
  error(line: string): void;
}

export interface HookDeps {
  loadDefinitions(): LoadedDefinitions;
  effects: Effects;
}

const realDeps: HookDeps = { loadDefinitions: store.loadDefinitions, effects: realEffects };

/**
 * The unreadable definitions this domain may need: one its NIC names, or any
 * of them when a NIC is on a `vxbrN` that no readable definition explains.
 * The others must not stop a guest that does not use them.
 */
function brokenNeededBy(domain: DomainInfo, loaded: LoadedDefinitions): LoadedDefinitions['broken'] {
  if (loaded.broken.length === 0) return [];
  const known = new Set(loaded.defs.map((d) => bridgeName(d.vni)));
  const unexplainedBridge = domain.nics.some((n) => n.bridge !== undefined && /^vxbr\d+$/.test(n.bridge) && !known.has(n.bridge));
  if (unexplainedBridge) return loaded.broken;
  return loaded.broken.filter((b) => domain.nics.some((n) => n.network === b.name));
}

/** Run one hook invocation; returns the exit status. */
export async function runHook(argv: readonly string[], io: HookIo, deps: HookDeps = realDeps): Promise<number> {
  const [, op, subop] = argv;
  const operation = `${op} ${subop}`;
  if (operation !== 'prepare begin' && operation !== 'reconnect begin' && operation !== 'release end') {
    // migrate/restore must print nothing (= keep the XML); all else is not ours.
    return 0;
  }
  try {
    const loaded = deps.loadDefinitions();
    if (operation !== 'release end' && loaded.defs.length === 0 && loaded.broken.length === 0) return 0;
    const domain = readDomain(await io.readStdin());
    const needed = operation === 'release end' ? [] : brokenNeededBy(domain, loaded);
    if (needed[0]) throw needed[0].error;
    for (const b of loaded.broken) io.error(`vxvirt: warning: skipping network ${b.name}: ${b.error.message}`);
    if (operation === 'release end') await releaseDomain(domain.key, loaded.defs, deps.effects);
    // reconnect: libvirtd restarted with this domain running.
    else if (operation === 'reconnect begin') await reconnectDomain(domain, networksUsedBy(domain, loaded.defs), deps.effects);
    else await ensureForDomain(domain, networksUsedBy(domain, loaded.defs), deps.effects);
    return 0;
  } catch (err) {
    io.error(formatError(err));
    // A non-zero `reconnect` makes libvirt kill the running guest, and
    // `release` is documented to always succeed: only `prepare` may fail.
    return op === 'prepare' ? 1 : 0;
  }
}
