// The change log: one line per change vxvirt makes on a host (devices
// created, deleted or repaired, users added or removed, peers changed), as
// key=value pairs, to syslog or to a file:
//
//   VXVIRT_LOG=off            nothing is logged
//   VXVIRT_LOG_FILE=PATH      appended to PATH
//   VXVIRT_SYSLOG_SOCKET=PATH syslog through that socket instead of /dev/log
//   /dev/log exists           syslog, tag vxvirt, facility daemon, level info
//   otherwise                 appended to /var/log/vxvirt.log
//
// libvirt runs the hook with PATH, HOME and LC_ALL only, so on a real host the
// hook always takes the last two; the variables are for the CLI and tests.
//
// Node cannot send on a unix datagram socket (node:net only does streams, and
// /dev/log is a datagram socket), so syslog goes through logger(1): started
// detached and not waited for, so the hook's latency is one fork+exec, not
// logger's run time. Logging never fails the caller: a failure is a warning.
import { spawn } from 'node:child_process';
import { appendFileSync, existsSync } from 'node:fs';
import { warn } from './errors.ts';

export type Action = 'created' | 'deleted' | 'repaired' | 'user-added' | 'user-removed' | 'nic-added' | 'nic-removed' | 'peers-changed' | 'redefined' | 'defined' | 'undefined' | 'warning' | 'failed';

export type LogValue = string | number | boolean | readonly string[] | undefined;

/**
 * One change. `domain`, `network` and `action` come first on the line, the
 * other fields follow in the order given; an undefined field is left out, a
 * list is written comma-separated (`devices=vxbr42,vxlan42`).
 */
export interface Change {
  action: Action;
  domain?: string;
  network?: string;
  [field: string]: LogValue;
}

const DEFAULT_FILE = '/var/log/vxvirt.log';
const SYSLOG_SOCKET = '/dev/log';

/** A value as it appears after `key=`: bare when it is a plain word, else double-quoted with escapes. */
function formatValue(value: Exclude<LogValue, undefined>): string {
  const text = typeof value === 'object' ? value.join(',') : String(value);
  if (/^[A-Za-z0-9_.:,/@+%-]+$/.test(text)) return text;
  // Escaped so that one change is always one line, whatever a domain is called.
  const escaped = text.replace(/[\\"\u0000-\u001f\u007f]/g, (c) => {
    if (c === '\\' || c === '"') return `\\${c}`;
    if (c === '\n') return '\\n';
    if (c === '\t') return '\\t';
    return `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`;
  });
  return `"${escaped}"`;
}

const FIRST = ['domain', 'network', 'action'];

/** `domain=vm1 network=tut action=created devices=vxbr42,vxlan42` */
export function formatChange(change: Change): string {
  const keys = [...FIRST.filter((k) => k in change), ...Object.keys(change).filter((k) => !FIRST.includes(k))];
  const parts: string[] = [];
  for (const key of keys) {
    const value = change[key];
    if (value === undefined) continue;
    parts.push(`${key.replace(/[^A-Za-z0-9_]/g, '_')}=${formatValue(value)}`);
  }
  return parts.join(' ');
}

export type Sink = { kind: 'off' } | { kind: 'file'; path: string } | { kind: 'syslog'; socket: string };

/** Where the lines go, from the environment and whether /dev/log exists. */
export function chooseSink(env: NodeJS.ProcessEnv, devLogExists: () => boolean = () => existsSync(SYSLOG_SOCKET)): Sink {
  if (env.VXVIRT_LOG === 'off') return { kind: 'off' };
  if (env.VXVIRT_LOG_FILE) return { kind: 'file', path: env.VXVIRT_LOG_FILE };
  if (env.VXVIRT_SYSLOG_SOCKET) return { kind: 'syslog', socket: env.VXVIRT_SYSLOG_SOCKET };
  if (devLogExists()) return { kind: 'syslog', socket: SYSLOG_SOCKET };
  return { kind: 'file', path: DEFAULT_FILE };
}

function appendLines(path: string, lines: readonly string[]): void {
  try {
    // The file has no syslog daemon to stamp it: the time and pid go first.
    const stamp = `${new Date().toISOString()} vxvirt[${process.pid}]:`;
    // One write with O_APPEND: lines of concurrent hooks do not interleave.
    appendFileSync(path, lines.map((l) => `${stamp} ${l}\n`).join(''), { mode: 0o640 });
  } catch (err) {
    warn(`cannot write the change log ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
}

function sendToSyslog(socket: string, lines: readonly string[]): void {
  // One logger for all lines (one message per stdin line); --id records our
  // pid, not logger's. Detached and unreferenced: this process does not wait
  // for it, and may well have exited when logger delivers the lines.
  const child = spawn('logger', ['-t', 'vxvirt', '-p', 'daemon.info', `--id=${process.pid}`, '-u', socket], {
    detached: true,
    stdio: ['pipe', 'ignore', 'ignore'],
  });
  // Without a listener a failed start (no logger on PATH) would throw.
  child.on('error', (err: NodeJS.ErrnoException) => warn(`cannot run logger(1) for the change log: ${err.code ?? err.message}`));
  child.stdin?.on('error', () => undefined);
  child.stdin?.end(lines.map((l) => `${l}\n`).join(''));
  child.unref();
}

/** Log several changes at once (one logger process for all of them). Never throws. */
export function logChanges(changes: readonly Change[], env: NodeJS.ProcessEnv = process.env): void {
  if (changes.length === 0) return;
  try {
    const sink = chooseSink(env);
    const lines = changes.map(formatChange);
    if (sink.kind === 'file') appendLines(sink.path, lines);
    else if (sink.kind === 'syslog') sendToSyslog(sink.socket, lines);
  } catch (err) {
    warn(`cannot log changes: ${(err as Error).message}`);
  }
}

export function logChange(change: Change, env: NodeJS.ProcessEnv = process.env): void {
  logChanges([change], env);
}
