import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { chooseSink, formatChange } from '../../src/log.ts';

test('domain, network and action first, then the other fields in the order given', () => {
  assert.is(
    formatChange({ devices: ['vxbr42', 'vxlan42'], action: 'created', network: 'tut', domain: 'vm1', mtu: 1450 }),
    'domain=vm1 network=tut action=created devices=vxbr42,vxlan42 mtu=1450',
  );
  assert.is(formatChange({ action: 'user-removed', network: 'tut', domain: 'vm1' }), 'domain=vm1 network=tut action=user-removed');
});

test('undefined fields are left out; booleans, numbers and addresses stay bare', () => {
  assert.is(
    formatChange({ action: 'peers-changed', network: 'n', domain: undefined, added: ['fd00::2', '192.168.8.103'], live: true, removed: undefined }),
    'network=n action=peers-changed added=fd00::2,192.168.8.103 live=true',
  );
});

test('values that are not plain words are quoted and escaped, so a change is always one line', () => {
  const cases: Array<[string, string]> = [
    ['my vm', '"my vm"'],
    ['', '""'],
    ['a=b', '"a=b"'],
    ['say "hi"', '"say \\"hi\\""'],
    ['back\\slash', '"back\\\\slash"'],
    ['two\nlines', '"two\\nlines"'],
    ['tab\there', '"tab\\there"'],
    ['bell\u0007', '"bell\\x07"'],
    ['ünïcode', '"ünïcode"'],
  ];
  for (const [value, want] of cases) {
    const line = formatChange({ action: 'created', domain: value });
    assert.is(line, `domain=${want} action=created`, JSON.stringify(value));
    assert.not.match(line, /[\n\r]/);
  }
});

test('a field name that is not a plain word cannot break the key=value form', () => {
  assert.is(formatChange({ action: 'created', 'odd key=': 'x' }), 'action=created odd_key_=x');
});

test('the sink: off, an explicit file, a test socket, /dev/log, else /var/log/vxvirt.log', () => {
  const devLog = () => true;
  const noDevLog = () => false;
  assert.equal(chooseSink({ VXVIRT_LOG: 'off', VXVIRT_LOG_FILE: '/tmp/x' }, devLog), { kind: 'off' });
  assert.equal(chooseSink({ VXVIRT_LOG_FILE: '/tmp/x' }, devLog), { kind: 'file', path: '/tmp/x' });
  assert.equal(chooseSink({ VXVIRT_SYSLOG_SOCKET: '/tmp/s' }, noDevLog), { kind: 'syslog', socket: '/tmp/s' });
  assert.equal(chooseSink({}, devLog), { kind: 'syslog', socket: '/dev/log' });
  assert.equal(chooseSink({}, noDevLog), { kind: 'file', path: '/var/log/vxvirt.log' });
  assert.equal(chooseSink({ VXVIRT_LOG: '' }, noDevLog), { kind: 'file', path: '/var/log/vxvirt.log' });
});

test.run();
