// The hook run exactly as libvirt runs it (through a symlink, libvirt's
// environment, XML on stdin) against real devices in private network namespaces.
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { bridgeNic, domainXml, networkNic, TestHost } from '../support/netns.ts';

const GROUP42 = String(0x76000000 + 42);
const vmA = domainXml('vm-a', '00000000-0000-4000-8000-00000000000a', bridgeNic('vxbr42'));
const vmB = domainXml('vm-b', '00000000-0000-4000-8000-00000000000b', bridgeNic('vxbr42', '52:54:00:00:00:0b'));

interface Ctx {
  host: TestHost;
}
const it = suite<Ctx>('hook');

it.before.each((ctx) => {
  ctx.host = new TestHost();
  ctx.host.addUnderlay();
});
it.after.each((ctx) => ctx.host.destroy());

function done(r: { status: number; stderr: string }, what: string): void {
  assert.is(r.status, 0, `${what}: exit ${r.status}, stderr: ${r.stderr}`);
}

function ok(r: { status: number; stderr: string; stdout: string }, what: string): void {
  assert.is(r.status, 0, `${what}: exit ${r.status}, stderr: ${r.stderr}`);
  assert.is(r.stdout, '', `${what}: the hook prints nothing on stdout`);
}

it('point-to-point: prepare builds the pair as defined, release removes it', ({ host }) => {
  done(host.vxvirt('define-network', '--no-libvirt', 'tut', '--vni', '42', '--dev', 'ens47f1', '--local', '192.168.8.100', '--remote', '192.168.8.101'), "define");
  ok(host.hook('vm-a', 'prepare', 'begin', vmA), 'prepare');
  const vx = host.link('vxlan42');
  const br = host.link('vxbr42');
  assert.ok(vx && br, 'both devices exist');
  assert.is(br.linkinfo?.info_kind, 'bridge');
  assert.equal(
    { kind: vx.linkinfo?.info_kind, ...pick(vx.linkinfo?.info_data, ['id', 'port', 'remote', 'local', 'link', 'learning']) },
    { kind: 'vxlan', id: 42, port: 4789, remote: '192.168.8.101', local: '192.168.8.100', link: 'ens47f1', learning: true },
  );
  assert.is(vx.master, 'vxbr42');
  assert.is(vx.mtu, 1450);
  assert.is(br.mtu, 1450);
  assert.ok(vx.flags.includes('UP') && br.flags.includes('UP'));
  assert.is(vx.group, GROUP42, 'ownership mark');
  assert.is(br.ifalias, 'vxvirt:tut');
  ok(host.hook('vm-a', 'stopped', 'end', vmA), 'stopped');
  ok(host.hook('vm-a', 'release', 'end', vmA), 'release');
  assert.equal(host.linkNames(), ['ens47f1', 'ens47f1p', 'lo']);
});

it('multicast group, ttl, no learning, custom port', ({ host }) => {
  done(host.vxvirt('define-network', '--no-libvirt', 'mc', '--vni', '42', '--dev', 'ens47f1', '--group', '239.1.1.1', '--ttl', '4', '--no-learning', '--dstport', '8472'), 'define');
  ok(host.hook('vm-a', 'prepare', 'begin', vmA), 'prepare');
  const data = host.link('vxlan42')?.linkinfo?.info_data;
  assert.equal(pick(data, ['id', 'group', 'link', 'ttl', 'learning', 'port']), { id: 42, group: '239.1.1.1', link: 'ens47f1', ttl: 4, learning: false, port: 8472 });
  assert.not.ok(data && 'remote' in data);
});

