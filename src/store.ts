// The only module that owns vxvirt's files: network definitions (and their
// VNI index), the users state, the per-domain records and the host-wide lock.
//
//   $VXVIRT_CONFIG_DIR (/etc/vxvirt)
//     networks/NAME.json      one definition each
//     vni/N -> ../networks/NAME.json
//                             index, so the hook finds the network of bridge
//                             vxbrN without reading every definition
//   $VXVIRT_STATE_DIR (/run/vxvirt, 0700)
//     users/NAME.json         the domains using network NAME, with the MACs of
//                             their NICs on it (authoritative)
//     domains/KEY.json        the networks domain KEY was recorded on (a superset:
//                             written before users/, removed after them), so a
//                             release touches only that domain's networks
//     releasing/KEY.json      a release in progress (of the whole domain, or of
//                             the network a hot-unplug took its last NIC from);
//                             a killed release is finished by the next hook run
//                             that takes the lock
//     lock                    flock(2)ed by whoever changes users or devices
//                             (or by the shell of hooks/qemu for the node
//                             it runs in the background: lockHeldByParent)
//
// Writes are atomic (temp file + rename), so a crash never leaves a half-written
// file. The hook runs as root, so like sshd's StrictModes it refuses files and
// directories that are not root's or that others may write (VXVIRT_STRICT_MODES=no
// turns that off, for test setups), and it opens state and lock files without
// following symlinks.
import { createHash } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import {
  chmodSync,
  closeSync,
  constants,
  fstatSync,
  fsyncSync,
  ftruncateSync,
  lstatSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  renameSync,
  rmSync,
  statSync,
  symlinkSync,
  writeSync,
  type Stats,
} from 'node:fs';
import { dirname, join } from 'node:path';
import { DefinitionError, InternalError, LockTimeoutError, NotFoundError, ToolError, UsageError } from './errors.ts';
import { NAME_PATTERN, NAME_RULE, parseStoredDefinition, serializeDefinition, type NetworkDefinition } from './network-definition.ts';
import { emptyUsers, hasUsers, parseDomainRecord, parseUsers, serializeDomainRecord, serializeUsers, type DomainRecord, type PendingRelease, type RecordedDomain, type Users } from './users.ts';
import { isUuid } from './domain-xml.ts';

const configDir = (): string => process.env.VXVIRT_CONFIG_DIR || '/etc/vxvirt';
export const stateDir = (): string => process.env.VXVIRT_STATE_DIR || '/run/vxvirt';
/** Where the definitions are: one NAME.json each. */
export const networksDir = (): string => join(configDir(), 'networks');
const vniDir = (): string => join(configDir(), 'vni');
const usersDir = (): string => join(stateDir(), 'users');
const domainsDir = (): string => join(stateDir(), 'domains');
const releasingDir = (): string => join(stateDir(), 'releasing');

const isMissing = (err: unknown): boolean => (err as NodeJS.ErrnoException)?.code === 'ENOENT';
const READ_NOFOLLOW = constants.O_RDONLY | constants.O_NOFOLLOW;

// ---- permissions -----------------------------------------------------------

const strict = (): boolean => process.env.VXVIRT_STRICT_MODES !== 'no';

/**
 * Refuse what a non-root user could have written: the hook acts on these
 * files as root. Only enforced when running as root (a non-root CLI can only
 * read what it was given anyway).
 */
function checkTrusted(path: string, st: Stats): void {
  if (!strict() || process.getuid?.() !== 0) return;
  const problem = st.uid !== 0 ? `is owned by uid ${st.uid}, not root` : st.mode & 0o022 ? `is writable by ${(st.mode & 0o022) === 0o022 ? 'its group and others' : st.mode & 0o020 ? 'its group' : 'others'} (mode ${(st.mode & 0o7777).toString(8).padStart(4, '0')})` : '';
  if (problem) {
    throw new DefinitionError(`${path} ${problem}: vxvirt runs it as root, so it must be root's and not group/other-writable (chmod go-w, chown root; VXVIRT_STRICT_MODES=no turns this check off)`);
  }
}

const checkedDirs = new Set<string>();
/** Check a directory once per process; a missing one is fine (nothing in it). */
function checkTrustedDir(dir: string): void {
  if (checkedDirs.has(dir)) return;
  try {
    checkTrusted(dir, lstatSync(dir));
  } catch (err) {
    if (!isMissing(err)) throw err;
  }
  checkedDirs.add(dir);
}

