// Where vxvirt's libvirt hooks go and how installing or removing them goes:
// the pure part of hook-install.ts. libvirt runs DIR/KIND and, since 6.5,
// every executable in DIR/KIND.d/ after it; planInstall/planUninstall turn
// what is in DIR (a HooksDir, read by hook-install.ts) into steps and
// messages, never over a hook that is not vxvirt's. `vxvirt check` judges the
// same HooksDir with hookPaths/hookLabel.
import { join } from 'node:path';
import { FileConflictError } from './errors.ts';

export const DEFAULT_HOOKS_DIR = '/etc/libvirt/hooks';
/** The PATH libvirt gives its hooks (virCommandAddEnvPassCommon), whatever the daemon's own PATH. */
export const LIBVIRT_HOOK_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/** libvirt's hook scripts vxvirt installs one of each of. */
export type HookKind = 'qemu' | 'network';
export const HOOK_KINDS: readonly HookKind[] = ['qemu', 'network'];

/** What is at one of the two places vxvirt's hook can be. */
export type Entry =
  | { kind: 'absent' }
  /**
   * vxvirt's hook: a symlink to a vxvirt checkout's hooks/qemu (`link`, resolved;
   * `current` if it is this checkout's), or a copy of this checkout's hooks/qemu
   * (no `link`: a copy cannot find dist/hook.js, so it is replaced by a link).
   */
  | { kind: 'vxvirt'; link?: string; current: boolean }
  /** Anything else (another hook, a dangling symlink, a directory): never touched. */
  | { kind: 'other'; what: string };

export interface HooksDir {
  dir: string;
  /** Which hook (default qemu). */
  kind?: HookKind;
  exists: boolean;
  /** DIR/KIND */
  main: Entry;
  /** DIR/KIND.d */
  dropInDir: 'absent' | 'directory' | 'other';
  /** DIR/KIND.d/vxvirt */
  dropIn: Entry;
}

export type Step =
  | { op: 'mkdir'; path: string }
  /** Create a symlink where nothing is. */
  | { op: 'link'; path: string; target: string }
  /** Replace vxvirt's own entry by a symlink, through a temporary link in `scratch` renamed over it. */
  | { op: 'relink'; path: string; target: string; scratch: string }
  | { op: 'remove'; path: string }
  /** Remove a directory if (and only if) it is empty. */
  | { op: 'rmdir-if-empty'; path: string };

export interface HookPlan {
  steps: Step[];
  /** What happened and what to do next, a line each. */
  messages: string[];
}

export function hookPaths(dir: string, kind: HookKind = 'qemu'): { main: string; dropInDir: string; dropIn: string } {
  return { main: join(dir, kind), dropInDir: join(dir, `${kind}.d`), dropIn: join(dir, `${kind}.d`, 'vxvirt') };
}

/** How messages name the hook. */
export const hookLabel = (kind: HookKind = 'qemu'): string => (kind === 'qemu' ? "vxvirt's hook" : "vxvirt's network hook");

const RESTART: Record<HookKind, string[]> = {
  qemu: ['  systemctl restart libvirtd     # hosts running the monolithic libvirtd', '  systemctl restart virtqemud    # hosts running the modular daemons'],
  network: ['  systemctl restart libvirtd     # hosts running the monolithic libvirtd', '  systemctl restart virtnetworkd # hosts running the modular daemons'],
};

/** Every line of the restart notes, so that a caller printing several plans can print them once, last. */
export const isRestartNote = (line: string): boolean =>
  line.startsWith('libvirt looks for hooks only') || line.startsWith("and libvirt runs the hook's") || line.startsWith('restart libvirt so that') || line.startsWith('  systemctl restart');

const INSTALL_NOTE = (kind: HookKind): string[] => [
  'libvirt looks for hooks only when its daemon starts: restart it now (running guests keep running,',
  "and libvirt runs the hook's reconnect for each of them):",
  ...RESTART[kind],
];
const UNINSTALL_NOTE = (kind: HookKind): string[] => [
  'restart libvirt so that it forgets the hook (libvirt before 6.5 fails guest starts while a hook it found at start-up is missing):',
  ...RESTART[kind],
];

/** An entry in a message. */
export function describeEntry(e: Entry): string {
  switch (e.kind) {
    case 'absent':
      return 'absent';
    case 'vxvirt':
      return e.link ? `a link to ${e.link}` : "a copy of vxvirt's hook";
    case 'other':
      return e.what;
  }
}

