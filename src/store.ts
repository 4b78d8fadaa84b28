// The only module that owns vxvirt's files: network definitions, the users
// state, and the host-wide lock. Writes are atomic (temp file + rename) so a
// crash never leaves a half-written definition or state file behind.
import { spawnSync } from 'node:child_process';
import {
  closeSync,
  constants,
  fsyncSync,
  ftruncateSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  writeSync,
} from 'node:fs';
import { dirname, join } from 'node:path';
import { DefinitionError, LockTimeoutError, NotFoundError, ToolError, UsageError } from './errors.ts';
import { NAME_PATTERN, NAME_RULE, parseStoredDefinition, serializeDefinition, type NetworkDefinition } from './network-definition.ts';
import { emptyUsers, hasUsers, parseUsers, serializeUsers, type Users } from './users.ts';

const configDir = (): string => process.env.VXVIRT_CONFIG_DIR || '/etc/vxvirt';
export const stateDir = (): string => process.env.VXVIRT_STATE_DIR || '/run/vxvirt';
/** Where the definitions are: one NAME.json each. */
export const networksDir = (): string => join(configDir(), 'networks');
const usersDir = (): string => join(stateDir(), 'users');

const isMissing = (err: unknown): boolean => (err as NodeJS.ErrnoException)?.code === 'ENOENT';

/** The names of a directory's *.json files, without the extension; none if the directory does not exist. */
function jsonNames(dir: string): string[] {
  let entries: string[];
  try {
    entries = readdirSync(dir);
  } catch (err) {
    if (isMissing(err)) return [];
    throw err;
  }
  return entries.filter((f) => f.endsWith('.json')).map((f) => f.slice(0, -'.json'.length));
}

/** Write `text` to `path` atomically: a reader sees the old file or the new one, never a mix. */
function writeFileAtomic(path: string, text: string, mode = 0o644): void {
  mkdirSync(dirname(path), { recursive: true, mode: 0o755 });
  const tmp = `${path}.tmp-${process.pid}`;
  try {
    const fd = openSync(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC, mode);
    try {
      writeSync(fd, text);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, path);
  } catch (err) {
    rmSync(tmp, { force: true });
    throw err;
  }
}

// ---- definitions -----------------------------------------------------------

function definitionPath(name: string): string {
  if (!NAME_PATTERN.test(name)) {
    throw new UsageError(`network name ${JSON.stringify(name)}: must match ${NAME_RULE}`);
  }
  return join(networksDir(), `${name}.json`);
}

/** Names of the defined networks, sorted (files whose name is not a network name are not definitions). */
function listDefinitionNames(): string[] {
  return jsonNames(networksDir())
    .filter((n) => NAME_PATTERN.test(n))
    .sort();
}

export function readDefinition(name: string): NetworkDefinition {
  const path = definitionPath(name);
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    if (isMissing(err)) throw new NotFoundError(`network ${name} is not defined (no ${path})`);
    throw err;
  }
  const def = parseStoredDefinition(text, path);
  if (def.name !== name) throw new DefinitionError(`${path}: holds network ${JSON.stringify(def.name)}, not ${name}`);
  return def;
}

export function listDefinitions(): NetworkDefinition[] {
  return listDefinitionNames().map(readDefinition);
}

export interface LoadedDefinitions {
  defs: NetworkDefinition[];
  /** Files that could not be read or are invalid, by network name. */
  broken: Array<{ name: string; error: Error }>;
}

/**
 * Every definition that can be read, and the errors of those that cannot.
 * For the hook: one bad file must not stop guests on other networks (or on
 * no vxvirt network at all) from starting.
 */
export function loadDefinitions(): LoadedDefinitions {
  const out: LoadedDefinitions = { defs: [], broken: [] };
  for (const name of listDefinitionNames()) {
    try {
      out.defs.push(readDefinition(name));
    } catch (err) {
      out.broken.push({ name, error: err as Error });
    }
  }
  return out;
}

export function writeDefinition(def: NetworkDefinition): void {
  writeFileAtomic(definitionPath(def.name), serializeDefinition(def));
}

export function removeDefinition(name: string): void {
  rmSync(definitionPath(name), { force: true });
}

// ---- users state -----------------------------------------------------------

const usersPath = (network: string): string => join(usersDir(), `${network}.json`);

export function readUsers(network: string): Users {
  try {
    return parseUsers(readFileSync(usersPath(network), 'utf8'));
  } catch (err) {
    if (isMissing(err)) return emptyUsers();
    throw err;
  }
}

/** Networks that have a users file (possibly of networks no longer defined). */
export function listUserNetworks(): string[] {
  return jsonNames(usersDir());
}

export function writeUsers(network: string, users: Users): void {
  if (!hasUsers(users)) rmSync(usersPath(network), { force: true });
  else writeFileAtomic(usersPath(network), serializeUsers(users));
}

// ---- the host lock ---------------------------------------------------------

const DEFAULT_LOCK_TIMEOUT_S = 30;
const FLOCK_CONFLICT = 75;

function lockTimeoutSeconds(): number {
  const raw = process.env.VXVIRT_LOCK_TIMEOUT;
  if (raw === undefined || raw === '') return DEFAULT_LOCK_TIMEOUT_S;
  const n = Number(raw);
  if (!Number.isFinite(n) || n < 0) {
    throw new UsageError(`VXVIRT_LOCK_TIMEOUT=${JSON.stringify(raw)}: must be a number of seconds >= 0`);
  }
  return n;
}

/**
 * Take the host-wide lock, run `fn`, release it.
 *
 * Node has no flock(2), so flock(1) does the waiting: it is handed our own
 * open file description as its fd 3, locks it and exits. An flock lock belongs
 * to the open file description, so it stays held by this process after flock(1)
 * exits, and the kernel drops it when this process closes the file or dies —
 * a killed hook can never leave the host locked.
 */
export async function withHostLock<T>(holder: string, fn: () => Promise<T>): Promise<T> {
  const dir = stateDir();
  // 0700: anyone who can open the lock file can hold the lock (flock needs no write access).
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const path = join(dir, 'lock');
  const timeout = lockTimeoutSeconds();
  const fd = openSync(path, constants.O_RDWR | constants.O_CREAT, 0o644);
  try {
    const r = spawnSync('flock', ['--exclusive', '--wait', String(timeout), '--conflict-exit-code', String(FLOCK_CONFLICT), '3'], {
      stdio: ['ignore', 'ignore', 'pipe', fd],
    });
    if (r.error) {
      throw new ToolError(`cannot run flock(1) to take the host lock (${(r.error as NodeJS.ErrnoException).code}): install util-linux`);
    }
    if (r.status === FLOCK_CONFLICT) {
      let current = '';
      try {
        current = readFileSync(path, 'utf8').trim();
      } catch {
        // only for the message
      }
      throw new LockTimeoutError(
        `timed out after ${timeout}s waiting for the host lock ${path}${current ? ` (held by ${current})` : ''}; set VXVIRT_LOCK_TIMEOUT to wait longer`,
      );
    }
    if (r.status !== 0) {
      throw new ToolError(`flock(1) failed on ${path}: ${String(r.stderr).trim() || `exit status ${r.status}`}`);
    }
    // Say who holds it, for the timeout message of whoever waits next.
    ftruncateSync(fd, 0);
    writeSync(fd, `pid ${process.pid}: ${holder}\n`, 0);
    return await fn();
  } finally {
    closeSync(fd);
  }
}

