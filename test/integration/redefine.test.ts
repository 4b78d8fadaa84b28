// set-peers and redefine against real devices: a network in use is changed
// in place (the kernel's own fdb events show that the peers that stay are
// never touched), refused changes write nothing, an unused network is only
// rewritten.
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { bridgeNic, domainXml, TestHost, type Result } from '../support/netns.ts';

const P1 = '192.168.8.101';
const P2 = '192.168.8.102';
const P3 = '192.168.8.103';
const P4 = '192.168.8.104';
const vmA = domainXml('vm-a', '00000000-0000-4000-8000-00000000000a', bridgeNic('vxbr42'));

const it = suite<{ host: TestHost; monitor?: ChildProcess }>('set-peers and redefine');
it.before.each((ctx) => {
  ctx.host = new TestHost();
  ctx.host.addUnderlay();
});
it.after.each((ctx) => {
  ctx.monitor?.kill();
  ctx.host.destroy();
});

function ok(r: Result, what: string): Result {
  assert.is(r.status, 0, `${what}: exit ${r.status}, stderr: ${r.stderr}`);
  return r;
}

const definitionFile = (host: TestHost, name: string) => join(host.env.VXVIRT_CONFIG_DIR, 'networks', `${name}.json`);
const floodDsts = (host: TestHost) =>
  host
    .fdb('vxlan42')
    .filter((e) => e.mac === '00:00:00:00:00:00')
    .map((e) => e.dst)
    .sort();

function defineUnicast(host: TestHost, ...remotes: string[]): void {
  ok(host.vxvirt('define-network', '--no-libvirt', 'uni', '--vni', '42', '--dev', 'ens47f1', '--local', '192.168.8.100', ...remotes.flatMap((r) => ['--remote', r])), 'define');
}

