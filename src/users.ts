// Who uses a network: the domains that `prepare` (or `attach --live`)
// recorded and `release` has not yet removed. Pure: the store reads and writes
// these records under the host lock; deciding "last user left" happens here.

export interface UserRecord {
  /** The domain's name when it was recorded, for humans (`vxvirt status`). */
  name: string;
  since: string;
}

/** Keyed by the domain's UUID (or its name when the XML has no UUID). */
export type Users = Record<string, UserRecord>;

export const emptyUsers = (): Users => ({});

export function addUser(users: Users, key: string, name: string, now: Date): Users {
  const existing = users[key];
  // Keep the original `since` when a domain is recorded again (double prepare, reconnect).
  return { ...users, [key]: { name, since: existing?.since ?? now.toISOString() } };
}

export function removeUser(users: Users, key: string): Users {
  if (!(key in users)) return users;
  const { [key]: _removed, ...rest } = users;
  return rest;
}

export const hasUsers = (users: Users): boolean => Object.keys(users).length > 0;

export function userNames(users: Users): string[] {
  return Object.values(users)
    .map((u) => u.name)
    .sort();
}

export function serializeUsers(users: Users): string {
  return `${JSON.stringify({ version: 1, users }, null, 2)}\n`;
}

export function parseUsers(text: string): Users {
  const raw = JSON.parse(text) as { users?: unknown };
  const out: Users = {};
  if (raw && typeof raw.users === 'object' && raw.users !== null) {
    for (const [key, value] of Object.entries(raw.users as Record<string, unknown>)) {
      const v = value as Partial<UserRecord> | null;
      out[key] = { name: typeof v?.name === 'string' ? v.name : key, since: typeof v?.since === 'string' ? v.since : '' };
    }
  }
  return out;
}
