// vxvirt apply and one definition for every host, against real devices: the
// same file applied on two simulated hosts (network namespaces with
// different underlay addresses) gives each, at the hook's prepare, a vxlan
// sending from its own address and flooding to the others but not itself;
// a second apply has nothing to do; what needs new devices is refused while
// in use; --prune, --dry-run and a bad file.
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { bridgeNic, domainXml, TestHost, type Result } from '../support/netns.ts';

const FLEET = ['192.168.8.100', '192.168.8.101', '192.168.8.102'];
const network = (name: string, vni: number, extra: Record<string, unknown> = {}) => ({ name, vni, dev: 'ens47f1', remotes: FLEET, libvirt: false, ...extra });
const FILE = [network('uni', 42), network('mc', 43, { remotes: undefined, group: '239.1.1.43' })];
const vm = (name: string, uuid: string, bridge: string) => domainXml(name, uuid, bridgeNic(bridge));
const vmA = vm('vm-a', '00000000-0000-4000-8000-00000000000a', 'vxbr42');
const vmMc = vm('vm-m', '00000000-0000-4000-8000-00000000000b', 'vxbr43');

const it = suite<{ hosts: TestHost[] }>('apply: one file for every host');
it.before.each((ctx) => {
  ctx.hosts = [];
});
it.after.each((ctx) => {
  for (const h of ctx.hosts) h.destroy();
});

function host(ctx: { hosts: TestHost[] }, address: string): TestHost {
  const h = new TestHost('apply');
  ctx.hosts.push(h);
  h.addUnderlay('ens47f1', `${address}/24`);
  return h;
}

function ok(r: Result, what: string): Result {
  assert.is(r.status, 0, `${what}: exit ${r.status}, stderr: ${r.stderr}`);
  return r;
}

/** Write `content` where the host can read it and apply it. */
function apply(h: TestHost, content: unknown, ...options: string[]): Result {
  const path = join(h.dir, 'fleet.json');
  writeFileSync(path, typeof content === 'string' ? content : JSON.stringify(content, null, 2));
  return h.vxvirt('apply', path, ...options);
}

const definitions = (h: TestHost): Record<string, string> => {
  const dir = join(h.env.VXVIRT_CONFIG_DIR, 'networks');
  let names: string[] = [];
  try {
    names = readdirSync(dir).sort();
  } catch {
    return {};
  }
  return Object.fromEntries(names.map((n) => [n, readFileSync(join(dir, n), 'utf8')]));
};
const floodDsts = (h: TestHost, dev: string) =>
  h
    .fdb(dev)
    .filter((e) => e.mac === '00:00:00:00:00:00')
    .map((e) => e.dst)
    .sort();

it('the same file on two hosts: each vxlan sends from its own underlay address and floods to the others, never to itself', (ctx) => {
  for (const me of ['192.168.8.100', '192.168.8.101']) {
    const h = host(ctx, me);
    ok(apply(h, FILE), `apply on ${me}`);
    // Stored as the file says: no local address.
    assert.is(JSON.parse(definitions(h)['uni.json']!).local, undefined);
    ok(h.hook('vm-a', 'prepare', 'begin', vmA), `prepare on ${me}`);
    ok(h.hook('vm-m', 'prepare', 'begin', vmMc), `prepare (multicast) on ${me}`);
    const uni = h.link('vxlan42')?.linkinfo?.info_data ?? {};
    assert.is(uni.local, me, `vxlan42 on ${me} sends from ${String(uni.local)}`);
    assert.is(uni.remote, undefined);
    assert.equal(floodDsts(h, 'vxlan42'), FLEET.filter((a) => a !== me));
    assert.is(h.link('vxlan43')?.linkinfo?.info_data?.local, me);
    // status, reconcile and check expect the device prepare made.
    const status = JSON.parse(ok(h.vxvirt('status', '--json'), 'status').stdout) as Array<{ name: string; drift: unknown[] }>;
    assert.equal(status.map((n) => [n.name, n.drift]), [['mc', []], ['uni', []]]);
    ok(h.vxvirt('reconcile', '--dry-run', '--no-libvirt'), `reconcile --dry-run on ${me} has nothing to do`);
    assert.match(h.vxvirt('check').stdout, new RegExp(`OK +network uni: local address ${me.replace(/\./g, '\\.')} is assigned on ens47f1 \\(this host's own`));
  }
});

it('a second apply has nothing to do and says so; list-networks --json is a file apply takes as it is', (ctx) => {
  const h = host(ctx, '192.168.8.100');
  ok(apply(h, FILE), 'apply');
  const before = definitions(h);
  const again = ok(apply(h, FILE), 'second apply');
  assert.match(again.stdout, /^nothing to do: 2 networks as in \S+fleet\.json\n$/);
  assert.equal(definitions(h), before);
  const printed = ok(h.vxvirt('list-networks', '--json'), 'list-networks').stdout;
  assert.match(ok(apply(h, printed), 'apply of list-networks --json').stdout, /^nothing to do/);
  const json = JSON.parse(ok(apply(h, FILE, '--json'), 'apply --json').stdout);
  assert.equal([json.nothingToDo, json.steps, json.unchanged], [true, [], ['uni', 'mc']]);
});