/** `bridge monitor fdb` in the host's namespace, its output collected line by line. */
function monitorFdb(host: TestHost): { child: ChildProcess; lines: string[]; waitFor(re: RegExp): Promise<void> } {
  const child = spawn('ip', ['netns', 'exec', host.ns, 'bridge', 'monitor', 'fdb'], { stdio: ['ignore', 'pipe', 'inherit'] });
  const lines: string[] = [];
  let partial = '';
  child.stdout!.setEncoding('utf8').on('data', (d: string) => {
    const parts = (partial + d).split('\n');
    partial = parts.pop() ?? '';
    lines.push(...parts);
  });
  const waitFor = async (re: RegExp): Promise<void> => {
    const deadline = Date.now() + 10_000;
    while (!lines.some((l) => re.test(l))) {
      if (Date.now() > deadline) throw new Error(`bridge monitor fdb never printed ${re}; got:\n${lines.join('\n')}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  };
  return { child, lines, waitFor };
}

/**
 * Add and delete a throwaway fdb entry and wait until the monitor has printed
 * its deletion: the monitor is listening, and every event before it is in.
 */
async function fence(host: TestHost, monitor: ReturnType<typeof monitorFdb>, mac: string): Promise<void> {
  host.exec('bridge', ['fdb', 'add', mac, 'dev', 'vxlan42', 'dst', '192.0.2.1', 'self', 'permanent']);
  host.exec('bridge', ['fdb', 'del', mac, 'dev', 'vxlan42', 'dst', '192.0.2.1', 'self']);
  await monitor.waitFor(new RegExp(`^Deleted ${mac} dev vxlan42`));
}

it('set-peers on a network in use: the changed peers change in place, the kept peer is never touched', async (ctx) => {
  const { host } = ctx;
  defineUnicast(host, P1, P2);
  ok(host.hook('vm-a', 'prepare', 'begin', vmA), 'prepare');
  assert.equal(floodDsts(host), [P1, P2]);
  const ifindex = [host.link('vxbr42')?.ifindex, host.link('vxlan42')?.ifindex];

  const monitor = monitorFdb(host);
  ctx.monitor = monitor.child;
  await fence(host, monitor, '02:00:00:00:00:01');
  const before = monitor.lines.length;
  const r = ok(host.vxvirt('set-peers', 'uni', '--remote', P1, '--remote', P3, '--remote', P4), 'set-peers');
  await fence(host, monitor, '02:00:00:00:00:02');
  const events = monitor.lines.slice(before).filter((l) => !/02:00:00:00:00:0[12]/.test(l));

  assert.equal(floodDsts(host), [P1, P3, P4], 'exactly the new peers');
  assert.equal([host.link('vxbr42')?.ifindex, host.link('vxlan42')?.ifindex], ifindex, 'same devices');
  // The kernel's own account of the change: P3 and P4 appended, P2 deleted, nothing about P1.
  const flood = (dst: string) => new RegExp(`^00:00:00:00:00:00 dev vxlan42 dst ${dst.replace(/\./g, '\\.')} self permanent`);
  const deleted = (dst: string) => new RegExp(`^Deleted 00:00:00:00:00:00 dev vxlan42 dst ${dst.replace(/\./g, '\\.')} `);
  assert.ok(events.some((l) => flood(P3).test(l)) && events.some((l) => flood(P4).test(l)), `P3, P4 appended:\n${events.join('\n')}`);
  assert.ok(events.some((l) => deleted(P2).test(l)), `P2 deleted (the monitor does report deletions):\n${events.join('\n')}`);
  assert.not.ok(events.some((l) => l.includes(`dst ${P1} `)), `no event for the kept peer ${P1}:\n${events.join('\n')}`);
  assert.is(events.length, 3, `three events, nothing else:\n${events.join('\n')}`);

  assert.is(
    r.stdout,
    `network uni: peers ${P1}, ${P3}, ${P4} (added ${P3}, ${P4}; removed ${P2}); in use (by vm-a): vxlan42 updated in place, 2 flood entries appended, 1 deleted\n`,
  );
  assert.equal(JSON.parse(readFileSync(definitionFile(host, 'uni'), 'utf8')).remotes, [P1, P3, P4]);
  const status = JSON.parse(host.vxvirt('status', '--json').stdout);
  assert.equal(status[0].domains.map((d: { name: string }) => d.name), ['vm-a'], 'the user record is untouched');
  const log = readFileSync(host.env.VXVIRT_LOG_FILE, 'utf8');
  assert.match(
    log,
    // The hook logged its own lines (pair created, user added) before; set-peers adds exactly this one.
    new RegExp(`^\\S+Z vxvirt\\[\\d+\\]: network=uni action=peers-changed command=set-peers peers=${P1},${P3},${P4} added=${P3},${P4} removed=${P2} devices=vxbr42,vxlan42 live=true$`.replace(/\./g, '\\.'), 'm'),
  );
  // The next prepare (another guest) finds nothing to change.
  ok(host.hook('vm-b', 'prepare', 'begin', domainXml('vm-b', '00000000-0000-4000-8000-00000000000b', bridgeNic('vxbr42', '52:54:00:00:00:0b'))), 'prepare b');
  assert.is(host.link('vxlan42')?.ifindex, ifindex[1]);
  assert.equal(floodDsts(host), [P1, P3, P4]);
});

it('refused while in use: one line naming each field and why, status 3, the file byte-identical, devices untouched', ({ host }) => {
  defineUnicast(host, P1, P2);
  ok(host.hook('vm-a', 'prepare', 'begin', vmA), 'prepare');
  const file = definitionFile(host, 'uni');
  const stored = readFileSync(file);
  const ifindex = host.link('vxlan42')?.ifindex;
  const cases: Array<[string[], RegExp]> = [
    [['set-peers', 'uni', '--remote', P1], /in use \(by vm-a\) and this change needs a new vxlan device: flooding mode unicast \(.*\) -> point-to-point \(192\.168\.8\.101\) \(one --remote is an attribute of the vxlan device, several are entries of its forwarding table\); stop the guests, or use define-network --replace when nothing uses it$/],
    [
      ['redefine', 'uni', '--vni', '42', '--dev', 'ens47f1', '--local', '192.168.8.100', '--remote', P1, '--remote', P3, '--dstport', '8472', '--ttl', '4'],
      /these changes need a new vxlan device: --dstport 4789 -> 8472, --ttl none -> 4 \(fixed when the kernel creates the vxlan device\)/,
    ],
    [['redefine', 'uni', '--vni', '42', '--dev', 'ens47f1', '--group', '239.1.1.1'], /--local 192\.168\.8\.100 -> none .*flooding mode unicast .* -> multicast \(239\.1\.1\.1\)/],
    [['redefine', 'uni', '--vni', '43', '--dev', 'ens47f1', '--local', '192.168.8.100', '--remote', P1, '--remote', P2], /--vni 42 -> 43 is not a change in place: .*vxbr42 -> vxbr43.*define-network --replace/],
    [['set-peers', 'uni', '--remote', P1, '--remote', '192.168.8.100'], /--remote "192\.168\.8\.100": is the same as --local/],
    [['set-peers', 'uni', '--remote', P1, '--remote', 'fd00::1'], /all addresses must be of one family/],
    [['redefine', 'uni', '--vni', '42', '--dev', 'ens47f1', '--local', '192.168.8.100', '--remote', P1, '--remote', P2, '--mtu', '1451'], /--mtu 1451 is larger than 1450/],
  ];
  for (const [args, pattern] of cases) {
    const r = host.vxvirt(...args);
    assert.is(r.status, 3, `${args.join(' ')}: ${r.stderr}`);
    assert.is(r.stderr.trim().split('\n').length, 1, `one line: ${r.stderr}`);
    assert.match(r.stderr, /^vxvirt: /);
    assert.match(r.stderr.trim(), pattern);
    assert.is(r.stdout, '');
  }
  assert.ok(readFileSync(file).equals(stored), 'definition byte-identical');
  assert.is(host.link('vxlan42')?.ifindex, ifindex);
  assert.equal(floodDsts(host), [P1, P2]);
  const missing = host.vxvirt('set-peers', 'nosuch', '--remote', P1, '--remote', P2);
  assert.is(missing.status, 8, missing.stderr);
  assert.match(missing.stderr, /network nosuch is not defined/);
  const noRemote = host.vxvirt('set-peers', 'uni');
  assert.is(noRemote.status, 2);
  assert.match(noRemote.stderr, /--remote is required/);
});

it('set-peers on a multicast network is refused: it has no peers', ({ host }) => {
  ok(host.vxvirt('define-network', '--no-libvirt', 'mc', '--vni', '42', '--dev', 'ens47f1', '--group', '239.1.1.1'), 'define');
  const stored = readFileSync(definitionFile(host, 'mc'));
  const r = host.vxvirt('set-peers', 'mc', '--remote', P1, '--remote', P2);
  assert.is(r.status, 3);
  assert.match(r.stderr, /network mc floods to multicast group 239\.1\.1\.1, it has no peers: change its flooding mode with redefine/);
  assert.ok(readFileSync(definitionFile(host, 'mc')).equals(stored));
});

it('a network not in use: any change is only written, no device is created', ({ host }) => {
  ok(host.vxvirt('define-network', '--no-libvirt', 'uni', '--vni', '42', '--dev', 'ens47f1', '--remote', P1), 'define point-to-point');
  const r = ok(host.vxvirt('set-peers', 'uni', '--remote', P1, '--remote', P2), 'to unicast');
  assert.is(r.stdout, `network uni: flooding mode point-to-point (${P1}) -> unicast (${P1},${P2}); not in use on this host: no devices changed\n`);
  ok(host.vxvirt('redefine', 'uni', '--vni', '42', '--dev', 'ens47f1', '--remote', P1, '--remote', P3, '--dstport', '8472', '--no-learning'), 'redefine');
  const def = JSON.parse(readFileSync(definitionFile(host, 'uni'), 'utf8'));
  assert.equal([def.remotes, def.dstport, def.learning], [[P1, P3], 8472, false]);
  assert.equal(host.linkNames(), ['ens47f1', 'ens47f1p', 'lo']);
  assert.match(readFileSync(host.env.VXVIRT_LOG_FILE, 'utf8'), /action=redefined command=redefine changed=remote,dstport,learning .*live=false\n$/);
  // Unchanged: nothing written, nothing logged.
  const logBefore = readFileSync(host.env.VXVIRT_LOG_FILE, 'utf8');
  assert.is(ok(host.vxvirt('set-peers', 'uni', '--remote', P1, '--remote', P3), 'same peers').stdout, `network uni: peers unchanged (${P1}, ${P3})\n`);
  assert.is(readFileSync(host.env.VXVIRT_LOG_FILE, 'utf8'), logBefore);
  // The next guest gets devices made from the new definition.
  ok(host.hook('vm-a', 'prepare', 'begin', vmA), 'prepare');
  assert.equal(floodDsts(host), [P1, P3]);
  assert.is(host.link('vxlan42')?.linkinfo?.info_data?.port, 8472);
});

it('redefine --mtu on a network in use: both devices take it in place; lowering warns about running guests', ({ host }) => {
  defineUnicast(host, P1, P2);
  ok(host.hook('vm-a', 'prepare', 'begin', vmA), 'prepare');
  const ifindex = [host.link('vxbr42')?.ifindex, host.link('vxlan42')?.ifindex];
  const args = ['redefine', 'uni', '--vni', '42', '--dev', 'ens47f1', '--local', '192.168.8.100', '--remote', P1, '--remote', P2];
  const lower = ok(host.vxvirt(...args, '--mtu', '1400'), 'lower');
  assert.is(lower.stdout, 'network uni: --mtu auto -> 1400; in use (by vm-a): vxlan42 updated in place, vxbr42, vxlan42 MTU 1400\n');
  assert.match(lower.stderr, /^vxvirt: warning: network uni: overlay MTU 1450 -> 1400 while guests use it: their NICs keep MTU 1450/);
  assert.equal([host.link('vxbr42')?.mtu, host.link('vxlan42')?.mtu], [1400, 1400]);
  const raise = ok(host.vxvirt(...args), 'back to auto');
  assert.is(raise.stderr, '');
  assert.equal([host.link('vxbr42')?.mtu, host.link('vxlan42')?.mtu], [1450, 1450]);
  assert.equal([host.link('vxbr42')?.ifindex, host.link('vxlan42')?.ifindex], ifindex);
});

it('a live update that fails puts the old definition back', ({ host }) => {
  defineUnicast(host, P1, P2);
  ok(host.hook('vm-a', 'prepare', 'begin', vmA), 'prepare');
  const file = definitionFile(host, 'uni');
  const stored = readFileSync(file);
  // The underlay goes away (the kernel takes the vxlan with it); vm-a is still recorded.
  host.ip('link', 'del', 'ens47f1');
  const r = host.vxvirt('set-peers', 'uni', '--remote', P1, '--remote', P3);
  assert.is(r.status, 3, r.stderr);
  assert.match(r.stderr, /vxvirt: network uni: underlay device ens47f1 does not exist on this host \(--dev ens47f1\); the definition is left as it was\n$/);
  assert.ok(readFileSync(file).equals(stored), 'definition restored byte for byte');
});

it.run();
