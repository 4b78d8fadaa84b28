// What the libvirt qemu hook does for each operation. libvirt calls
// `qemu DOMAIN OP SUBOP EXTRA` with the domain XML on stdin (docs/hooks.rst).
// The hook never calls back into libvirt (that deadlocks) and never writes to
// stdout: for `migrate` and `restore` libvirt reads stdout as replacement XML.
import { networksUsedBy, readDomain } from './domain-xml.ts';
import { formatError } from './errors.ts';
import { ensureForDomain, realEffects, releaseDomain, type Effects } from './lifecycle.ts';
import type { NetworkDefinition } from './network-definition.ts';
import * as store from './store.ts';

export interface HookIo {
  readStdin(): Promise<string>;
  error(line: string): void;
}

export interface HookDeps {
  listDefinitions(): NetworkDefinition[];
  effects: Effects;
}

const realDeps: HookDeps = { listDefinitions: store.listDefinitions, effects: realEffects };

/** Run one hook invocation; returns the exit status. */
export async function runHook(argv: readonly string[], io: HookIo, deps: HookDeps = realDeps): Promise<number> {
  const [, op, subop] = argv;
  try {
    switch (`${op} ${subop}`) {
      // reconnect: libvirtd restarted with this domain running; record it again
      // and re-create a pair that went missing meanwhile.
      case 'prepare begin':
      case 'reconnect begin': {
        const defs = deps.listDefinitions();
        if (defs.length === 0) return 0;
        const domain = readDomain(await io.readStdin());
        await ensureForDomain(domain, networksUsedBy(domain, defs), deps.effects);
        return 0;
      }
      case 'release end': {
        const defs = deps.listDefinitions();
        const domain = readDomain(await io.readStdin());
        await releaseDomain(domain.key, defs, deps.effects);
        return 0;
      }
      default:
        // migrate/restore must print nothing (= keep the XML); all else is not ours.
        return 0;
    }
  } catch (err) {
    io.error(formatError(err));
    // A non-zero `reconnect` makes libvirt kill the running guest, and
    // `release` is documented to always succeed: only `prepare` may fail.
    return op === 'prepare' ? 1 : 0;
  }
}