it('in use: peers and MTU change in place on the same device; what needs a new device is refused, naming network and field, and nothing changes', (ctx) => {
  const h = host(ctx, '192.168.8.100');
  ok(apply(h, FILE), 'apply');
  ok(h.hook('vm-a', 'prepare', 'begin', vmA), 'prepare');
  const ifindex = h.link('vxlan42')?.ifindex;
  const moved = [network('uni', 42, { remotes: [...FLEET, '192.168.8.103'], mtu: 1400 }), FILE[1]];
  const r = ok(apply(h, moved), 'peers + mtu');
  assert.match(r.stdout, /^changed network uni: --remote .* --mtu auto -> 1400; in use \(by vm-a\): vxlan42 updated in place, 1 flood entry appended, vxbr42, vxlan42 MTU 1400$/m);
  assert.is(h.link('vxlan42')?.ifindex, ifindex, 'the same vxlan device');
  assert.is(h.link('vxlan42')?.mtu, 1400);
  assert.equal(floodDsts(h, 'vxlan42'), ['192.168.8.101', '192.168.8.102', '192.168.8.103']);

  const before = definitions(h);
  const refused = apply(h, [network('uni', 42, { dstport: 8472 }), network('new', 44)]);
  assert.is(refused.status, 3, refused.stderr);
  assert.match(refused.stderr, /^vxvirt: nothing applied: network uni is in use \(by vm-a\) and this change needs a new vxlan device: --dstport 4789 -> 8472/);
  assert.is(refused.stderr.trim().split('\n').length, 1);
  assert.equal(definitions(h), before, 'nothing written, not even the new network');
  assert.is(h.link('vxlan42')?.ifindex, ifindex);
});

it('--prune removes what the file lacks (its devices too), and refuses while guests use it', (ctx) => {
  const h = host(ctx, '192.168.8.100');
  ok(apply(h, FILE), 'apply');
  ok(h.hook('vm-m', 'prepare', 'begin', vmMc), 'prepare on mc');
  const kept = ok(apply(h, [FILE[0]]), 'apply without mc');
  assert.match(kept.stdout, /kept, not in the file: mc; --prune removes them/);
  const refused = apply(h, [FILE[0]], '--prune');
  assert.is(refused.status, 3);
  assert.match(refused.stderr, /network mc is not in the file, but is used by vm-m: not removed \(--prune\); stop them first/);
  assert.ok(definitions(h)['mc.json']);
  ok(h.hook('vm-m', 'release', 'end', vmMc), 'release');
  ok(h.hook('vm-m', 'prepare', 'begin', vmMc), 'prepare again');
  ok(h.hook('vm-m', 'release', 'end', vmMc), 'release again');
  const pruned = ok(apply(h, [FILE[0]], '--prune'), 'prune');
  assert.match(pruned.stdout, /^removed network mc \(VNI 43\)$/m);
  assert.equal(Object.keys(definitions(h)), ['uni.json']);
  assert.is(h.link('vxbr43'), undefined);
});

it('--dry-run prints the plan and changes nothing', (ctx) => {
  const h = host(ctx, '192.168.8.100');
  const r = ok(apply(h, FILE, '--dry-run'), 'dry run');
  assert.is(r.stdout, 'would create network uni: VNI 42 on ens47f1\nwould create network mc: VNI 43 on ens47f1\ndry run: 2 to create, 0 to change, 0 to remove, 0 unchanged; nothing was changed\n');
  assert.equal(definitions(h), {});
  ok(apply(h, FILE), 'apply');
  const before = definitions(h);
  ok(apply(h, [network('uni', 42, { mtu: 1400 })], '--dry-run', '--prune'), 'dry run of a change and a removal');
  assert.equal(definitions(h), before);
});

it('a bad file: one line naming the network and the field, status 3, nothing changed', (ctx) => {
  const h = host(ctx, '192.168.8.100');
  ok(apply(h, FILE), 'apply');
  const before = definitions(h);
  const r = apply(h, [network('uni', 42, { mtu: 1400 }), network('web', 45, { ttl: 300 })]);
  assert.is(r.status, 3);
  assert.is(r.stderr, `vxvirt: ${join(h.dir, 'fleet.json')}: network web: --ttl 300: must be an integer from 1 to 255\n`);
  assert.equal(definitions(h), before, 'the valid change before it was not made either');
  const missing = h.vxvirt('apply', join(h.dir, 'nosuchfile.json'));
  assert.is(missing.status, 2);
  assert.is(missing.stderr, `vxvirt: cannot read ${join(h.dir, 'nosuchfile.json')}: ENOENT\n`);
});

it('an underlay without an address of the family: prepare fails with one line naming the device and the family', (ctx) => {
  const h = host(ctx, '192.168.8.100');
  ok(apply(h, [network('v6', 46, { remotes: ['fd00::1', 'fd00::2'] })]), 'apply');
  const r = h.hook('vm-6', 'prepare', 'begin', vm('vm-6', '00000000-0000-4000-8000-000000000006', 'vxbr46'));
  assert.is.not(r.status, 0);
  assert.is(r.stderr, 'vxvirt: network v6: underlay device ens47f1 has no IPv6 address to send VXLAN packets from: assign one to ens47f1, or define the network with --local\n');
  assert.is(h.link('vxlan46'), undefined);
});

it.run();
