// Who uses a network: the domains that `prepare` (or `attach --live`, or the
// network hook's `port-created`) recorded and `release` has not yet removed.
// Pure: the store reads and writes these records under the host lock;
// deciding "last user left" happens here.
//
// A user is a domain (by UUID), and with it the MACs of its NICs on the
// network: a domain may have several NICs on one VNI, and a hot-unplug
// (libvirt's network hook `port-deleted`) takes one of them away. The domain
// stops being a user when its last known NIC goes, or when it stops
// (`release`, whatever NICs are left). A user whose NICs vxvirt cannot all
// name (a NIC without a MAC, a record from before MACs were kept, one that
// `vxvirt reconcile` made from a running domain) has `macs` unset: an unplug
// never ends it, only the domain's stop — it stays unknown until then.
import { FORMATS, parseObject, readFormat, stamped } from './formats.ts';

import { NAME_PATTERN } from './network-definition.ts';

export interface UserRecord {
  /** The domain's name when it was recorded, for humans (`vxvirt status`). */
  name: string;
  since: string;
  /** The MACs (lower case) of the domain's NICs on this network; unset: not all of them are known. */
  macs?: string[];
}

/** Keyed by the domain's UUID (or its name when the XML has no UUID). */
export type Users = Record<string, UserRecord>;

export const emptyUsers = (): Users => ({});

/** A domain's NICs on one network: their MACs, or 'unknown' when vxvirt cannot name them all. */
export type Nics = readonly string[] | 'unknown';

/**
 * Record `key` as a user with these NICs (added to those it has; once
 * unknown, a user's NICs stay unknown until it goes). Keeps the original
 * `since` when a domain is recorded again (double prepare, reconnect, the
 * port-created after a prepare).
 */
export function addUser(users: Users, key: string, name: string, now: Date, nics: Nics = []): Users {
  const existing = users[key];
  const since = existing?.since ?? now.toISOString();
  if (nics === 'unknown' || (existing && existing.macs === undefined)) return { ...users, [key]: { name, since } };
  const macs = [...new Set([...(existing?.macs ?? []), ...nics.map((m) => m.toLowerCase())])].sort();
  return { ...users, [key]: { name, since, macs } };
}

export function removeUser(users: Users, key: string): Users {
  if (!(key in users)) return users;
  const { [key]: _removed, ...rest } = users;
  return rest;
}

/** Put one user entry back as it was before (undefined: it did not exist) — a failed start's rollback. */
export function restoreUser(users: Users, key: string, before: UserRecord | undefined): Users {
  return before === undefined ? removeUser(users, key) : { ...users, [key]: before };
}

/**
 * What unplugging the NIC `mac` of domain `key` means for a network:
 *  - not-a-user: the domain is not a user of it (nothing to do)
 *  - unknown-nic: the domain uses it, but through NICs vxvirt cannot tell
 *    apart from this one (the MAC is not among its known ones): it stays a
 *    user until it stops
 *  - still-used: other known NICs of the domain remain; `users` has the MAC removed
 *  - last-nic: this was the domain's last NIC there: it stops being a user
 */
export type Unplug =
  | { outcome: 'not-a-user' | 'unknown-nic' | 'last-nic' }
  | { outcome: 'still-used'; users: Users };

export function planUnplug(users: Users, key: string, mac: string): Unplug {
  const entry = users[key];
  if (!entry) return { outcome: 'not-a-user' };
  const m = mac.toLowerCase();
  if (entry.macs === undefined || !entry.macs.includes(m)) return { outcome: 'unknown-nic' };
  const macs = entry.macs.filter((x) => x !== m);
  if (macs.length === 0) return { outcome: 'last-nic' };
  return { outcome: 'still-used', users: { ...users, [key]: { ...entry, macs } } };
}

export const hasUsers = (users: Users): boolean => Object.keys(users).length > 0;

export function userNames(users: Users): string[] {
  return Object.values(users)
    .map((u) => u.name)
    .sort();
}

export function serializeUsers(users: Users): string {
  return `${JSON.stringify(stamped(FORMATS.users, { users }), null, 2)}\n`;
}

const MAC = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/;

/** A users file (`source` names it in errors): an older format is converted, a newer one refused (NewerFormatError). */
export function parseUsers(text: string, source = 'users file'): Users {
  const raw = readFormat(parseObject(text, source), source, FORMATS.users).raw as { users?: unknown };
  const out: Users = {};
  if (raw && typeof raw.users === 'object' && raw.users !== null) {
    for (const [key, value] of Object.entries(raw.users as Record<string, unknown>)) {
      const v = value as Partial<UserRecord> | null;
      const rec: UserRecord = { name: typeof v?.name === 'string' ? v.name : key, since: typeof v?.since === 'string' ? v.since : '' };
      // A file from before MACs were kept has none: such a user's NICs are unknown, and it ends only with its domain.
      if (Array.isArray(v?.macs)) rec.macs = v.macs.filter((m): m is string => typeof m === 'string' && MAC.test(m));
      out[key] = rec;
    }
  }
  return out;
}

// ---- per-domain records ------------------------------------------------------
// The other side of the users files: the networks a domain was recorded on
// (store.ts keeps one file per domain), so a release needs no definition.

/** A network a domain was recorded on, with its VNI so teardown needs no definition. */
export interface RecordedNetwork {
  name: string;
  vni: number;
}

export interface DomainRecord {
  name: string;
  networks: RecordedNetwork[];
}

export interface RecordedDomain {
  key: string;
  record: DomainRecord;
}

/** A release a killed process left in releasing/. */
export type PendingRelease = RecordedDomain;

/** A domain record (`source` names its file in errors): an older format converted, a newer one refused (NewerFormatError). */
export function parseDomainRecord(text: string, fallbackName: string, source = 'domain record'): DomainRecord {
  const raw = readFormat(parseObject(text, source), source, FORMATS['domain-record']).raw as Partial<DomainRecord>;
  const networks = Array.isArray(raw.networks)
    ? raw.networks.filter((n): n is RecordedNetwork => typeof n?.name === 'string' && NAME_PATTERN.test(n.name) && Number.isInteger(n.vni))
    : [];
  return { name: typeof raw.name === 'string' ? raw.name : fallbackName, networks };
}

/** A domain record as stored (with its key), in the current format. */
export function serializeDomainRecord(key: string, record: DomainRecord): string {
  return `${JSON.stringify(stamped(FORMATS['domain-record'], { key, ...record }), null, 2)}\n`;
}