it('unicast peers: one all-zero fdb entry per remote', ({ host }) => {
  done(host.vxvirt('define-network', '--no-libvirt', 'peers', '--vni', '42', '--dev', 'ens47f1', '--local', '192.168.8.100', '--remote', '192.168.8.101', '--remote', '192.168.8.102'), 'define');
  ok(host.hook('vm-a', 'prepare', 'begin', vmA), 'prepare');
  const flood = host.fdb('vxlan42').filter((e) => e.mac === '00:00:00:00:00:00').map((e) => e.dst).sort();
  assert.equal(flood, ['192.168.8.101', '192.168.8.102']);
  assert.not.ok('remote' in (host.link('vxlan42')?.linkinfo?.info_data ?? {}));
  // A second prepare adds no duplicate entries.
  ok(host.hook('vm-a', 'prepare', 'begin', vmA), 'prepare again');
  assert.is(host.fdb('vxlan42').filter((e) => e.mac === '00:00:00:00:00:00').length, 2);
});

it('two domains on one VNI: the pair survives the first release, goes with the last', ({ host }) => {
  done(host.vxvirt('define-network', '--no-libvirt', 'tut', '--vni', '42', '--dev', 'ens47f1', '--remote', '192.168.8.101'), 'define');
  ok(host.hook('vm-a', 'prepare', 'begin', vmA), 'prepare a');
  ok(host.hook('vm-b', 'prepare', 'begin', vmB), 'prepare b');
  ok(host.hook('vm-a', 'release', 'end', vmA), 'release a');
  assert.ok(host.link('vxbr42') && host.link('vxlan42'), 'still there for vm-b');
  const status = JSON.parse(host.vxvirt('status', '--json').stdout);
  assert.equal(status[0].domains.map((d: { name: string }) => d.name), ['vm-b']);
  ok(host.hook('vm-b', 'release', 'end', vmB), 'release b');
  assert.is(host.link('vxbr42'), undefined);
});

it('one domain on several networks, by bridge and by libvirt network name', ({ host }) => {
  done(host.vxvirt('define-network', '--no-libvirt', 'tut', '--vni', '42', '--dev', 'ens47f1', '--remote', '192.168.8.101'), 'define 42');
  done(host.vxvirt('define-network', '--no-libvirt', 'mc', '--vni', '43', '--dev', 'ens47f1', '--group', '239.1.1.1'), 'define 43');
  const xml = domainXml('vm-c', '00000000-0000-4000-8000-00000000000c', `${bridgeNic('vxbr42')}\n${networkNic('mc')}\n${networkNic('default')}`);
  ok(host.hook('vm-c', 'prepare', 'begin', xml), 'prepare');
  assert.ok(host.link('vxbr42') && host.link('vxbr43'));
  // At release libvirt hands over the live XML, where the network NIC reads type='bridge'.
  const live = xml.replace(`<interface type='network'>\n      <source network='mc'/>`, `<interface type='bridge'>\n      <source network='mc' portid='1d0c' bridge='vxbr43'/>`);
  ok(host.hook('vm-c', 'release', 'end', live), 'release');
  assert.equal(host.linkNames(), ['ens47f1', 'ens47f1p', 'lo']);
});

it('double prepare, double release, release without prepare', ({ host }) => {
  done(host.vxvirt('define-network', '--no-libvirt', 'tut', '--vni', '42', '--dev', 'ens47f1', '--remote', '192.168.8.101'), 'define');
  ok(host.hook('vm-a', 'prepare', 'begin', vmA), 'prepare 1');
  const before = [host.link('vxbr42')?.ifindex, host.link('vxlan42')?.ifindex];
  ok(host.hook('vm-a', 'prepare', 'begin', vmA), 'prepare 2');
  assert.equal([host.link('vxbr42')?.ifindex, host.link('vxlan42')?.ifindex], before, 'second prepare left the devices in place');
  ok(host.hook('vm-a', 'release', 'end', vmA), 'release 1');
  ok(host.hook('vm-a', 'release', 'end', vmA), 'release 2');
  ok(host.hook('vm-z', 'release', 'end', domainXml('vm-z', '00000000-0000-4000-8000-0000000000ff', bridgeNic('vxbr42'))), 'release unknown');
  assert.equal(host.linkNames(), ['ens47f1', 'ens47f1p', 'lo']);
});

