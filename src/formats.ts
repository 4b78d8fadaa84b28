// The format versions of vxvirt's files, so that code and files can be
// upgraded apart: a guest's hook may run the code of one vxvirt on files
// another one wrote (an upgrade while guests run, a downgrade).
//
// Each kind of file carries `"version": N` (a file without one is version 1,
// the format of every file written before versions were recorded in all of
// them). A vxvirt reads the versions from 1 up to the one it writes: an older
// one is converted in memory, step by step, by the upgrades below, and the
// next change to the file — always made under the host lock — writes it in
// the current format (nothing rewrites files wholesale: a hook killed
// half-way through a conversion cannot leave a mix). A file in a newer
// format than this vxvirt writes is refused with one line (NewerFormatError),
// never guessed at: an older vxvirt would misread it and could delete a pair
// in use or drop a user.
//
// Adding a field that older versions can ignore needs no new version (every
// reader ignores fields it does not know). A new version is for a change an
// older vxvirt would get wrong; bump it in one release that reads it, and
// start writing it in the next, so that while hooks of the previous release
// are still running during an upgrade, no file they cannot read appears.
//
// Pure: no I/O.
import { DefinitionError, NewerFormatError } from './errors.ts';
import { VERSION } from './version.ts';

/** A file's JSON object, as read. */
export type Raw = Record<string, unknown>;

export interface Format {
  /** What the file is, for messages ("network definition"). */
  what: string;
  /**
   * upgrades[i] converts version i+1 to version i+2 (the field `version` is
   * set by readFormat); so the version written is upgrades.length + 1.
   */
  upgrades: ReadonlyArray<(raw: Raw) => Raw>;
}

export type FileKind = 'definition' | 'users' | 'domain-record';

/** The formats of this vxvirt: all at version 1. */
export const FORMATS: Readonly<Record<FileKind, Format>> = {
  definition: { what: 'network definition', upgrades: [] },
  users: { what: 'users state file', upgrades: [] },
  'domain-record': { what: 'domain record', upgrades: [] },
};

/** The version this vxvirt writes (and the newest it reads). */
export const currentVersion = (format: Format): number => format.upgrades.length + 1;

/** "1", "1 and 2", "1 to 3": the versions a format can be read in. */
function readable(format: Format): string {
  const n = currentVersion(format);
  return n === 1 ? 'version 1' : n === 2 ? 'versions 1 and 2' : `versions 1 to ${n}`;
}

/** A value for a message: JSON, at most 40 characters. */
function shown(value: unknown): string {
  const text = JSON.stringify(value) ?? String(value);
  return text.length > 40 ? `${text.slice(0, 40)}…` : text;
}

/**
 * The format version a file says it is in: absent is 1; anything but a
 * whole number >= 1 is a broken file (DefinitionError).
 */
export function versionOf(raw: Raw, source: string): number {
  const v = raw.version;
  if (v === undefined) return 1;
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 1) {
    throw new DefinitionError(`${source}: format version ${shown(v)} is not a version number (a whole number from 1)`);
  }
  return v;
}

/** The one line for a file written by a newer vxvirt. */
export function newerFormatMessage(source: string, format: Format, version: number): string {
  return (
    `${source}: ${format.what} in format version ${version}, but this vxvirt (${VERSION}) reads ${readable(format)} only: ` +
    `a newer vxvirt wrote it; upgrade vxvirt to that version or later (nothing was changed)`
  );
}

/**
 * A stored file's object in the current format: converted from an older
 * version, or refused (NewerFormatError) when it is newer than this vxvirt.
 * `from` is the version it was stored in.
 */
export function readFormat(raw: Raw, source: string, format: Format): { raw: Raw; from: number } {
  const from = versionOf(raw, source);
  const current = currentVersion(format);
  if (from > current) throw new NewerFormatError(newerFormatMessage(source, format, from));
  let out = raw;
  for (let v = from; v < current; v++) out = { ...format.upgrades[v - 1]!(out), version: v + 1 };
  return { raw: out, from };
}

/** The object to store: `fields` with the current version first. */
export function stamped<T extends object>(format: Format, fields: T): { version: number } & T {
  return { version: currentVersion(format), ...fields };
}

/** Any JSON value, or one DefinitionError line naming the file. */
export function parseJson(text: string, source: string): unknown {
  try {
    return JSON.parse(text);
  } catch (err) {
    // V8 quotes the file's text in its message: escape control characters
    // (a newline, a NUL) so the message stays one printable line.
    const why = (err as Error).message.replace(/[\x00-\x1f]/g, (c) => JSON.stringify(c).slice(1, -1));
    throw new DefinitionError(`${source}: not valid JSON (${why})`);
  }
}

/** A JSON object, or one DefinitionError line naming the file. */
export function parseObject(text: string, source: string): Raw {
  const raw = parseJson(text, source);
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    throw new DefinitionError(`${source}: must hold a JSON object`);
  }
  return raw as Raw;
}
