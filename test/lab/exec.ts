// Process helpers for the lab: run a command, capture its output, never throw
// unless asked to (`check`), and a synchronous flavour for cleanup paths that
// must work inside 'exit' and signal handlers.
import { spawn, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';

export interface RunResult {
  cmd: string[];
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  ms: number;
}

export interface RunOptions {
  /** Environment for the child; the default is the caller's own. */
  env?: NodeJS.ProcessEnv;
  input?: string;
  cwd?: string;
  timeoutMs?: number;
  /** Throw a CommandError when the command does not exit 0. */
  check?: boolean;
}

export class CommandError extends Error {
  constructor(readonly result: RunResult) {
    super(`command failed (${describeExit(result)}): ${shellQuote(result.cmd)}\n${indent(result.stderr || result.stdout)}`);
    this.name = 'CommandError';
  }
}

export function describeExit(r: Pick<RunResult, 'code' | 'signal'>): string {
  return r.signal ? `signal ${r.signal}` : `exit ${r.code}`;
}

export function indent(text: string, prefix = '    '): string {
  return text
    .trimEnd()
    .split('\n')
    .map((l) => prefix + l)
    .join('\n');
}

export function shellQuote(cmd: readonly string[]): string {
  return cmd.map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`)).join(' ');
}

export function run(cmd: string[], opts: RunOptions = {}): Promise<RunResult> {
  const started = Date.now();
  return new Promise((resolve, reject) => {
    const [file, ...args] = cmd;
    if (!file) throw new Error('run: empty command');
    const child = spawn(file, args, {
      env: opts.env ?? process.env,
      cwd: opts.cwd,
      stdio: [opts.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout!.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    if (opts.input !== undefined) child.stdin!.end(opts.input);
    let timer: NodeJS.Timeout | undefined;
    if (opts.timeoutMs) {
      timer = setTimeout(() => {
        stderr += `\n[lab: killed after ${opts.timeoutMs} ms]`;
        child.kill('SIGKILL');
      }, opts.timeoutMs);
    }
    child.on('error', (err) => {
      if (timer) clearTimeout(timer);
      const result: RunResult = { cmd, code: 127, signal: null, stdout, stderr: stderr + String(err), ms: Date.now() - started };
      if (opts.check) reject(new CommandError(result));
      else resolve(result);
    });
    child.on('close', (code, signal) => {
      if (timer) clearTimeout(timer);
      const result: RunResult = { cmd, code, signal, stdout, stderr, ms: Date.now() - started };
      if (opts.check && code !== 0) reject(new CommandError(result));
      else resolve(result);
    });
  });
}

export function runSync(cmd: string[], opts: RunOptions = {}): RunResult {
  const started = Date.now();
  const [file, ...args] = cmd;
  if (!file) throw new Error('runSync: empty command');
  const r = spawnSync(file, args, {
    env: opts.env ?? process.env,
    cwd: opts.cwd,
    input: opts.input,
    encoding: 'utf8',
    timeout: opts.timeoutMs,
    killSignal: 'SIGKILL',
    maxBuffer: 64 * 1024 * 1024,
  });
  const result: RunResult = {
    cmd,
    code: r.error && r.status === null && !r.signal ? 127 : r.status,
    signal: r.signal,
    stdout: r.stdout ?? '',
    stderr: (r.stderr ?? '') + (r.error ? String(r.error) : ''),
    ms: Date.now() - started,
  };
  if (opts.check && result.code !== 0) throw new CommandError(result);
  return result;
}

/** Block the thread (for synchronous cleanup loops). */
export function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Poll `probe` until it returns a value other than undefined/false, or time out. */
export async function waitFor<T>(
  what: string,
  probe: () => Promise<T | undefined | false> | T | undefined | false,
  { timeoutMs = 30_000, intervalMs = 200 } = {},
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(intervalMs);
  }
}

/** Whether process `pid` still runs (a zombie or a dead process does not). */
export function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    return state !== 'Z' && state !== 'X';
  } catch {
    return false;
  }
}
