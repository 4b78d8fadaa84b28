import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { DefinitionError, NewerFormatError } from '../../src/errors.ts';
import {
  bridgeName,
  checkNoConflict,
  floodingMode,
  overlayMtu,
  parseStoredDefinition,
  serializeDefinition,
  shown,
  validateDefinition,
  vxlanName,
  type DefinitionInput,
} from '../../src/network-definition.ts';

const base: DefinitionInput = { name: 'tut', vni: '42', dev: 'ens47f1', remotes: ['192.168.8.101'] };

function rejects(input: DefinitionInput, pattern: RegExp): void {
  try {
    validateDefinition(input);
  } catch (err) {
    assert.instance(err, DefinitionError);
    assert.match((err as Error).message, pattern);
    assert.not.match((err as Error).message, /\n/, 'one line');
    return;
  }
  assert.unreachable(`accepted ${JSON.stringify(input)}`);
}

test('a point-to-point definition is normalised with defaults', () => {
  const def = validateDefinition({ ...base, local: '192.168.8.100' });
  assert.equal(def, { name: 'tut', vni: 42, dev: 'ens47f1', remotes: ['192.168.8.101'], local: '192.168.8.100', dstport: 4789, learning: true });
  assert.is(floodingMode(def), 'point-to-point');
  assert.is(bridgeName(def.vni), 'vxbr42');
  assert.is(vxlanName(def.vni), 'vxlan42');
});

test('modes: several remotes are unicast peers, a group is multicast', () => {
  assert.is(floodingMode(validateDefinition({ ...base, remotes: ['10.0.0.2', '10.0.0.3'] })), 'unicast');
  assert.is(floodingMode(validateDefinition({ ...base, remotes: undefined, group: '239.1.1.1' })), 'multicast');
  assert.is(floodingMode(validateDefinition({ ...base, remotes: undefined, group: 'ff05::1' })), 'multicast');
});

test('VNI range and numeric checks name the option and the range', () => {
  rejects({ ...base, vni: 'abc' }, /--vni "abc": must be an integer from 1 to 16777215/);
  rejects({ ...base, vni: Number.NaN }, /--vni/);
  rejects({ ...base, vni: '0' }, /--vni "0"/);
  rejects({ ...base, vni: '16777216' }, /--vni "16777216"/);
  rejects({ ...base, vni: '4.5' }, /--vni/);
  assert.is(validateDefinition({ ...base, vni: '16777215' }).vni, 16777215);
  rejects({ ...base, dstport: '70000' }, /--dstport "70000": must be an integer from 1 to 65535/);
  rejects({ ...base, mtu: '20' }, /--mtu "20"/);
  rejects({ ...base, ttl: '256' }, /--ttl "256"/);
});

test('names: network and device', () => {
  rejects({ ...base, name: '-x' }, /network name "-x": must match/);
  rejects({ ...base, name: 'a'.repeat(65) }, /network name/);
  rejects({ ...base, name: 'a/b' }, /network name/);
  assert.is(validateDefinition({ ...base, name: 'A1_b.c-d' }).name, 'A1_b.c-d');
  rejects({ ...base, dev: 'a-very-long-ifname' }, /--dev "a-very-long-ifname"/);
  rejects({ ...base, dev: 'eth 0' }, /--dev/);
  rejects({ ...base, dev: undefined }, /--dev/);
});

test('flooding mode: exactly one', () => {
  rejects({ ...base, remotes: [] }, /no flooding mode/);
  rejects({ ...base, group: '239.1.1.1' }, /--group "239.1.1.1": cannot be combined with --remote/);
  rejects({ ...base, remotes: undefined, group: '10.1.1.1' }, /--group "10.1.1.1": must be a multicast address/);
  rejects({ ...base, remotes: ['239.1.1.1'] }, /--remote "239.1.1.1": must be a unicast address/);
  rejects({ ...base, remotes: ['10.0.0.2', '10.0.0.2'] }, /--remote "10.0.0.2": is given more than once/);
  rejects({ ...base, remotes: ['not-an-ip'] }, /--remote "not-an-ip": must be an IPv4 or IPv6 address/);
  rejects({ ...base, remotes: ['0.0.0.0'] }, /--remote "0.0.0.0"/);
});

test('IPv6 addresses are stored as the kernel prints them', () => {
  const def = validateDefinition({ ...base, local: 'FD00:0:0::0001', remotes: ['fd00:0000::2'] });
  assert.equal([def.local, def.remotes], ['fd00::1', ['fd00::2']]);
  assert.is(validateDefinition({ ...base, remotes: undefined, group: 'FF05:0::1' }).group, 'ff05::1');
  rejects({ ...base, remotes: ['fe80::1%eth0'] }, /--remote "fe80::1%eth0": must not carry a zone index/);
  rejects({ ...base, remotes: ['::ffff:192.168.8.101'] }, /IPv4-mapped/);
  rejects({ ...base, remotes: ['::c0a8:865'] }, /--remote "::c0a8:865": is an IPv4-compatible address/);
  rejects({ ...base, remotes: ['::192.168.8.101'] }, /IPv4-compatible/);
  assert.equal(validateDefinition({ ...base, remotes: ['::5'] }).remotes, ['::5']);
  // The same peer spelled twice is still a duplicate.
  rejects({ ...base, remotes: ['fd00::2', 'FD00:0::2'] }, /is given more than once/);
});

test('addresses must be of one family, and local is not a remote', () => {
  rejects({ ...base, local: 'fd00::1' }, /one family/);
  rejects({ ...base, local: '192.168.8.101' }, /--remote "192.168.8.101": is the same as --local/);
});