it('ignored operations exit 0, print nothing and change nothing', ({ host }) => {
  done(host.vxvirt('define-network', '--no-libvirt', 'tut', '--vni', '42', '--dev', 'ens47f1', '--remote', '192.168.8.101'), 'define');
  for (const [op, sub] of [['start', 'begin'], ['started', 'begin'], ['stopped', 'end'], ['migrate', 'begin'], ['restore', 'begin'], ['attach', 'begin'], ['bogus', 'x']]) {
    ok(host.hook('vm-a', op as string, sub as string, vmA), `${op} ${sub}`);
  }
  assert.equal(host.linkNames(), ['ens47f1', 'ens47f1p', 'lo']);
});

it('a domain without vxvirt NICs changes nothing', ({ host }) => {
  done(host.vxvirt('define-network', '--no-libvirt', 'tut', '--vni', '42', '--dev', 'ens47f1', '--remote', '192.168.8.101'), 'define');
  const plain = domainXml('plain', '00000000-0000-4000-8000-000000000001', `${bridgeNic('br0')}\n${networkNic('default')}\n    <interface type='user'/>`);
  ok(host.hook('plain', 'prepare', 'begin', plain), 'prepare');
  ok(host.hook('plain', 'release', 'end', plain), 'release');
  assert.equal(host.linkNames(), ['ens47f1', 'ens47f1p', 'lo']);
});

it('a missing underlay fails prepare with one line naming network and device; nothing is left', ({ host }) => {
  done(host.vxvirt('define-network', '--no-libvirt', 'tut', '--vni', '42', '--dev', 'ens47f1', '--remote', '192.168.8.101'), 'define');
  done(host.vxvirt('define-network', '--no-libvirt', 'lost', '--vni', '44', '--dev', 'ens99', '--remote', '192.168.8.101'), 'define lost');
  const xml = domainXml('vm-l', '00000000-0000-4000-8000-000000000044', `${bridgeNic('vxbr42')}\n${bridgeNic('vxbr44')}`);
  const r = host.hook('vm-l', 'prepare', 'begin', xml);
  assert.is(r.status, 1);
  assert.is(r.stderr.trim().split('\n').length, 1, r.stderr);
  assert.match(r.stderr, /^vxvirt: network lost: underlay device ens99 does not exist on this host/);
  assert.equal(host.linkNames(), ['ens47f1', 'ens47f1p', 'lo'], 'vxbr42 made for the first NIC was rolled back');
  // libvirt then runs stopped and release for the failed start:
  ok(host.hook('vm-l', 'stopped', 'end', xml), 'stopped');
  ok(host.hook('vm-l', 'release', 'end', xml), 'release');
});

it('a hand-made bridge of the same name is refused, named, and survives', ({ host }) => {
  done(host.vxvirt('define-network', '--no-libvirt', 'tut', '--vni', '42', '--dev', 'ens47f1', '--remote', '192.168.8.101'), 'define');
  host.ip('link', 'add', 'vxbr42', 'type', 'bridge');
  const r = host.hook('vm-a', 'prepare', 'begin', vmA);
  assert.is(r.status, 1);
  assert.match(r.stderr, /device vxbr42 already exists and was not created by vxvirt/);
  assert.is(host.link('vxlan42'), undefined, 'no half pair');
  ok(host.hook('vm-a', 'release', 'end', vmA), 'release');
  ok(host.hook('vm-b', 'release', 'end', vmB), 'another release');
  assert.ok(host.link('vxbr42'), 'the hand-made bridge survives');
});

