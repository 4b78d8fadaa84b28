import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { addUser, emptyUsers, hasUsers, parseUsers, planUnplug, removeUser, restoreUser, serializeUsers, userNames } from '../../src/users.ts';

const t0 = new Date('2026-01-01T00:00:00Z');
const t1 = new Date('2026-01-02T00:00:00Z');

test('adding, re-adding and removing users', () => {
  let u = emptyUsers();
  assert.not.ok(hasUsers(u));
  u = addUser(u, 'uuid-a', 'a', t0);
  u = addUser(u, 'uuid-b', 'b', t0);
  u = addUser(u, 'uuid-a', 'a', t1); // double prepare keeps the first time
  assert.is(u['uuid-a']?.since, t0.toISOString());
  assert.equal(userNames(u), ['a', 'b']);
  u = removeUser(u, 'uuid-a');
  u = removeUser(u, 'uuid-a'); // double release
  u = removeUser(u, 'never'); // release without prepare
  assert.equal(userNames(u), ['b']);
  u = removeUser(u, 'uuid-b');
  assert.not.ok(hasUsers(u));
});

test('users serialise and parse back', () => {
  const u = addUser(emptyUsers(), 'k', 'vm', t0);
  assert.equal(parseUsers(serializeUsers(u)), u);
  assert.equal(parseUsers('{"version":1}'), {});
});


test('a user keeps the MACs of its NICs; an unplug ends it only after its last known NIC', () => {
  let u = addUser(emptyUsers(), 'k', 'vm', t0, ['52:54:00:00:00:01']);
  u = addUser(u, 'k', 'vm', t1, ['52:54:00:00:00:02', '52:54:00:00:00:01']); // the port-created after a prepare, a hot-plug
  assert.equal(u.k, { name: 'vm', since: t0.toISOString(), macs: ['52:54:00:00:00:01', '52:54:00:00:00:02'] });
  assert.equal(planUnplug(u, 'other', '52:54:00:00:00:01'), { outcome: 'not-a-user' });
  assert.equal(planUnplug(u, 'k', '52:54:00:00:00:09'), { outcome: 'unknown-nic' });
  const first = planUnplug(u, 'k', '52:54:00:00:00:02');
  assert.is(first.outcome, 'still-used');
  if (first.outcome !== 'still-used') return assert.unreachable();
  assert.equal(first.users.k?.macs, ['52:54:00:00:00:01']);
  assert.equal(planUnplug(first.users, 'k', '52:54:00:00:00:01'), { outcome: 'last-nic' });
});

test('MACs are compared in lower case', () => {
  const u = addUser(emptyUsers(), 'k', 'vm', t0, ['52:54:00:AA:00:01']);
  assert.equal(u.k?.macs, ['52:54:00:aa:00:01']);
  assert.equal(planUnplug(u, 'k', '52:54:00:Aa:00:01'), { outcome: 'last-nic' });
});

test("a user whose NICs are unknown stays unknown, and no unplug ends it", () => {
  let u = addUser(emptyUsers(), 'k', 'vm', t0, 'unknown'); // recorded by reconcile, or a NIC without a MAC
  u = addUser(u, 'k', 'vm', t1, ['52:54:00:00:00:01']); // a later hot-plug cannot make the others known
  assert.is(u.k?.macs, undefined);
  assert.equal(planUnplug(u, 'k', '52:54:00:00:00:01'), { outcome: 'unknown-nic' });
  // A file from before MACs were kept reads as unknown.
  const old = parseUsers('{"version":1,"users":{"k":{"name":"vm","since":"2026-01-01T00:00:00.000Z"}}}');
  assert.is(old.k?.macs, undefined);
  assert.equal(planUnplug(old, 'k', '52:54:00:00:00:01'), { outcome: 'unknown-nic' });
  assert.equal(parseUsers(serializeUsers(u)), u);
});

test('restoreUser puts an entry back as it was (a failed start)', () => {
  const before = addUser(emptyUsers(), 'k', 'vm', t0, ['52:54:00:00:00:01']);
  const after = addUser(before, 'k', 'vm', t1, ['52:54:00:00:00:02']);
  assert.equal(restoreUser(after, 'k', before.k), before);
  assert.equal(restoreUser(after, 'k', undefined), {});
});

test.run();