test('MTU: underlay minus 50 over IPv4, 70 over IPv6; a larger --mtu is refused', () => {
  const v4 = validateDefinition(base);
  assert.is(overlayMtu(v4, 1500), 1450);
  assert.is(overlayMtu(v4, 9000), 8950);
  const v6 = validateDefinition({ ...base, remotes: ['fd00::2'] });
  assert.is(overlayMtu(v6, 1500), 1430);
  assert.is(overlayMtu(validateDefinition({ ...base, mtu: '1400' }), 1500), 1400);
  assert.throws(() => overlayMtu(validateDefinition({ ...base, mtu: '1451' }), 1500), /--mtu 1451 is larger than 1450 \(underlay ens47f1 MTU 1500 minus 50/);
  assert.throws(() => overlayMtu(validateDefinition({ ...base, remotes: ['fd00::2'], mtu: '1450' }), 1500), /larger than 1430/);
});

test('a VNI used by another network is refused', () => {
  const a = validateDefinition(base);
  const b = validateDefinition({ ...base, name: 'other' });
  assert.throws(() => checkNoConflict(b, [a]), /--vni 42: already used by network tut/);
  checkNoConflict(a, [a]); // redefining itself is not a conflict
  checkNoConflict(validateDefinition({ ...base, name: 'c', vni: 43 }), [a]);
});

test('stored definitions round-trip and are validated when read', () => {
  const def = validateDefinition({ ...base, local: '192.168.8.100', ttl: 4, learning: false });
  assert.equal(parseStoredDefinition(serializeDefinition(def), 'x.json'), def);
  assert.throws(() => parseStoredDefinition('{', '/etc/vxvirt/networks/x.json'), /\/etc\/vxvirt\/networks\/x.json: not valid JSON/);
  assert.throws(() => parseStoredDefinition('{"name":"x","vni":0,"dev":"e","remotes":["1.2.3.4"]}', 'f'), /f: --vni 0/);
});

test('device names: what the kernel and `ip -batch` accept, counted in bytes', () => {
  assert.is(validateDefinition({ ...base, dev: 'ééééééé1' }).dev, 'ééééééé1', '15 bytes');
  rejects({ ...base, dev: 'éééééééé' }, /--dev "éééééééé": must be a network interface name of 1 to 15 bytes/);
  for (const dev of ['e#0', '#', '"e0', "'e0", 'e"0', 'a:b', 'a/b', 'a\tb', '', '.', '..']) rejects({ ...base, dev }, /--dev .*: must be a network interface name/);
  assert.is(validateDefinition({ ...base, dev: 'br-lan_2.100@x' }).dev, 'br-lan_2.100@x');
});

test('long values are cut short in messages, control characters escaped', () => {
  rejects({ ...base, name: 'n'.repeat(10_000) }, /^network name "n{64}…" \(10000 characters\): must match /);
  rejects({ ...base, remotes: ['1'.repeat(500)] }, /^--remote "1{64}…" \(500 characters\): must be an IPv4 or IPv6 address$/);
  rejects({ ...base, name: 'a\nb\u0000' }, /^network name "a\\nb\\u0000": must match/);
  assert.is(shown('short'), '"short"');
  assert.is(shown(42), '42');
  assert.is(shown(undefined), 'undefined');
});

test('a stored definition: a later format version is refused (NewerFormatError), a bad one is broken, JSON errors stay one printable line', () => {
  const def = validateDefinition(base);
  const stored = JSON.parse(serializeDefinition(def));
  assert.is(stored.version, 1);
  const { version: _v, ...unversioned } = stored;
  assert.equal(parseStoredDefinition(JSON.stringify(unversioned), 'f'), def, 'a hand-written file without a version is read');
  assert.throws(
    () => parseStoredDefinition(JSON.stringify({ ...stored, version: 2 }), 'f'),
    (err: Error) => err instanceof NewerFormatError && /^f: network definition in format version 2, but this vxvirt \(\S+\) reads version 1 only: .*upgrade vxvirt/.test(err.message),
  );
  for (const version of ['1', 0, null, 1.5]) {
    assert.throws(() => parseStoredDefinition(JSON.stringify({ ...stored, version }), 'f'), new RegExp(`^f: format version ${JSON.stringify(version).replace(/[()[\].]/g, '\\$&')} is not a version number`));
  }
  try {
    parseStoredDefinition('name: tut\nvni: 42\n\u0000', 'f');
    assert.unreachable();
  } catch (err) {
    assert.instance(err, DefinitionError);
    assert.match((err as Error).message, /^f: not valid JSON \(/);
    assert.not.match((err as Error).message, /[\x00-\x1f]/, 'no raw newline or NUL');
  }
});

test('whether a libvirt network is wanted is recorded; files without it (older vxvirt) stay readable; a bad value is refused', () => {
  const base = { name: 'tut', vni: 42, dev: 'ens47f1', remotes: ['192.168.8.101'] };
  for (const libvirt of [true, false]) {
    const def = validateDefinition({ ...base, libvirt });
    assert.is(def.libvirt, libvirt);
    assert.is(JSON.parse(serializeDefinition(def)).libvirt, libvirt);
    assert.equal(parseStoredDefinition(serializeDefinition(def), 'x.json'), def);
  }
  const old = parseStoredDefinition(JSON.stringify({ version: 1, ...base, dstport: 4789, learning: true }), 'old.json');
  assert.not.ok('libvirt' in old, 'not recorded: absent, not guessed');
  assert.throws(() => parseStoredDefinition(JSON.stringify({ ...base, libvirt: 'yes' }), 'f'), /^f: --libvirt "yes": must be true or false$/);
});

test.run();
