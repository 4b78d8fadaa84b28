// The CLI as an operator uses it: bad input is one line on stderr with a
// documented status and nothing written; tables and JSON.
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { bridgeNic, domainXml, TestHost } from '../support/netns.ts';

const it = suite<{ host: TestHost }>('cli');
it.before.each((ctx) => {
  ctx.host = new TestHost();
  ctx.host.addUnderlay();
});
it.after.each(({ host }) => host.destroy());

const netDir = (host: TestHost) => join(host.env.VXVIRT_CONFIG_DIR, 'networks');
const files = (host: TestHost) => (existsSync(netDir(host)) ? readdirSync(netDir(host)).sort() : []);

it('bad input: one line naming the option and value, a non-zero status, nothing written', ({ host }) => {
  const cases: Array<[string[], number, RegExp]> = [
    [['--vni', 'abc', '--dev', 'ens47f1', '--remote', '192.168.8.101'], 3, /--vni "abc": must be an integer from 1 to 16777215/],
    [['--vni', '16777216', '--dev', 'ens47f1', '--remote', '192.168.8.101'], 3, /--vni "16777216"/],
    [['--vni', '42', '--dev', 'ens47f1', '--remote', '192.168.8.101', '--group', '239.1.1.1'], 3, /--group "239.1.1.1": cannot be combined with --remote/],
    [['--vni', '42', '--dev', 'ens47f1', '--group', '10.0.0.1'], 3, /--group "10.0.0.1": must be a multicast address/],
    [['--vni', '42', '--dev', 'ens47f1'], 3, /no flooding mode/],
    [['--vni', '42', '--remote', '192.168.8.101'], 2, /--dev is required/],
    [['--vni', '42', '--vni', '43', '--dev', 'ens47f1', '--remote', '192.168.8.101'], 2, /--vni is given 2 times/],
    [['--vni', '42', '--dev', 'ens47f1', '--remote', 'peer.example'], 3, /--remote "peer.example": must be an IPv4 or IPv6 address/],
    [['--vni', '42', '--dev', 'ens47f1', '--remote', '192.168.8.101', '--dstport', '0'], 3, /--dstport "0"/],
    [['--vni', '42', '--dev', 'ens47f1', '--remote', '192.168.8.101', '--bogus'], 2, /Unknown argument: bogus/],
  ];
  for (const [args, status, pattern] of cases) {
    const r = host.vxvirt('define-network', '--no-libvirt', 'net', ...args);
    assert.is(r.status, status, `${args.join(' ')}: ${r.stderr}`);
    assert.is(r.stderr.trim().split('\n').length, 1, `one line for ${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, pattern);
    assert.not.match(r.stderr, /\bat .*\.(js|ts):\d+/, 'no stack trace');
  }
  const badName = host.vxvirt('define-network', '--no-libvirt', '-bad', '--vni', '42', '--dev', 'ens47f1', '--remote', '192.168.8.101');
  assert.is.not(badName.status, 0);
  assert.equal(files(host), []);
});

it('a VNI already in use and a duplicate name are refused; --replace replaces', ({ host }) => {
  assert.is(host.vxvirt('define-network', '--no-libvirt', 'a', '--vni', '42', '--dev', 'ens47f1', '--remote', '192.168.8.101').status, 0);
  const before = readFileSync(join(netDir(host), 'a.json'), 'utf8');
  const clash = host.vxvirt('define-network', '--no-libvirt', 'b', '--vni', '42', '--dev', 'ens47f1', '--remote', '192.168.8.101');
  assert.is(clash.status, 3);
  assert.match(clash.stderr, /--vni 42: already used by network a/);
  const dup = host.vxvirt('define-network', '--no-libvirt', 'a', '--vni', '43', '--dev', 'ens47f1', '--remote', '192.168.8.101');
  assert.match(dup.stderr, /network a is already defined/);
  assert.is(readFileSync(join(netDir(host), 'a.json'), 'utf8'), before);
  assert.is(host.vxvirt('define-network', '--no-libvirt', 'a', '--vni', '43', '--dev', 'ens47f1', '--remote', '192.168.8.101', '--replace').status, 0);
  assert.equal(files(host), ['a.json'], 'no temp files left');
  assert.is(JSON.parse(readFileSync(join(netDir(host), 'a.json'), 'utf8')).vni, 43);
});

it('a stack trace only with VXVIRT_DEBUG=1', ({ host }) => {
  const dbg = host.exec(process.execPath, [new URL('../../dist/cli.js', import.meta.url).pathname, 'define-network', 'x', '--vni', 'abc', '--dev', 'e', '--remote', '1.2.3.4'], '', { VXVIRT_DEBUG: '1' });
  assert.match(dbg.stderr, /DefinitionError: --vni "abc"[\s\S]*\n\s+at /);
});

it('an underlay missing at definition time is a warning, not an error', ({ host }) => {
  const r = host.vxvirt('define-network', '--no-libvirt', 'later', '--vni', '42', '--dev', 'ens9', '--remote', '192.168.8.101');
  assert.is(r.status, 0, r.stderr);
  assert.match(r.stderr, /warning: underlay device ens9 does not exist on this host yet/);
});

it('list-networks and status: tables and JSON', ({ host }) => {
  assert.match(host.vxvirt('list-networks').stdout, /no networks defined/);
  host.vxvirt('define-network', '--no-libvirt', 'tut', '--vni', '42', '--dev', 'ens47f1', '--local', '192.168.8.100', '--remote', '192.168.8.101');
  host.vxvirt('define-network', '--no-libvirt', 'mc', '--vni', '43', '--dev', 'ens47f1', '--group', '239.1.1.1', '--mtu', '1400');
  const list = host.vxvirt('list-networks').stdout;
  assert.match(list, /^NAME\s+VNI\s+MODE\s+DEV\s+LOCAL\s+PEERS\s+PORT\s+MTU\n/);
  assert.match(list, /\nmc\s+43\s+multicast\s+ens47f1\s+auto\s+239\.1\.1\.1\s+4789\s+1400\n/);
  assert.match(list, /\ntut\s+42\s+point-to-point\s+ens47f1\s+192\.168\.8\.100\s+192\.168\.8\.101\s+4789\s+auto\n/);
  const json = JSON.parse(host.vxvirt('list-networks', '--json').stdout);
  assert.equal(json.map((n: { name: string; bridge: string }) => [n.name, n.bridge]), [['mc', 'vxbr43'], ['tut', 'vxbr42']]);

  host.hook('vm1', 'prepare', 'begin', domainXml('vm1', '00000000-0000-4000-8000-000000000001', bridgeNic('vxbr42')));
  const status = host.vxvirt('status').stdout;
  // LIBVIRT: defined with --no-libvirt and libvirt has no network of that name.
  assert.match(status, /^NAME\s+VNI\s+MODE\s+UNDERLAY\s+BRIDGE\s+VXLAN\s+MTU\s+DOMAINS\s+LIBVIRT\n/);
  assert.match(status, /\ntut\s+42\s+point-to-point\s+ens47f1\s+vxbr42 up\s+vxlan42 up\s+1450\s+vm1\s+[-?]\n/);
  assert.match(status, /\nmc\s+43\s+multicast\s+ens47f1\s+vxbr43 absent\s+vxlan43 absent\s+-\s+-\s+[-?]\n/);
  const s = JSON.parse(host.vxvirt('status', '--json').stdout).find((n: { name: string }) => n.name === 'tut');
  assert.equal([s.bridge.exists, s.bridge.mtu, s.vxlan.mtu, s.domains[0].name], [true, 1450, 1450, 'vm1']);
});

it('list-networks and status keep working when one definition is unreadable, and name it', ({ host }) => {
  host.vxvirt('define-network', '--no-libvirt', 'tut', '--vni', '42', '--dev', 'ens47f1', '--remote', '192.168.8.101');
  host.hook('vm1', 'prepare', 'begin', domainXml('vm1', '00000000-0000-4000-8000-000000000001', bridgeNic('vxbr42')));
  writeFileSync(join(netDir(host), 'bad.json'), '{"name": "bad", "vni": 16777216, "dev": "ens47f1", "remotes": ["192.168.8.101"]}');
  const warning = `vxvirt: warning: skipping network bad: ${join(netDir(host), 'bad.json')}: --vni 16777216: must be an integer from 1 to 16777215\n`;
  for (const args of [['list-networks'], ['list-networks', '--json'], ['status'], ['status', '--json']]) {
    const r = host.vxvirt(...args);
    assert.is(r.status, 0, `${args.join(' ')}: ${r.stderr}`);
    assert.is(r.stderr, warning, args.join(' '));
  }
  const status = JSON.parse(host.vxvirt('status', '--json').stdout);
  assert.equal(status.map((n: { name: string; domains: Array<{ name: string }> }) => [n.name, n.domains.map((d) => d.name)]), [['tut', ['vm1']]]);
});

it('generate gives back every byte it does not change, and refuses bytes that are not UTF-8', ({ host }) => {
  host.vxvirt('define-network', '--no-libvirt', 'tut', '--vni', '42', '--dev', 'ens47f1', '--remote', '192.168.8.101');
  const text = `\ufeff<domain type='kvm'>\r\n  <name>café</name>\r\n  <description>€ 😀</description>\r\n  <devices>\r\n    <interface type='network'><source network='default'/></interface>\r\n  </devices>\r\n</domain>\r\n`;
  const file = join(host.dir, 'in.xml');
  writeFileSync(file, text);
  const out = host.vxvirt('generate', '--network', 'tut', file);
  assert.is(out.status, 0, out.stderr);
  assert.ok(out.stdout.startsWith(`\ufeff<domain type='kvm'>\r\n  <name>café</name>\r\n  <description>€ 😀</description>\r\n`), 'BOM, CRLF and non-ASCII text kept');
  // Latin-1 is not UTF-8: refused, not turned into U+FFFD.
  writeFileSync(file, Buffer.from(text.replace('\ufeff', ''), 'latin1'));
  const r = host.vxvirt('generate', '--network', 'tut', file);
  assert.is(r.status, 4);
  assert.is(r.stderr, `vxvirt: ${file} is not valid UTF-8: byte 0xE9 at offset 32\n`);
  assert.is(r.stdout, '');
});

it('undefine-network refuses while in use, removes devices when not', ({ host }) => {
  host.vxvirt('define-network', '--no-libvirt', 'tut', '--vni', '42', '--dev', 'ens47f1', '--remote', '192.168.8.101');
  const xml = domainXml('vm1', '00000000-0000-4000-8000-000000000001', bridgeNic('vxbr42'));
  host.hook('vm1', 'prepare', 'begin', xml);
  assert.ok(host.link('vxbr42') && host.link('vxlan42'), 'the pair exists while vm1 uses it');
  const busy = host.vxvirt('undefine-network', '--no-libvirt', 'tut');
  assert.is(busy.status, 3);
  assert.match(busy.stderr, /network tut is used by vm1: stop them first, or use --force/);
  assert.ok(host.link('vxbr42') && host.link('vxlan42'), 'refused: the pair is left alone');
  assert.equal(files(host), ['tut.json'], 'refused: the definition is kept');
  // The guest stopped but its release was killed before the teardown: the pair is there, unused.
  host.exec('sh', ['-c', `rm -f ${host.env.VXVIRT_STATE_DIR}/users/tut.json`]);
  assert.ok(host.link('vxbr42') && host.link('vxlan42'), 'the unused pair is still there');
  const r = host.vxvirt('undefine-network', '--no-libvirt', 'tut');
  assert.is(r.status, 0, r.stderr);
  assert.is(host.link('vxbr42'), undefined, 'undefine removed the unused bridge');
  assert.is(host.link('vxlan42'), undefined, 'undefine removed the unused vxlan');
  assert.equal(files(host), []);
  const missing = host.vxvirt('undefine-network', '--no-libvirt', 'tut');
  assert.is(missing.status, 8);
  assert.match(missing.stderr, /network tut is not defined/);
});

it('--replace with a new VNI removes the old pair, and is refused while guests use it', ({ host }) => {
  host.vxvirt('define-network', '--no-libvirt', 'tut', '--vni', '42', '--dev', 'ens47f1', '--remote', '192.168.8.101');
  const xml = domainXml('vm1', '00000000-0000-4000-8000-000000000001', bridgeNic('vxbr42'));
  host.hook('vm1', 'prepare', 'begin', xml);
  const busy = host.vxvirt('define-network', '--no-libvirt', 'tut', '--vni', '43', '--dev', 'ens47f1', '--remote', '192.168.8.101', '--replace');
  assert.is(busy.status, 3);
  assert.match(busy.stderr, /--vni 43: network tut is used by vm1 on VNI 42; stop them before changing its VNI/);
  assert.is(JSON.parse(readFileSync(join(netDir(host), 'tut.json'), 'utf8')).vni, 42, 'nothing written');
  // Killed between the guest's stop and its release: the pair is still there, unused.
  host.exec('sh', ['-c', `rm -f ${host.env.VXVIRT_STATE_DIR}/users/tut.json`]);
  const r = host.vxvirt('define-network', '--no-libvirt', 'tut', '--vni', '43', '--dev', 'ens47f1', '--remote', '192.168.8.101', '--replace');
  assert.is(r.status, 0, r.stderr);
  assert.is(host.link('vxbr42'), undefined, 'the old pair is gone');
  assert.is(host.link('vxlan42'), undefined);
});

it.run();