/** Read a file without following a symlink, refusing one others could have written. */
function readTrusted(path: string): string {
  const fd = openSync(path, READ_NOFOLLOW);
  try {
    checkTrusted(path, fstatSync(fd));
    return readFileSync(fd, 'utf8');
  } finally {
    closeSync(fd);
  }
}

/**
 * The state directory: created 0700; an existing one must be root's and not
 * writable by others, and loses any group/other bits it has (older versions
 * made it 0755).
 */
let stateReady = false;
function ensureStateDir(): string {
  const dir = stateDir();
  if (stateReady) return dir;
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  // hooks/qemu journals a release into it from sh (a rename: it cannot create it).
  mkdirSync(releasingDir(), { recursive: true, mode: 0o700 });
  const st = lstatSync(dir);
  if (!st.isDirectory()) throw new DefinitionError(`state directory ${dir} is not a directory`);
  checkTrusted(dir, st);
  if ((st.mode & 0o077) !== 0 && process.getuid?.() === 0) chmodSync(dir, 0o700);
  stateReady = true;
  return dir;
}

// ---- files -----------------------------------------------------------------

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

/**
 * Write `text` to `path` atomically: a reader sees the old file or the new one,
 * never a mix. `durable`: fsync before the rename, so that a power loss cannot
 * leave an empty file either (definitions, in /etc).
 */
