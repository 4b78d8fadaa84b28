import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { addUser, emptyUsers, hasUsers, parseUsers, removeUser, serializeUsers, userNames } from '../../src/users.ts';

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

test.run();