it('a drifted or half-made pair of ours is repaired by the next prepare', ({ host }) => {
  done(host.vxvirt('define-network', '--no-libvirt', 'tut', '--vni', '42', '--dev', 'ens47f1', '--remote', '192.168.8.101'), 'define');
  // As if a run was killed after creating only the bridge:
  host.ip('link', 'add', 'vxbr42', 'group', GROUP42, 'mtu', '1500', 'type', 'bridge');
  ok(host.hook('vm-a', 'prepare', 'begin', vmA), 'prepare over a half pair');
  assert.is(host.link('vxbr42')?.mtu, 1450);
  assert.is(host.link('vxlan42')?.master, 'vxbr42');
  // Someone re-pointed our vxlan elsewhere:
  host.ip('link', 'del', 'vxlan42');
  host.ip('link', 'add', 'vxlan42', 'group', GROUP42, 'type', 'vxlan', 'id', '42', 'dstport', '4789', 'remote', '192.168.8.199', 'dev', 'ens47f1');
  ok(host.hook('vm-b', 'prepare', 'begin', vmB), 'prepare repairs');
  assert.is(host.link('vxlan42')?.linkinfo?.info_data?.remote, '192.168.8.101');
  assert.is(host.link('vxlan42')?.master, 'vxbr42');
  assert.ok(host.link('vxlan42')?.flags.includes('UP'));
});