function writeFileAtomic(path: string, text: string, mode = 0o644, dirMode = 0o755, durable = true): void {
  mkdirSync(dirname(path), { recursive: true, mode: dirMode });
  const tmp = `${path}.tmp-${process.pid}`;
  try {
    // O_EXCL|O_NOFOLLOW: never write through a symlink planted at the temp name.
    rmSync(tmp, { force: true });
    const fd = openSync(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, mode);
    try {
      writeSync(fd, text);
      if (durable) fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    // rename(2) replaces the name itself, even when it is a symlink.
    renameSync(tmp, path);
  } catch (err) {
    rmSync(tmp, { force: true });
    throw err;
  }
}

/**
 * State is not fsynced: it lives in /run, which does not outlive a reboot
 * (tmpfs; `vxvirt reconcile` rebuilds it after one), and the rename alone
 * keeps it whole for every reader when a process dies. An fsync costs a disk
 * flush on a disk-backed /run (several milliseconds per file on every start).
 */
function writeStateFile(path: string, text: string): void {
  ensureStateDir();
  writeFileAtomic(path, text, 0o600, 0o700, false);
}

/** A state file's text, or undefined when it does not exist. */
function readStateFile(path: string): string | undefined {
  try {
    return readTrusted(path);
  } catch (err) {
    if (isMissing(err)) return undefined;
    if ((err as NodeJS.ErrnoException).code === 'ELOOP') {
      throw new DefinitionError(`${path} is a symlink: vxvirt's state files never are, so it was not made by vxvirt; remove it`);
    }
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
  checkTrustedDir(configDir());
  checkTrustedDir(networksDir());
  let text: string;
  try {
    text = readTrusted(path);
  } catch (err) {
    if (isMissing(err)) throw new NotFoundError(`network ${name} is not defined (no ${path})`);
    if ((err as NodeJS.ErrnoException).code === 'ELOOP') throw new DefinitionError(`${path} is a symlink: definitions must be regular files`);
    throw err;
  }
  const def = parseStoredDefinition(text, path);
  if (def.name !== name) throw new DefinitionError(`${path}: holds network ${JSON.stringify(def.name)}, not ${name}`);
  return def;
}

/** The definition of network `name`, or undefined when there is none (a libvirt network that is not vxvirt's). Throws for a broken file. */
export function findDefinition(name: string): NetworkDefinition | undefined {
  if (!NAME_PATTERN.test(name)) return undefined;
  try {
    return readDefinition(name);
  } catch (err) {
    if (err instanceof NotFoundError) return undefined;
    throw err;
  }
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
 * For the commands that look at all networks: one bad file must not hide the others.
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

/** The name the VNI index gives for `vni`, if any (the link's target, never followed). */
function indexedName(vni: number): string | undefined {
  let target: string;
  try {
    target = readlinkSync(join(vniDir(), String(vni)));
  } catch {
    return undefined;
  }
  const m = /^\.\.\/networks\/([^/]+)\.json$/.exec(target);
  return m && NAME_PATTERN.test(m[1]!) ? m[1] : undefined;
}

export interface VniLookup {
  def?: NetworkDefinition;
  /** Definitions that could not be read while looking (only when the index did not answer). */
  broken: LoadedDefinitions['broken'];
}

/**
 * The definition with VNI `vni`. The index answers in one read; when it is
 * missing or stale (a definition written by hand), every definition is read.
 */
export function findDefinitionByVni(vni: number): VniLookup {
  const name = indexedName(vni);
  if (name !== undefined) {
    const def = findDefinition(name);
    if (def?.vni === vni) return { def, broken: [] };
  }
  const all = loadDefinitions();
  const def = all.defs.find((d) => d.vni === vni);
  if (def) {
    try {
      writeVniIndex(def); // heal the index for next time
    } catch {
      // a read-only /etc is no reason to fail
    }
  }
  return { ...(def ? { def } : {}), broken: def ? [] : all.broken };
}

function writeVniIndex(def: NetworkDefinition): void {
  const link = join(vniDir(), String(def.vni));
  const tmp = `${link}.tmp-${process.pid}`;
  mkdirSync(vniDir(), { recursive: true, mode: 0o755 });
  rmSync(tmp, { force: true });
  symlinkSync(`../networks/${def.name}.json`, tmp);
  renameSync(tmp, link);
}

export function writeDefinition(def: NetworkDefinition): void {
  writeFileAtomic(definitionPath(def.name), serializeDefinition(def));
  writeVniIndex(def);
  removeIndexEntriesOf(def.name, def.vni); // its old VNI, after a --replace
}

/** Remove a definition and the index entries that point at it. */
export function removeDefinition(name: string): void {
  rmSync(definitionPath(name), { force: true });
  removeIndexEntriesOf(name);
}

/** Drop index entries naming `name` except the one for `keepVni` (a definition that changed VNI). */
function removeIndexEntriesOf(name: string, keepVni?: number): void {
  let entries: string[];
  try {
    entries = readdirSync(vniDir());
  } catch {
    return;
  }
  for (const e of entries) {
    if (!/^\d+$/.test(e) || Number(e) === keepVni) continue;
    if (indexedName(Number(e)) === name) rmSync(join(vniDir(), e), { force: true });
  }
}

// ---- users state -----------------------------------------------------------

const usersPath = (network: string): string => join(usersDir(), `${network}.json`);

export function readUsers(network: string): Users {
  const path = usersPath(network);
  const text = readStateFile(path);
  return text === undefined ? emptyUsers() : parseUsers(text, path);
}

/** Networks that have a users file (possibly of networks no longer defined). */
export function listUserNetworks(): string[] {
  return jsonNames(usersDir());
}

export function writeUsers(network: string, users: Users): void {
  if (!hasUsers(users)) rmSync(usersPath(network), { force: true });
  else writeStateFile(usersPath(network), serializeUsers(users));
}

// ---- per-domain records ----------------------------------------------------



/**
 * A domain's record file name: its UUID (what hooks/qemu looks for without
 * starting node), or for a key that is not one a hash, so no domain name can
 * reach the file system as a path.
 */
function domainFileName(key: string): string {
  return isUuid(key) ? `${key.toLowerCase()}.json` : `name-${createHash('sha256').update(key).digest('hex').slice(0, 32)}.json`;
}


export function readDomainRecord(key: string): DomainRecord | undefined {
  const path = join(domainsDir(), domainFileName(key));
  const text = readStateFile(path);
  return text === undefined ? undefined : parseDomainRecord(text, key, path);
}

/** Write (or with no networks, remove) a domain's record. */
export function writeDomainRecord(key: string, record: DomainRecord): void {
  const path = join(domainsDir(), domainFileName(key));
  if (record.networks.length === 0) rmSync(path, { force: true });
  else writeStateFile(path, serializeDomainRecord(key, record));
}


/** The records of a directory of domain records: each with the key written in it (else its file name). */
function readRecords(dir: string): RecordedDomain[] {
  const out: RecordedDomain[] = [];
  for (const base of jsonNames(dir)) {
    const path = join(dir, `${base}.json`);
    const text = readStateFile(path);
    if (text === undefined) continue;
    let key = base;
    try {
      const raw = JSON.parse(text) as { key?: unknown };
      if (typeof raw.key === 'string') key = raw.key;
    } catch {
      // a torn file cannot happen (atomic writes); a hand-edited one still ends
    }
    out.push({ key, record: parseDomainRecord(text, key, path) });
  }
  return out;
}

/** Every domain record (for `vxvirt reconcile`, which surveys the whole host; the hook reads one). */
export function listDomainRecords(): RecordedDomain[] {
  return readRecords(domainsDir());
}

/**
 * Start a release: move the domain's record to releasing/ (one atomic rename),
 * so that if this process dies before the end, the next one finishes it.
 * Returns the record, or undefined when the domain was not recorded.
 */
export function beginRelease(key: string): DomainRecord | undefined {
  const file = domainFileName(key);
  const to = join(releasingDir(), file);
  try {
    mkdirSync(releasingDir(), { recursive: true, mode: 0o700 });
    renameSync(join(domainsDir(), file), to);
  } catch (err) {
    if (!isMissing(err)) throw err;
  }
  const text = readStateFile(to);
  return text === undefined ? undefined : parseDomainRecord(text, key, to);
}

/**
 * Start the release of some of a domain's networks (a hot-unplug took its
 * last NIC there): journaled in releasing/ like a whole release, so that if
 * this process dies before endRelease, the next one finishes it. The
 * domain's record stays in domains/ (it still runs).
 */
export function beginPartialRelease(key: string, record: DomainRecord): void {
  writeStateFile(join(releasingDir(), domainFileName(key)), serializeDomainRecord(key, record));
}


/** Releases a killed process left unfinished (usually none: one readdir). */
export function pendingReleases(): PendingRelease[] {
  return readRecords(releasingDir());
}

/** The journal of a release in progress (what endRelease removes), for a process that finishes it on its own. */
export function releaseJournal(key: string): string {
  return join(releasingDir(), domainFileName(key));
}

export function endRelease(key: string): void {
  rmSync(releaseJournal(key), { force: true });
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

/** The lock file's descriptor while withHostLock runs `fn` (a child given it holds the lock too). */
let heldLock: number | undefined;

/**
 * The descriptor of the host lock this process holds (inside withHostLock).
 * A child that gets it (as a stdio entry) shares the locked open file
 * description: the lock then stays held until the child has exited as well.
 */
export function heldLockFd(): number {
  if (heldLock === undefined) throw new InternalError('the host lock is not held');
  return heldLock;
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
  // 0700 dir, 0600 file: anyone who can open the lock file can hold the lock (flock needs no write access).
  const path = join(ensureStateDir(), 'lock');
  if (lockHeldByParent(path)) return withParentsLock(path, holder, fn);
  const taken = early;
  early = undefined;
  if (taken && !taken.acquisition) closeSync(taken.fd);
  const timeout = taken?.timeoutSeconds ?? lockTimeoutSeconds();
  const fd = taken?.acquisition ? taken.fd : openSync(path, constants.O_RDWR | constants.O_CREAT | constants.O_NOFOLLOW, 0o600);
  try {
    if (taken?.acquisition) {
      try {
        await taken.acquisition.held;
      } catch (err) {
        if (taken.acquisition.timedOut()) throw lockTimeout(path, fd, timeout);
        throw err;
      }
    } else {
      const r = spawnSync('flock', ['--exclusive', '--wait', String(timeout), '--conflict-exit-code', String(FLOCK_CONFLICT), '3'], {
        stdio: ['ignore', 'ignore', 'pipe', fd],
      });
      if (r.error) {
        throw new ToolError(`cannot run flock(1) to take the host lock (${(r.error as NodeJS.ErrnoException).code}): install util-linux`);
      }
      if (r.status === FLOCK_CONFLICT) throw lockTimeout(path, fd, timeout);
      if (r.status !== 0) {
        throw new ToolError(`flock(1) failed on ${path}: ${String(r.stderr).trim() || `exit status ${r.status}`}`);
      }
    }
    // Say who holds it, for the timeout message of whoever waits next.
    ftruncateSync(fd, 0);
    writeSync(fd, `pid ${process.pid}: ${holder}\n`, 0);
    heldLock = fd;
    return await fn();
  } finally {
    heldLock = undefined;
    closeSync(fd);
  }
}

function lockTimeout(path: string, fd: number, timeout: number): LockTimeoutError {
  let current = '';
  try {
    current = readFileSync(fd, 'utf8').trim();
  } catch {
    // only for the message
  }
  return new LockTimeoutError(`timed out after ${timeout}s waiting for the host lock ${path}${current ? ` (held by ${current})` : ''}; set VXVIRT_LOCK_TIMEOUT to wait longer`);
}

/** Someone else locking this process's lock descriptor for it (iproute.ts's SessionLock). */
export interface LockAcquisition {
  /** Resolves once the lock is held; rejects if it will not be. */
  held: Promise<void>;
  /** After `held` rejected: whether because the lock stayed taken until the timeout. */
  timedOut(): boolean;
}

/** The lock descriptor openHostLockEarly gave out, until withHostLock takes it over. */
let early: { fd: number; timeoutSeconds: number; acquisition?: LockAcquisition } | undefined;

/**
 * Open the host lock file now, for another process to lock this descriptor
 * while this one does other work (the hook's `ip` session: iproute.ts); the
 * next withHostLock then waits for `acquisition` (lockAcquiredBy) instead of
 * running flock(1) itself. Undefined when that cannot be set up: withHostLock
 * then does it all, and reports what fails.
 */
export function openHostLockEarly(): { fd: number; timeoutSeconds: number } | undefined {
  try {
    const path = join(ensureStateDir(), 'lock');
    const timeoutSeconds = lockTimeoutSeconds();
    const fd = openSync(path, constants.O_RDWR | constants.O_CREAT | constants.O_NOFOLLOW, 0o600);
    early = { fd, timeoutSeconds };
    return { fd, timeoutSeconds };
  } catch {
    return undefined;
  }
}

export function lockAcquiredBy(acquisition: LockAcquisition): void {
  if (early) early.acquisition = acquisition;
}

/**
 * Whether the parent process holds the host lock for this one: hooks/qemu
 * takes it on its descriptor N before it journals a release, then runs node
 * in the background with VXVIRT_LOCK_HELD_BY_PARENT=N (and without fd N) and
 * waits for it, so the lock is held from the journal to the end of the
 * release while no child of node (a detached logger) can ever hold it.
 * Honoured once per process (the variable is removed: node's children do not
 * see it), and only if the parent's descriptor N is this lock file, locked
 * exclusively: the kernel says so in /proc/PPID/fdinfo/N.
 */
function lockHeldByParent(path: string): boolean {
  const fd = process.env.VXVIRT_LOCK_HELD_BY_PARENT;
  if (fd === undefined) return false;
  delete process.env.VXVIRT_LOCK_HELD_BY_PARENT;
  if (!/^[0-9]{1,4}$/.test(fd)) return false;
  try {
    const theirs = statSync(`/proc/${process.ppid}/fd/${fd}`);
    const ours = lstatSync(path);
    if (!ours.isFile() || theirs.dev !== ours.dev || theirs.ino !== ours.ino) return false;
    // `lock:\t1: FLOCK  ADVISORY  WRITE PID MAJ:MIN:INODE 0 EOF`; a waiter's line has "->" before FLOCK.
    return /^lock:\s+\d+: FLOCK\s+ADVISORY\s+WRITE\s/m.test(readFileSync(`/proc/${process.ppid}/fdinfo/${fd}`, 'utf8'));
  } catch {
    return false;
  }
}

async function withParentsLock<T>(path: string, holder: string, fn: () => Promise<T>): Promise<T> {
  // Say who works under it, for the timeout message of whoever waits next.
  try {
    const fd = openSync(path, constants.O_WRONLY | constants.O_NOFOLLOW);
    try {
      ftruncateSync(fd, 0);
      writeSync(fd, `pid ${process.pid}: ${holder} (background, for pid ${process.ppid})\n`, 0);
    } finally {
      closeSync(fd);
    }
  } catch {
    // only for messages
  }
  // heldLockFd() stays unset: there is no descriptor here to hand on.
  return fn();
}

/**
 * Wait until no one holds the host lock (a hook, or the process a release
 * left deleting its pair), taking it shared and dropping it at once; for
 * readers such as `vxvirt status` that report devices and users. Without a
 * state directory (nothing ever ran here) there is nothing to wait for.
 */
export function waitForHostLock(): void {
  const path = join(stateDir(), 'lock');
  let fd: number;
  try {
    fd = openSync(path, constants.O_RDONLY | constants.O_NOFOLLOW);
  } catch (err) {
    if (isMissing(err)) return;
    throw err;
  }
  try {
    const timeout = lockTimeoutSeconds();
    const r = spawnSync('flock', ['--shared', '--wait', String(timeout), '--conflict-exit-code', String(FLOCK_CONFLICT), '3'], { stdio: ['ignore', 'ignore', 'pipe', fd] });
    if (r.error) throw new ToolError(`cannot run flock(1) to wait for the host lock (${(r.error as NodeJS.ErrnoException).code}): install util-linux`);
    if (r.status === FLOCK_CONFLICT) throw new LockTimeoutError(`timed out after ${timeout}s waiting for the host lock ${path}; set VXVIRT_LOCK_TIMEOUT to wait longer`);
    if (r.status !== 0) throw new ToolError(`flock(1) failed on ${path}: ${String(r.stderr).trim() || `exit status ${r.status}`}`);
  } finally {
    closeSync(fd);
  }
}
