// Installing vxvirt's libvirt hooks: the qemu hook (guests' starts and
// stops) and the network hook (NICs on libvirt networks: hot-plug, and every
// start and stop). libvirt runs DIR/KIND and, since 6.5, every executable in
// DIR/KIND.d/ after it, with the same arguments and stdin. vxvirt installs a
// symlink to its checkout's hooks/KIND (which finds the checkout through
// that link) as DIR/KIND, or as DIR/KIND.d/vxvirt when DIR/KIND is some
// other hook — which it never replaces or removes.
//
// Pure part (hook-plan.ts, re-exported here): planInstall/planUninstall turn
// what is in DIR (a HooksDir) into steps and messages. This module is the
// effect part: inspectHooksDir reads DIR, applySteps
// carries the steps out, each one atomic (a symlink is created in one call,
// or replaced by renaming a new one over it).
import { chmodSync, lstatSync, mkdirSync, readFileSync, readlinkSync, realpathSync, renameSync, rmdirSync, rmSync, symlinkSync, unlinkSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { FileConflictError, InternalError } from './errors.ts';
import { HOOK_KINDS, hookPaths, isRestartNote, type Entry, type HookKind, type HookPlan, type HooksDir, type Step } from './hook-plan.ts';

export * from './hook-plan.ts';

// ---- effects ------------------------------------------------------------------

/**
 * The checkout this vxvirt runs from: the directory above the running file,
 * which is dist/cli.js when bundled and src/hook-install.ts under tsx.
 */
export function thisCheckout(): string {
  return realpathSync(fileURLToPath(new URL('..', import.meta.url)));
}

/** This checkout's hooks/KIND, resolved. */
export function vxvirtHook(checkout = thisCheckout(), kind: HookKind = 'qemu'): string {
  const hook = join(checkout, 'hooks', kind);
  try {
    return realpathSync(hook);
  } catch (err) {
    throw new InternalError(`${hook} is missing: vxvirt's checkout ${checkout} is incomplete (${(err as NodeJS.ErrnoException).code})`);
  }
}

const errno = (err: unknown): string | undefined => (err as NodeJS.ErrnoException)?.code;

/** A vxvirt checkout's hooks/KIND: ROOT/hooks/KIND where ROOT/package.json is vxvirt's. */
function isVxvirtHook(real: string, kind: HookKind): boolean {
  if (basename(real) !== kind || basename(dirname(real)) !== 'hooks') return false;
  try {
    return (JSON.parse(readFileSync(join(dirname(dirname(real)), 'package.json'), 'utf8')) as { name?: unknown }).name === 'vxvirt';
  } catch {
    return false;
  }
}

function inspectEntry(path: string, hook: string, hookBytes: Buffer, kind: HookKind): Entry {
  let st;
  try {
    st = lstatSync(path);
  } catch (err) {
    if (errno(err) === 'ENOENT' || errno(err) === 'ENOTDIR') return { kind: 'absent' };
    throw err;
  }
  if (st.isSymbolicLink()) {
    const link = readlinkSync(path);
    let real: string;
    try {
      real = realpathSync(path);
    } catch {
      // Whose it was cannot be told any more; libvirt ignores it.
      return { kind: 'other', what: `a symlink to ${link}, which does not exist` };
    }
    if (real === hook) return { kind: 'vxvirt', link: real, current: true };
    if (isVxvirtHook(real, kind)) return { kind: 'vxvirt', link: real, current: false };
    return { kind: 'other', what: `a symlink to ${link}` };
  }
  if (st.isFile()) {
    if (st.size === hookBytes.length && readFileSync(path).equals(hookBytes)) return { kind: 'vxvirt', current: false };
    return { kind: 'other', what: 'a file' };
  }
  return { kind: 'other', what: st.isDirectory() ? 'a directory' : 'a special file' };
}

function dirKind(path: string): 'absent' | 'directory' | 'other' {
  try {
    return lstatSync(path).isDirectory() ? 'directory' : 'other';
  } catch (err) {
    if (errno(err) === 'ENOENT' || errno(err) === 'ENOTDIR') return 'absent';
    throw err;
  }
}

/** What is in a hooks directory, judged against `hook` (this checkout's hooks/KIND). */
export function inspectHooksDir(dir: string, hook: string, kind: HookKind = 'qemu'): HooksDir {
  const abs = resolve(dir);
  const what = dirKind(abs);
  if (what === 'other') throw new FileConflictError(`${abs} is not a directory: give libvirt's hook directory`);
  const p = hookPaths(abs, kind);
  const hookBytes = readFileSync(hook);
  return {
    dir: abs,
    kind,
    exists: what === 'directory',
    main: inspectEntry(p.main, hook, hookBytes, kind),
    dropInDir: dirKind(p.dropInDir),
    dropIn: inspectEntry(p.dropIn, hook, hookBytes, kind),
  };
}

function applyStep(s: Step): void {
  switch (s.op) {
    case 'mkdir':
      mkdirSync(dirname(s.path), { recursive: true, mode: 0o755 });
      try {
        mkdirSync(s.path, { mode: 0o755 });
      } catch (err) {
        if (errno(err) === 'EEXIST') return; // made meanwhile by someone else: theirs, mode and all
        throw err;
      }
      chmodSync(s.path, 0o755); // whatever the umask
      return;
    case 'link':
      try {
        symlinkSync(s.target, s.path);
      } catch (err) {
        if (errno(err) === 'EEXIST') throw new FileConflictError(`${s.path} appeared while installing: run install-hook again`);
        throw err;
      }
      return;
    case 'relink': {
      // The temporary link lives in the hooks directory itself, never in
      // KIND.d/, where libvirt would run it as one more hook.
      const tmp = join(s.scratch, `.vxvirt-hook.tmp-${process.pid}`);
      rmSync(tmp, { force: true });
      try {
        symlinkSync(s.target, tmp);
        renameSync(tmp, s.path);
      } catch (err) {
        rmSync(tmp, { force: true });
        throw err;
      }
      return;
    }
    case 'remove':
      try {
        unlinkSync(s.path);
      } catch (err) {
        if (errno(err) !== 'ENOENT') throw err;
      }
      return;
    case 'rmdir-if-empty':
      try {
        rmdirSync(s.path);
      } catch (err) {
        if (!['ENOTEMPTY', 'EEXIST', 'ENOENT'].includes(errno(err) ?? '')) throw err;
      }
      return;
  }
}

export function applySteps(steps: readonly Step[]): void {
  for (const s of steps) applyStep(s);
}

/**
 * install-hook / uninstall-hook: plan both hooks in `dir` first (a conflict
 * with one installs neither), then carry the plans out. Returns the messages,
 * the restart note (the same for both) once, after the others.
 */
export function changeHooks(plan: (d: HooksDir, hook: string) => HookPlan, dir: string, checkout = thisCheckout()): string[] {
  const plans = HOOK_KINDS.map((kind: HookKind) => {
    const hook = vxvirtHook(checkout, kind);
    return plan(inspectHooksDir(dir, hook, kind), hook);
  });
  for (const p of plans) applySteps(p.steps);
  const lines = plans.flatMap((p) => p.messages);
  return [...lines.filter((l) => !isRestartNote(l)), ...new Set(lines.filter(isRestartNote))];
}