it('a foreign port keeps the bridge in place at release', ({ host }) => {
  done(host.vxvirt('define-network', '--no-libvirt', 'tut', '--vni', '42', '--dev', 'ens47f1', '--remote', '192.168.8.101'), 'define');
  ok(host.hook('vm-a', 'prepare', 'begin', vmA), 'prepare');
  host.ip('link', 'add', 'vnet9', 'type', 'veth', 'peer', 'name', 'vnet9p');
  host.ip('link', 'set', 'vnet9', 'master', 'vxbr42');
  const r = host.hook('vm-a', 'release', 'end', vmA);
  assert.is(r.status, 0);
  // libvirt does not wait for the release (hooks/qemu runs it in the
  // background): its warning goes to the change log.
  assert.is(r.stderr, '');
  assert.match(readFileSync(host.env.VXVIRT_LOG_FILE, 'utf8'), /domain=vm-a action=warning operation="release end" message="network tut: bridge vxbr42 still has ports vnet9;/);
  assert.ok(host.link('vxbr42'));
});

it('MTU: jumbo and IPv6 underlays, explicit --mtu, and a too-large --mtu', ({ host }) => {
  host.addUnderlay('jumbo0', '192.168.9.1/24', 9000);
  host.addUnderlay('v6u0', '10.9.9.1/24', 1500);
  host.ip('addr', 'add', 'fd00::1/64', 'dev', 'v6u0');
  done(host.vxvirt('define-network', '--no-libvirt', 'j', '--vni', '50', '--dev', 'jumbo0', '--remote', '192.168.9.2'), 'define j');
  done(host.vxvirt('define-network', '--no-libvirt', 'six', '--vni', '51', '--dev', 'v6u0', '--local', 'FD00:0::1', '--remote', 'fd00:0000::2'), 'define six');
  done(host.vxvirt('define-network', '--no-libvirt', 'set', '--vni', '52', '--dev', 'ens47f1', '--remote', '192.168.8.101', '--mtu', '1400'), 'define set');
  const xml = domainXml('m', '00000000-0000-4000-8000-000000000052', ['vxbr50', 'vxbr51', 'vxbr52'].map((b) => bridgeNic(b)).join('\n'));
  ok(host.hook('m', 'prepare', 'begin', xml), 'prepare');
  assert.equal([host.link('vxbr50')?.mtu, host.link('vxlan51')?.mtu, host.link('vxbr52')?.mtu], [8950, 1430, 1400]);
  assert.is(host.link('vxlan51')?.linkinfo?.info_data?.remote6, 'fd00::2');
  // However the addresses were spelled, the device read back matches: a second prepare keeps it.
  const ifindex = host.link('vxlan51')?.ifindex;
  ok(host.hook('m', 'prepare', 'begin', xml), 'prepare again');
  assert.is(host.link('vxlan51')?.ifindex, ifindex);
  const big = host.vxvirt('define-network', '--no-libvirt', 'big', '--vni', '53', '--dev', 'ens47f1', '--remote', '192.168.8.101', '--mtu', '1451');
  assert.is(big.status, 3);
  assert.match(big.stderr, /^vxvirt: network big: --mtu 1451 is larger than 1450/);
});

it('migrate and restore print nothing even for vxvirt domains', ({ host }) => {
  done(host.vxvirt('define-network', '--no-libvirt', 'tut', '--vni', '42', '--dev', 'ens47f1', '--remote', '192.168.8.101'), 'define');
  ok(host.hook('vm-a', 'migrate', 'begin', vmA), 'migrate');
  ok(host.hook('vm-a', 'restore', 'begin', vmA), 'restore');
});

it('reconnect re-records the domain and re-creates a missing pair; never fails', ({ host }) => {
  done(host.vxvirt('define-network', '--no-libvirt', 'tut', '--vni', '42', '--dev', 'ens47f1', '--remote', '192.168.8.101'), 'define');
  ok(host.hook('vm-a', 'reconnect', 'begin', vmA), 'reconnect');
  assert.ok(host.link('vxlan42'));
  assert.equal(JSON.parse(host.vxvirt('status', '--json').stdout)[0].domains.map((d: { name: string }) => d.name), ['vm-a']);
  host.ip('link', 'del', 'ens47f1');
  const r = host.hook('vm-a', 'reconnect', 'begin', vmA);
  assert.is(r.status, 0, 'a failing reconnect must not make libvirt kill the guest');
  assert.match(r.stderr, /vxvirt:/);
});

it('a corrupt definition file stops only guests that may need it', ({ host }) => {
  done(host.vxvirt('define-network', '--no-libvirt', 'tut', '--vni', '42', '--dev', 'ens47f1', '--remote', '192.168.8.101'), 'define');
  host.exec('sh', ['-c', `printf '{"name": "bad", "vni": ' > ${host.env.VXVIRT_CONFIG_DIR}/networks/bad.json`]);
  const plain = domainXml('plain', '00000000-0000-4000-8000-000000000001', networkNic('default'));
  const p = host.hook('plain', 'prepare', 'begin', plain);
  assert.is(p.status, 0, p.stderr);
  assert.is(p.stderr, '', 'a file the guest does not name is not even read');
  const named = host.hook('vm-b', 'prepare', 'begin', domainXml('vm-b', '00000000-0000-4000-8000-000000000002', networkNic('bad')));
  assert.is(named.status, 1, 'a guest on the corrupt network fails');
  assert.match(named.stderr, /^vxvirt: \S+\/networks\/bad.json: not valid JSON/);
  assert.is(host.hook('vm-a', 'prepare', 'begin', vmA).status, 0, 'a guest on a readable network starts');
  const unknown = host.hook('vm-u', 'prepare', 'begin', domainXml('vm-u', '00000000-0000-4000-8000-000000000099', bridgeNic('vxbr99')));
  assert.is(unknown.status, 1, 'vxbr99 might be the corrupt network: refuse with its error');
  assert.match(unknown.stderr, /bad.json: not valid JSON/);
  ok(host.hook('vm-a', 'release', 'end', vmA), 'release');
  assert.is(host.link('vxbr42'), undefined);
});

/** Hand edits that leave a definition unreadable, and the reason prepare gives (after the file's path). */
const corruptions: Array<[string, string, RegExp]> = [
  ['cut short', '{"version": 1, "name": "tut", "vni": 42,', /not valid JSON \(.+\)$/],
  // V8 of Node 20 quotes the text it could not read: the newlines and the NUL must not reach libvirt's
  // one-line error. Node 18's V8 names the position instead.
  ['YAML with a NUL', 'name: tut\nvni: 42\n\u0000', /not valid JSON \((?:.*"name: tut\\nvni: 42\\n\\u0000".*|Unexpected token \S+ in JSON at position \d+)\)$/],
  ['a list', '[]', /must hold a JSON object$/],
  ['wrong types', JSON.stringify({ version: 1, name: 'tut', vni: 42, dev: 'ens47f1', remotes: ['192.168.8.101'], dstport: 4789, learning: 'yes' }), /--learning "yes": must be true or false$/],
  ['VNI out of range', JSON.stringify({ version: 1, name: 'tut', vni: 16777216, dev: 'ens47f1', remotes: ['192.168.8.101'] }), /--vni 16777216: must be an integer from 1 to 16777215$/],
  ['another network\'s name', JSON.stringify({ version: 1, name: 'other', vni: 42, dev: 'ens47f1', remotes: ['192.168.8.101'] }), /holds network "other", not tut$/],
  ['a later format', JSON.stringify({ version: 2, name: 'tut', vni: 42, dev: 'ens47f1', remotes: ['192.168.8.101'] }), /network definition in format version 2, but this vxvirt \(0\.1\.0\) reads version 1 only: a newer vxvirt wrote it; upgrade vxvirt to that version or later \(nothing was changed\)$/],
  ['a format version that is not one', JSON.stringify({ version: '2', name: 'tut', vni: 42, dev: 'ens47f1', remotes: ['192.168.8.101'] }), /format version "2" is not a version number \(a whole number from 1\)$/],
];

it('a definition hand-edited into something unreadable: prepare names the file; release lets the domain go', ({ host }) => {
  done(host.vxvirt('define-network', '--no-libvirt', 'tut', '--vni', '42', '--dev', 'ens47f1', '--remote', '192.168.8.101'), 'define');
  const file = join(host.env.VXVIRT_CONFIG_DIR, 'networks', 'tut.json');
  const good = readFileSync(file, 'utf8');
  const byName = domainXml('vm-n', '00000000-0000-4000-8000-00000000000e', networkNic('tut'));
  for (const [what, text, reason] of corruptions) {
    ok(host.hook('vm-a', 'prepare', 'begin', vmA), `${what}: prepare while the file is good`);
    writeFileSync(file, text);
    // A guest naming the network, and one on vxbrN that no readable definition explains, cannot start.
    for (const [domain, xml] of [['vm-n', byName], ['vm-b', vmB]] as const) {
      const r = host.hook(domain, 'prepare', 'begin', xml);
      assert.is(r.status, 1, `${what}: ${domain}: ${r.stderr}`);
      assert.is(r.stderr.split('\n').length, 2, `${what}: one line: ${JSON.stringify(r.stderr)}`);
      assert.ok(r.stderr.startsWith(`vxvirt: ${file}: `), `${what}: names the file: ${r.stderr}`);
      assert.match(r.stderr.trimEnd(), reason, what);
    }
    // The guest that started before the edit stops: release needs no definition
    // (the domain's record holds each network's VNI), so it forgets the guest
    // and removes the pair nobody uses, silently.
    const r = host.hook('vm-a', 'release', 'end', vmA);
    assert.is(r.status, 0, r.stderr);
    assert.is(r.stderr, '', what);
    assert.equal(jsonFilesUnder(host.env.VXVIRT_STATE_DIR), [], `${what}: no domain is recorded any more`);
    assert.equal(host.linkNames(), ['ens47f1', 'ens47f1p', 'lo'], `${what}: the pair of the unreadable network is gone`);
    writeFileSync(file, good);
  }
});

/** Every *.json file under `dir`, however the state directory is laid out. */
function jsonFilesUnder(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { recursive: true, encoding: 'utf8' }).filter((f) => f.endsWith('.json'));
}

function pick(obj: Record<string, unknown> | undefined, keys: string[]): Record<string, unknown> {
  return Object.fromEntries(keys.map((k) => [k, obj?.[k]]));
}

it.run();
