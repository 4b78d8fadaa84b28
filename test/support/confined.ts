// Running a vxvirt process (the hook as libvirt runs it, or the CLI) on hostile
// input, and watching what it does besides exiting: how long it runs (killed
// after a limit), its peak memory, and every file it leaves behind.
//
// The process runs in the host's network namespace and in a mount namespace
// of its own, where /tmp and /dev/shm are fresh, empty tmpfs mounts and its
// HOME and working directory are empty directories inside that /tmp. So the
// system's /tmp, shared with everything else on the machine, is not in the
// picture: anything the process writes to a temp dir, its HOME or its working
// directory shows up in one listing. The host's config and state dirs live
// outside /tmp (TestHost with a parent dir) and are listed from here.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { LIBVIRT_HOOK_ENV, repo, type TestHost } from './netns.ts';

/** Where confined hosts keep their files: not under /tmp, which the process gets a private copy of. */
export const WORKSPACE_PARENT = '/var/tmp';

export interface Confined {
  status: number;
  stdout: string;
  stderr: string;
  /** Wall time, from /usr/bin/time. */
  seconds: number;
  /** Peak resident set of the process and its children, from /usr/bin/time (KiB). */
  peakKiB: number;
  /** Killed by the time limit. */
  timedOut: boolean;
  /** What the process left in its private /tmp and /dev/shm (its HOME and working directory are in /tmp). */
  tempFiles: string[];
}

// A checkout that itself lives under /tmp (a CI clone) is bound back into the
// private /tmp at the same path, so the hook and the CLI are still there; the
// listing afterwards leaves it out.
const SCRIPT = `
probe=$1; limit=$2; repo=$3; shift 3
case $repo in /tmp/*) mkdir "$probe/repo" && mount --bind "$repo" "$probe/repo" || exit 90 ;; esac
mount -t tmpfs -o size=64m,mode=1777 vxtmp /tmp && mount -t tmpfs -o size=16m,mode=1777 vxshm /dev/shm || exit 90
case $repo in /tmp/*) mkdir -p "$repo" && mount --bind "$probe/repo" "$repo" || exit 90 ;; esac
mkdir /tmp/home /tmp/cwd && cd /tmp/cwd || exit 91
/usr/bin/time -f '%e %M' -o "$probe/time" timeout -k 2 "$limit" "$@"
status=$?
find /tmp /dev/shm -mindepth 1 -path "$repo" -prune -o -print > "$probe/after"
exit $status
`;

/** Empty directories the process gets as HOME and working directory, inside its private /tmp. */
export const EMPTY_DIRS = ['/tmp/cwd', '/tmp/home'];

/**
 * Run `cmd args` inside `host` with libvirt's hook environment (PATH, HOME,
 * LC_ALL only) plus the host's config/state dirs and `env`; killed after
 * `limitSeconds`.
 */
export function runConfined(
  host: TestHost,
  cmd: string,
  args: readonly string[],
  opts: { input?: string | Buffer; env?: Record<string, string>; limitSeconds?: number } = {},
): Confined {
  const probe = join(host.dir, 'probe');
  rmSync(probe, { recursive: true, force: true });
  mkdirSync(probe);
  const env = Object.entries({ ...LIBVIRT_HOOK_ENV, HOME: '/tmp/home', ...host.env, ...opts.env }).map(([k, v]) => `${k}=${v}`);
  const r = spawnSync(
    'ip',
    ['netns', 'exec', host.ns, 'unshare', '--mount', '--propagation', 'private', 'sh', '-c', SCRIPT, 'sh', probe, String(opts.limitSeconds ?? 10), repo, 'env', '-i', ...env, cmd, ...args],
    { input: opts.input ?? '', env: { PATH: LIBVIRT_HOOK_ENV.PATH }, maxBuffer: 64 * 1024 * 1024 },
  );
  // A process that stops reading stdin early is fine (libvirt ignores EPIPE too).
  if (r.error && (r.error as NodeJS.ErrnoException).code !== 'EPIPE') throw r.error;
  const status = r.status ?? -1;
  if (status === 90 || status === 91) throw new Error(`cannot set up a private /tmp: ${r.stderr}`);
  // time(1) writes "Command exited with non-zero status N" before its format line.
  const timeLines = existsSync(join(probe, 'time')) ? readFileSync(join(probe, 'time'), 'utf8').trim().split('\n') : [];
  const [seconds, peakKiB] = (timeLines[timeLines.length - 1] ?? 'NaN NaN').split(' ').map(Number);
  const tempFiles = existsSync(join(probe, 'after'))
    ? readFileSync(join(probe, 'after'), 'utf8')
        .split('\n')
        .filter(Boolean)
        .filter((f) => !EMPTY_DIRS.includes(f) && !repo.startsWith(`${f}/`)) // the directories leading to a checkout under /tmp
    : ['(no listing: the run did not finish)'];
  return {
    status,
    stdout: r.stdout.toString(),
    stderr: r.stderr.toString(),
    seconds: seconds ?? NaN,
    peakKiB: peakKiB ?? NaN,
    timedOut: status === 124 || status === 137,
    tempFiles,
  };
}

/** Every file and directory under `dir` with its size and mtime, except `skip` (relative paths). */
export function listing(dir: string, skip: readonly string[] = []): Map<string, string> {
  const out = new Map<string, string>();
  const walk = (d: string): void => {
    if (!existsSync(d)) return;
    for (const name of readdirSync(d)) {
      const path = join(d, name);
      const rel = relative(dir, path);
      if (skip.includes(rel)) continue;
      const st = statSync(path);
      out.set(rel, st.isDirectory() ? 'dir' : `${st.size} ${st.mtimeMs}`);
      if (st.isDirectory()) walk(path);
    }
  };
  walk(dir);
  return out;
}

/** What changed between two listings: added, removed and modified paths. */
export function changes(before: Map<string, string>, after: Map<string, string>): string[] {
  const out: string[] = [];
  for (const [path, v] of after) if (!before.has(path)) out.push(`+${path}`);
  else if (before.get(path) !== v && v !== 'dir') out.push(`~${path}`);
  for (const path of before.keys()) if (!after.has(path)) out.push(`-${path}`);
  return out.sort();
}