const isCurrent = (e: Entry): boolean => e.kind === 'vxvirt' && e.current;

/**
 * Where vxvirt's hook goes and what that takes. vxvirt ends up installed in
 * exactly one place, so that libvirt does not run it twice: where this
 * checkout's link already is, else where an older vxvirt hook is, else
 * DIR/qemu if free, else DIR/qemu.d/vxvirt. `hook` is this checkout's hooks/qemu.
 */
export function planInstall(d: HooksDir, hook: string): HookPlan {
  const kind = d.kind ?? 'qemu';
  const label = hookLabel(kind);
  const p = hookPaths(d.dir, kind);
  const mainOk = d.main.kind !== 'other';
  const where: 'main' | 'dropIn' = isCurrent(d.main)
    ? 'main'
    : isCurrent(d.dropIn)
      ? 'dropIn'
      : d.main.kind === 'vxvirt'
        ? 'main'
        : d.dropIn.kind === 'vxvirt'
          ? 'dropIn'
          : mainOk
            ? 'main'
            : 'dropIn';
  const path = p[where];
  const entry = where === 'main' ? d.main : d.dropIn;
  const steps: Step[] = [];
  const messages: string[] = [];

  if (where === 'dropIn') {
    if (d.dropInDir === 'other') {
      throw new FileConflictError(`${p.dropInDir} is not a directory, and ${p.main} is another hook (${describeEntry(d.main)}): vxvirt installs neither; move one of them away`);
    }
    if (entry.kind === 'other') {
      throw new FileConflictError(`${p.dropIn} is ${entry.what}, not ${label}: remove it, then run install-hook again`);
    }
  }
  if (isCurrent(entry)) {
    messages.push(`${label} is already installed: ${path} -> ${hook}`);
  } else {
    if (!d.exists) steps.push({ op: 'mkdir', path: d.dir });
    if (where === 'dropIn' && d.dropInDir === 'absent') steps.push({ op: 'mkdir', path: p.dropInDir });
    if (entry.kind === 'absent') {
      steps.push({ op: 'link', path, target: hook });
      messages.push(`installed ${path} -> ${hook}`);
    } else {
      steps.push({ op: 'relink', path, target: hook, scratch: d.dir });
      messages.push(`replaced ${path} (${describeEntry(entry)}) by a link to ${hook}`);
    }
  }
  if (where === 'dropIn' && d.main.kind === 'other') {
    messages.push(`${p.main} is another hook (${describeEntry(d.main)}): left as it is; libvirt >= 6.5 runs ${p.dropIn} after it, with the same arguments and stdin`);
  }
  // A second vxvirt hook would make libvirt run vxvirt twice per operation.
  const other = where === 'main' ? d.dropIn : d.main;
  if (other.kind === 'vxvirt') {
    const otherPath = where === 'main' ? p.dropIn : p.main;
    steps.push({ op: 'remove', path: otherPath });
    if (where === 'main') steps.push({ op: 'rmdir-if-empty', path: p.dropInDir });
    messages.push(`removed ${otherPath} (${describeEntry(other)}): libvirt would run ${label} twice`);
  }
  if (steps.length > 0) messages.push(...INSTALL_NOTE(kind));
  return { steps, messages };
}

/** Remove vxvirt's hook wherever it is; anything else stays, and an emptied qemu.d goes. */
export function planUninstall(d: HooksDir): HookPlan {
  const kind = d.kind ?? 'qemu';
  const label = hookLabel(kind);
  const p = hookPaths(d.dir, kind);
  const steps: Step[] = [];
  const messages: string[] = [];
  for (const [path, entry] of [
    [p.main, d.main],
    [p.dropIn, d.dropIn],
  ] as const) {
    if (entry.kind === 'vxvirt') {
      steps.push({ op: 'remove', path });
      messages.push(`removed ${path} (${describeEntry(entry)})`);
    } else if (entry.kind === 'other') {
      messages.push(`left ${path} as it is: ${entry.what}, not ${label}`);
    }
  }
  if (d.dropIn.kind === 'vxvirt') steps.push({ op: 'rmdir-if-empty', path: p.dropInDir });
  if (steps.length === 0) messages.unshift(`${label} is not installed in ${d.dir}`);
  else messages.push(...UNINSTALL_NOTE(kind));
  return { steps, messages };
}
