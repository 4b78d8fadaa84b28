// Format versions of vxvirt's files (formats.ts): what a version-less file
// is, how an older format is converted, how a newer one is refused; and how
// the hook's release behaves when it meets one.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { DefinitionError, NewerFormatError, formatError } from '../../src/errors.ts';
import { currentVersion, FORMATS, readFormat, stamped, versionOf, type Format } from '../../src/formats.ts';
import { ensureForDomain, releaseDomain } from '../../src/lifecycle.ts';
import { validateDefinition } from '../../src/network-definition.ts';
import { parseUsers, serializeUsers, addUser, emptyUsers } from '../../src/users.ts';
import { FakeHost } from '../support/fake-kernel.ts';

/** A format three versions old: v1 {a}, v2 renames a to b, v3 adds c. */
const threeVersions: Format = {
  what: 'test file',
  upgrades: [({ a, ...rest }) => ({ ...rest, b: a }), (raw) => ({ ...raw, c: 'default' })],
};

test('a file without a version is version 1; a version must be a whole number from 1', () => {
  assert.is(versionOf({}, 'f'), 1);
  assert.is(versionOf({ version: 1 }, 'f'), 1);
  assert.is(versionOf({ version: 7 }, 'f'), 7);
  for (const version of ['1', 0, -1, 1.5, null, true, [1], 2 ** 60]) {
    assert.throws(
      () => versionOf({ version }, '/etc/vxvirt/networks/x.json'),
      (err: Error) => err instanceof DefinitionError && /^\/etc\/vxvirt\/networks\/x.json: format version .* is not a version number/.test(err.message),
      JSON.stringify(version),
    );
  }
});

test('this vxvirt writes and reads version 1 of every file', () => {
  for (const [kind, format] of Object.entries(FORMATS)) {
    assert.is(currentVersion(format), 1, kind);
    assert.equal(readFormat({ x: 1 }, 'f', format), { raw: { x: 1 }, from: 1 }, `${kind}: a version-less file is read as it is`);
    assert.equal(Object.keys(stamped(format, { x: 1 })), ['version', 'x'], 'the version goes first');
  }
});

test('an older format is converted step by step to the current one; the current one is read as it is', () => {
  assert.is(currentVersion(threeVersions), 3);
  assert.equal(readFormat({ a: 1 }, 'f', threeVersions), { raw: { b: 1, c: 'default', version: 3 }, from: 1 });
  assert.equal(readFormat({ version: 2, b: 2 }, 'f', threeVersions), { raw: { version: 3, b: 2, c: 'default' }, from: 2 });
  const current = { version: 3, b: 3, c: 'set' };
  assert.equal(readFormat(current, 'f', threeVersions), { raw: current, from: 3 });
  assert.equal(current, { version: 3, b: 3, c: 'set' }, 'the input is not changed');
});

test('a newer format is refused with one line: the file, its version, the versions read, upgrade vxvirt', () => {
  const cases: Array<[Format, string]> = [
    [FORMATS.users, 'version 1'],
    [{ what: 'x', upgrades: [(r) => r] }, 'versions 1 and 2'],
    [threeVersions, 'versions 1 to 3'],
  ];
  for (const [format, reads] of cases) {
    const next = currentVersion(format) + 1;
    try {
      readFormat({ version: next }, '/run/vxvirt/users/tut.json', format);
      assert.unreachable();
    } catch (err) {
      assert.instance(err, NewerFormatError);
      assert.is((err as NewerFormatError).exitCode, 12);
      const line = formatError(err, false);
      assert.match(line, `/run/vxvirt/users/tut.json: ${format.what} in format version ${next}, but this vxvirt (`);
      assert.match(line, `) reads ${reads} only: a newer vxvirt wrote it; upgrade vxvirt`);
      assert.not.match(line, /\n/);
    }
  }
});

test('users files: version 1 with or without the field is read, a newer one refused naming the file', () => {
  const users = addUser(emptyUsers(), 'k', 'vm', new Date('2026-01-01T00:00:00Z'), ['52:54:00:00:00:01']);
  const text = serializeUsers(users);
  assert.is(JSON.parse(text).version, 1);
  assert.equal(parseUsers(text, 'u.json'), users);
  const { version: _v, ...unversioned } = JSON.parse(text);
  assert.equal(parseUsers(JSON.stringify(unversioned), 'u.json'), users);
  assert.throws(() => parseUsers(JSON.stringify({ ...unversioned, version: 2 }), 'u.json'), (err: Error) => err instanceof NewerFormatError && err.message.startsWith('u.json: users state file in format version 2'));
  assert.throws(() => parseUsers('[]', 'u.json'), /^u.json: must hold a JSON object$/);
});

const tut = validateDefinition({ name: 'tut', vni: 42, dev: 'ens47f1', remotes: ['192.168.8.101'] });
const newer = () => new NewerFormatError('/run/vxvirt/releasing/x.json: domain record in format version 2 …');

test('release beside a pending release in a newer format: journals the stop, deletes nothing, says why', async () => {
  const h = new FakeHost().addUnderlay('ens47f1');
  await ensureForDomain({ key: 'a', name: 'a' }, [tut], h.effects());
  const fx = { ...h.effects(), pendingReleases: () => { throw newer(); } };
  try {
    await releaseDomain('a', fx);
    assert.unreachable();
  } catch (err) {
    assert.instance(err, NewerFormatError);
  }
  assert.equal(h.names(), ['ens47f1', 'vxbr42', 'vxlan42'], 'the pair stays: this vxvirt cannot tell who else uses it');
  assert.equal(Object.keys(h.users.get('tut') ?? {}), ['a'], 'users unchanged');
  assert.ok(h.releasing.has('a') && !h.domains.has('a'), 'the stop is journaled in releasing/');
  // A vxvirt that reads the format finishes it at its next run: nothing leaks.
  await releaseDomain('other', h.effects());
  assert.equal(h.names(), ['ens47f1']);
  assert.is(h.users.size, 0);
  assert.is(h.releasing.size, 0);
});

test("release whose own users file is newer: journaled, the pair kept, finished by the next run that reads it", async () => {
  const h = new FakeHost().addUnderlay('ens47f1');
  await ensureForDomain({ key: 'a', name: 'a' }, [tut], h.effects());
  const fx = { ...h.effects(), readUsers: () => { throw newer(); } };
  await releaseDomain('a', fx).then(() => assert.unreachable(), (err) => assert.instance(err, NewerFormatError));
  assert.equal(h.names(), ['ens47f1', 'vxbr42', 'vxlan42']);
  assert.ok(h.releasing.has('a'));
  await releaseDomain('other', h.effects());
  assert.equal(h.names(), ['ens47f1']);
  assert.is(h.releasing.size, 0);
});

test('prepare that meets a newer format fails and changes nothing', async () => {
  const h = new FakeHost().addUnderlay('ens47f1');
  const fx = { ...h.effects(), readUsers: () => { throw newer(); } };
  await ensureForDomain({ key: 'a', name: 'a' }, [tut], fx).then(() => assert.unreachable(), (err) => assert.instance(err, NewerFormatError));
  assert.equal(h.names(), ['ens47f1'], 'no device left');
  assert.is(h.domains.size + h.users.size + h.releasing.size, 0, 'no record left');
});

test.run();
