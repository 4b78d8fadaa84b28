// Hostile and broken input to the hook (as libvirt runs it) and the CLI, as
// real processes in a private /tmp (support/confined.ts). Whatever comes in:
// the process ends within 10 s, stays under MEMORY_LIMIT_MIB, answers with the
// documented status and at most one line on stderr (no stack trace), never
// runs a shell on a name, and writes no file outside the config and state
// dirs (the CLI, refusing, writes none at all). `release` and `reconnect`
// always exit 0: libvirt ignores a failed release, and a failed reconnect
// kills the running guest.
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { changes, listing, runConfined, WORKSPACE_PARENT, type Confined } from '../support/confined.ts';
import { bridgeNic, domainXml, networkNic, repo, TestHost } from '../support/netns.ts';
import { escapeAttribute, escapeText } from '../../src/xml.ts';

const MEMORY_LIMIT_MIB = 512;
const LIMIT_SECONDS = 10;
const UUID = '00000000-0000-4000-8000-0000000000f0';
const BASE_LINKS = ['ens47f1', 'ens47f1p', 'lo'];
const STACK_LINE = /^\s+at .*[(:]\d+/m;

interface Ctx {
  host: TestHost;
  /** Files a shell running on a name would create: none may ever exist. */
  canary: string;
}
const it = suite<Ctx>('hostile input');

it.before((ctx) => {
  ctx.host = new TestHost('fuzz', WORKSPACE_PARENT);
  ctx.host.addUnderlay();
  ctx.canary = join(ctx.host.dir, 'canary');
  mkdirSync(ctx.canary);
  // With a network defined, hooks/qemu hands every domain naming a bridge or network to node.
  const r = ctx.host.vxvirt('define-network', '--no-libvirt', 'tut', '--vni', '42', '--dev', 'ens47f1', '--remote', '192.168.8.101');
  assert.is(r.status, 0, r.stderr);
});
it.after((ctx) => ctx.host.destroy());

/** The rows printed at the end: case, operation, status, stderr, time, peak memory. */
const rows: string[] = [];
function record(what: string, r: Confined): void {
  const line = r.stderr.trim().split('\n')[0] ?? '';
  rows.push(`${what.padEnd(48)} exit ${r.status}  ${r.seconds.toFixed(2)} s  ${(r.peakKiB / 1024).toFixed(0).padStart(4)} MiB  ${line.length > 110 ? `${line.slice(0, 110)}…` : line}`);
}

/** What a run must look like: its status, and its one stderr line (none when undefined). */
interface Expect {
  status: number;
  line?: RegExp;
}

/** Every way a run went wrong, so that one test run lists all of them. */
const problems: string[] = [];
const expect = (ok: boolean, what: string): void => {
  if (!ok) problems.push(what);
};
function reportProblems(): void {
  const found = problems.splice(0);
  assert.is(found.length, 0, `\n${found.join('\n')}`);
}

function check(ctx: Ctx, what: string, r: Confined, want: Expect, before: Map<string, string>, allowState: boolean): void {
  record(what, r);
  const lines = r.stderr.split('\n');
  expect(!r.timedOut, `${what}: killed after ${LIMIT_SECONDS} s`);
  expect(r.peakKiB / 1024 < MEMORY_LIMIT_MIB, `${what}: peak RSS ${(r.peakKiB / 1024).toFixed(0)} MiB`);
  expect(r.status === want.status, `${what}: exit ${r.status}, not ${want.status}; stderr: ${r.stderr.slice(0, 300)}`);
  expect(r.stdout === '', `${what}: printed on stdout`);
  expect(!STACK_LINE.test(r.stderr), `${what}: a stack trace`);
  if (want.line) {
    expect(lines.length === 2 && lines[0]!.startsWith('vxvirt: ') && want.line.test(r.stderr), `${what}: stderr is not one line matching ${want.line}: ${r.stderr.slice(0, 300)}`);
  } else {
    expect(r.stderr === '', `${what}: unexpected stderr: ${r.stderr.slice(0, 300)}`);
  }
  expect(r.tempFiles.length === 0, `${what}: left ${r.tempFiles.join(', ')} in /tmp, /dev/shm, HOME or the working directory`);
  const changed = changes(before, listing(ctx.host.dir, ['probe']));
  const outside = changed.filter((c) => !(allowState && (c.slice(1).startsWith('run') || c.slice(1) === 'vxvirt.log')));
  expect(outside.length === 0, `${what}: wrote ${outside.join(', ')}`);
}

// ---- the hook -----------------------------------------------------------------

interface HookCase {
  name: string;
  /** The DOMAIN argument libvirt passes (the domain's name). */
  domain?: string;
  xml: string | Buffer;
  prepare: Expect;
  /**
   * Default: exit 0, silent — the domain's UUID is readable in the first
   * 4 KiB and it was never recorded, so hooks/qemu ends without node.
   */
  release?: Expect;
  reconnect?: Expect;
  /** A NIC on vxbr42 that prepare makes (and release removes) the pair for. */
  builds?: boolean;
}

const nic42 = bridgeNic('vxbr42');
const xmlOf = (name: string, nics = nic42, extra = '') =>
  domainXml(escapeText(name), UUID, nics).replace('  <devices>', `${extra}  <devices>`);
const notXml = (reason: RegExp): Expect => ({ status: 1, line: reason });

const metachars = (c: string) =>
  `$(touch ${c}/subst) \`touch ${c}/tick\`; touch ${c}/semi ' ; touch ${c}/squote ; ' " ; touch ${c}/dquote ; " | touch ${c}/pipe && touch ${c}/and\ntouch ${c}/newline $(touch relative)`;

function hookCases(canary: string): HookCase[] {
  const laughs = [
    '<?xml version="1.0"?>',
    '<!DOCTYPE domain [',
    '  <!ENTITY lol "lol">',
    ...Array.from({ length: 9 }, (_, i) => `  <!ENTITY lol${i + 1} "${`&lol${i || ''};`.repeat(10)}">`),
    ']>',
  ].join('\n');
  const complete = xmlOf('trunc');
  // The densest document just under the cap: two million empty elements.
  const denseFrame = xmlOf('dense', nic42, '  <metadata></metadata>\n');
  const dense = xmlOf('dense', nic42, `  <metadata>${'<a/>'.repeat(Math.floor((8 * 1024 * 1024 - denseFrame.length) / 4))}</metadata>\n`);
  const badAt = xmlOf('bad').indexOf('bad') + 1;
  return [
    { name: 'empty stdin', xml: '', prepare: { status: 0 }, release: { status: 0, line: /domain XML is not well-formed: line 1 column 1: no root element/ } },
    { name: 'not XML', xml: "this is not XML but names bridge='vxbr42'", prepare: notXml(/domain XML is not well-formed: line 1 column 1: text is not allowed outside the root element/), release: { status: 0, line: /domain XML is not well-formed: line 1 column 1: text is not allowed outside the root element/ } },
    { name: 'truncated XML', xml: complete.slice(0, complete.indexOf("bridge='vxbr42'/>") + 17), prepare: notXml(/domain XML is not well-formed: line \d+ column \d+: <interface> is not closed/) },
    { name: 'billion laughs (DOCTYPE with entities)', xml: `${laughs}\n${xmlOf('&lol9;').replace('&amp;lol9;', '&lol9;')}`, prepare: notXml(/line 2 column 1: a DOCTYPE is not supported in domain XML/) },
    {
      name: 'external entity (XXE)',
      xml: `<!DOCTYPE domain [<!ENTITY x SYSTEM "file:///etc/shadow">]>\n${xmlOf('x').replace('<name>x</name>', '<name>&x;</name>')}`,
      prepare: notXml(/line 1 column 1: a DOCTYPE is not supported/),
    },
    { name: 'entity reference without a DTD', xml: xmlOf('x').replace('<name>x</name>', '<name>&lol9;</name>'), prepare: notXml(/unknown entity &lol9; \(only &lt; &gt; &amp; &quot; &apos; are defined\)/) },
    { name: '20 MB <description>', xml: xmlOf('big', nic42, `  <description>${'x'.repeat(20_000_000)}</description>\n`), prepare: notXml(/domain XML on stdin is larger than 8 MiB, which no libvirt domain's XML is/), release: { status: 0, line: /domain XML on stdin is larger than 8 MiB, which no libvirt domain's XML is/ } },
    { name: '20 MB of NICs (300,000)', xml: xmlOf('nics', Array.from({ length: 300_000 }, () => nic42).join('\n')), prepare: notXml(/larger than 8 MiB/), release: { status: 0, line: /larger than 8 MiB/ } },
    { name: '5,000 NICs on vxvirt bridges', xml: xmlOf('many', Array.from({ length: 5000 }, (_, i) => bridgeNic('vxbr42', `52:54:00:00:${(i >> 8).toString(16).padStart(2, '0')}:${(i & 255).toString(16).padStart(2, '0')}`)).join('\n')), prepare: { status: 0 }, builds: true },
    { name: '8 MiB of empty elements (densest under the cap)', xml: dense, prepare: { status: 0 }, builds: true },
    { name: 'elements nested 100,000 deep', xml: xmlOf('deep', nic42, `  <metadata>${'<a>'.repeat(100_000)}${'</a>'.repeat(100_000)}</metadata>\n`), prepare: notXml(/elements are nested more than 256 deep/) },
    { name: '300,000 attributes on one element', xml: xmlOf('attrs').replace("<domain type='qemu'>", `<domain type='qemu' ${Array.from({ length: 300_000 }, (_, i) => `a${i}=''`).join(' ')}>`), prepare: { status: 0 }, builds: true },
    { name: 'a duplicate attribute among 300,000', xml: xmlOf('dup').replace("<domain type='qemu'>", `<domain type='qemu' ${Array.from({ length: 300_000 }, (_, i) => `a${i}=''`).join(' ')} a7=''>`), prepare: notXml(/attribute a7 appears twice in <domain>/), release: { status: 0, line: /attribute a7 appears twice in <domain>/ } },
    { name: 'shell metacharacters in the domain name', domain: metachars(canary), xml: xmlOf(metachars(canary)), prepare: { status: 0 }, builds: true },
    {
      name: 'shell metacharacters in bridge and network names',
      xml: xmlOf('meta', [`    <interface type='bridge'><source bridge='${escapeAttribute(metachars(canary))}'/></interface>`, networkNic(escapeAttribute(`tut$(touch ${canary}/net)`))].join('\n')),
      prepare: { status: 0 },
    },
    {
      name: 'over-long interface and network names',
      xml: xmlOf('long', [
        `    <interface type='bridge'><source bridge='vxbr${'4'.repeat(40)}'/><target dev='${'v'.repeat(300)}'/></interface>`,
        `    <interface type='bridge'><source bridge='vxbr42-but-longer-than-15'/></interface>`,
        networkNic('t'.repeat(10_000)),
      ].join('\n')),
      prepare: { status: 0 },
    },
    { name: 'root element in a namespace prefix', xml: xmlOf('ns').replace("<domain type='qemu'>", "<x:domain xmlns:x='urn:x' type='qemu'>").replace('</domain>', '</x:domain>'), prepare: notXml(/no <domain> root element \(found <x:domain>\)/) },
    { name: 'root element in a foreign default namespace', xml: xmlOf('ns').replace("<domain type='qemu'>", "<domain xmlns='urn:evil' type='qemu'>"), prepare: notXml(/<domain> is in namespace "urn:evil"; libvirt's domain XML has none/) },
    {
      name: 'vxvirt-looking NICs in foreign namespaces',
      xml: xmlOf('ns', [
        `    <evil:interface xmlns:evil='urn:evil' type='bridge'><evil:source bridge='vxbr42'/></evil:interface>`,
        `    <interface xmlns='urn:other' type='bridge'><source bridge='vxbr42'/></interface>`,
      ].join('\n'), `  <metadata><undeclared:thing bridge='vxbr42'/></metadata>\n`),
      prepare: { status: 0 },
    },
    {
      // dash drops NUL bytes from $(cat): prepare and reconnect never see them; release (stdin passed on) does.
      name: 'NUL bytes',
      xml: xmlOf('nul', bridgeNic('br0'), `  <description>a\0b</description>\n`),
      prepare: { status: 0 },
      reconnect: { status: 0 },
      release: { status: 0 },
    },
    { name: 'control character (terminal escape) reference', xml: xmlOf('esc').replace('<name>esc</name>', '<name>x&#x1b;]0;owned&#7;</name>'), prepare: notXml(/character reference &#x1b; is U\+001B, which XML does not allow/) },
    { name: 'invalid UTF-8', xml: Buffer.concat([Buffer.from(xmlOf('bad').split('bad')[0]!), Buffer.from([0x62, 0xff, 0xc0, 0xaf]), Buffer.from(xmlOf('bad').split('bad').slice(1).join('bad'))]), prepare: notXml(new RegExp(`domain XML on stdin is not valid UTF-8: byte 0xFF at offset ${badAt}$`, 'm')) },
    { name: 'UTF-16 document', xml: Buffer.from(`\ufeff${xmlOf('wide')}`, 'utf16le'), prepare: notXml(/domain XML on stdin is not valid UTF-8: byte 0xFF at offset 0/) },
  ];
}

it('hook: each hostile input, for prepare, reconnect and release', (ctx) => {
  const { host } = ctx;
  for (const c of hookCases(ctx.canary)) {
    const failure = c.prepare.status !== 0 ? { status: 0, ...(c.prepare.line ? { line: c.prepare.line } : {}) } : { status: 0 };
    const steps: Array<[string, string, Expect]> = [
      ['prepare', 'begin', c.prepare],
      ['reconnect', 'begin', c.reconnect ?? failure],
      ['release', 'end', c.release ?? { status: 0 }],
    ];
    for (const [op, subop, want] of steps) {
      const before = listing(host.dir, ['probe']);
      // hooks/qemu hands a recorded domain's release to node in the
      // background, where its time and memory would escape the measurement:
      // a lock timeout that is not whole seconds keeps node in the foreground
      // (hooks/qemu leaves anything unusual to it), running the same release.
      // test/integration/release.test.ts covers the background itself.
      const env: Record<string, string> = op === 'release' ? { VXVIRT_LOCK_TIMEOUT: '30.5' } : {};
      const r = runConfined(host, host.hookPath, [c.domain ?? 'fuzz', op, subop, '-'], { input: c.xml, limitSeconds: LIMIT_SECONDS, env });
      // The last release's deletion finishes in a detached process holding the lock: wait for it (as TestHost.hook does).
      if (op === 'release') host.settle();
      check(ctx, `${c.name}: ${op}`, r, want, before, true);
      if (op !== 'release') {
        // The pair exists exactly when the domain has a usable NIC on vxbr42.
        expect((host.link('vxbr42') !== undefined) === (c.builds === true), `${c.name}: ${op}: vxbr42 ${c.builds ? 'not made' : 'made'}`);
      }
    }
    const left = host.linkNames().filter((n) => !BASE_LINKS.includes(n));
    expect(left.length === 0, `${c.name}: ${left.join(', ')} left after release`);
    const users = JSON.parse(host.vxvirt('status', '--json').stdout)[0].domains as unknown[];
    expect(users.length === 0, `${c.name}: users left after release: ${JSON.stringify(users)}`);
    expect(listing(ctx.canary).size === 0, `${c.name}: a shell ran on a name: ${[...listing(ctx.canary).keys()].join(', ')}`);
    // Start the next case from a clean host whatever happened here.
    for (const name of left) host.exec('ip', ['link', 'del', name]);
    host.exec('find', [host.env.VXVIRT_STATE_DIR, '-name', '*.json', '-delete']);
  }
  console.log(`\n${rows.splice(0).join('\n')}`);
  reportProblems();
});

it('hook: a stack trace only with VXVIRT_DEBUG=1', (ctx) => {
  const before = listing(ctx.host.dir, ['probe']);
  const r = runConfined(ctx.host, ctx.host.hookPath, ['fuzz', 'prepare', 'begin', '-'], { input: "<domain bridge='vxbr42'>", env: { VXVIRT_DEBUG: '1' } });
  assert.is(r.status, 1);
  assert.match(r.stderr, /^vxvirt: DomainXmlError: domain XML is not well-formed: line 1 column 1: <domain> is not closed\n/);
  assert.match(r.stderr, STACK_LINE);
  assert.equal(r.tempFiles, []);
  assert.equal(changes(before, listing(ctx.host.dir, ['probe'])).filter((c) => !c.slice(1).startsWith('run')), []);
});

// ---- the CLI ------------------------------------------------------------------

const cli = join(repo, 'dist/cli.js');
const define = (...args: string[]) => ['define-network', '--no-libvirt', ...args];
const net = (name: string, ...more: string[]) => define(name, '--vni', '77', '--dev', 'ens47f1', '--remote', '192.168.8.101', ...more);
const vni = (value: string) => define('n', '--vni', value, '--dev', 'ens47f1', '--remote', '192.168.8.101');
const mtu = (value: string) => net('n', '--mtu', value);
const remote = (value: string) => define('n', '--vni', '77', '--dev', 'ens47f1', '--remote', value);
const long = 'n'.repeat(10_000);

const cliCases: Array<[string, string[], number, RegExp]> = [
  ['--vni 1e400', vni('1e400'), 3, /--vni "1e400": must be an integer from 1 to 16777215/],
  ['--vni -1', vni('-1'), 3, /--vni "-1": must be an integer/],
  ['--vni 0', vni('0'), 3, /--vni "0": must be an integer/],
  ['--vni 16777216', vni('16777216'), 3, /--vni "16777216": must be an integer/],
  ['--vni 0x10', vni('0x10'), 3, /--vni "0x10": must be an integer/],
  ['--vni 4.5', vni('4.5'), 3, /--vni "4.5": must be an integer/],
  ["--vni ''", vni(''), 3, /--vni "": must be an integer/],
  ['--vni NaN', vni('NaN'), 3, /--vni "NaN": must be an integer/],
  ['--vni Infinity', vni('Infinity'), 3, /--vni "Infinity": must be an integer/],
  ['--vni 99999999999999999999999', vni('99999999999999999999999'), 3, /--vni "99999999999999999999999": must be an integer/],
  ['--vni with Arabic-Indic digits', vni('٤٢'), 3, /--vni "٤٢": must be an integer/],
  ['--vni given twice', [...vni('42'), '--vni', '43'], 2, /--vni is given 2 times/],
  ['--mtu 1e400', mtu('1e400'), 3, /--mtu "1e400": must be an integer from 68 to 65535/],
  ['--mtu -1', mtu('-1'), 3, /--mtu "-1": must be an integer from 68 to 65535/],
  ['--mtu 67', mtu('67'), 3, /--mtu "67"/],
  ['--mtu 65536', mtu('65536'), 3, /--mtu "65536"/],
  ['--mtu NaN', mtu('NaN'), 3, /--mtu "NaN"/],
  ['--mtu 1451 (over the underlay)', mtu('1451'), 3, /network n: --mtu 1451 is larger than 1450 \(underlay ens47f1 MTU 1500 minus 50/],
  ['--ttl 256', net('n', '--ttl', '256'), 3, /--ttl "256": must be an integer from 1 to 255/],
  ['--dstport 65536', net('n', '--dstport', '65536'), 3, /--dstport "65536": must be an integer from 1 to 65535/],
  ['unicode name', net('tëst'), 3, /network name "tëst": must match \[A-Za-z0-9\]/],
  ['name of 10,000 characters', net(long), 3, /^vxvirt: network name "n{64}…" \(10000 characters\): must match .{0,80}\n$/],
  ['name with /', net('a/b'), 3, /network name "a\/b": must match/],
  ['name ..', net('..'), 3, /network name "\.\.": must match/],
  ['name ../../etc/passwd', net('../../etc/passwd'), 3, /network name "\.\.\/\.\.\/etc\/passwd": must match/],
  ['name with a newline', net('a\nb'), 3, /network name "a\\nb": must match/],
  ['name with shell metacharacters', net('$(touch canary);`touch canary`'), 3, /network name "\$\(touch canary\);`touch canary`": must match/],
  ['undefine-network ../x', ['undefine-network', '--no-libvirt', '../x'], 2, /network name "\.\.\/x": must match/],
  ['undefine-network of 10,000 characters', ['undefine-network', '--no-libvirt', long], 2, /network name "n+": must match/],
  ['generate --network ../tut', ['generate', '--network', '../tut', '/dev/null'], 2, /network name "\.\.\/tut": must match/],
  ['--remote garbage', remote('garbage'), 3, /--remote "garbage": must be an IPv4 or IPv6 address/],
  ["--remote ''", remote(''), 3, /--remote "": must be an IPv4 or IPv6 address/],
  ['--remote 1.2.3.4/24', remote('1.2.3.4/24'), 3, /--remote "1\.2\.3\.4\/24": must be an IPv4 or IPv6 address/],
  ['--remote [::1]', remote('[::1]'), 3, /--remote "\[::1\]": must be an IPv4 or IPv6 address/],
  ['--remote fe80::1%eth0', remote('fe80::1%eth0'), 3, /must not carry a zone index/],
  ['--remote ::ffff:192.168.8.101', remote('::ffff:192.168.8.101'), 3, /is an IPv4-mapped address/],
  ['--remote 999.1.1.1', remote('999.1.1.1'), 3, /--remote "999\.1\.1\.1": must be an IPv4 or IPv6 address/],
  ['--remote 0.0.0.0', remote('0.0.0.0'), 3, /must be a peer host address, not an unspecified or broadcast address/],
  ['--remote 239.1.1.1', remote('239.1.1.1'), 3, /must be a unicast address \(use --group/],
  ['--remote fullwidth digits', remote('１.２.３.４'), 3, /must be an IPv4 or IPv6 address/],
  ['--remote of 10,000 characters', remote('1'.repeat(10_000)), 3, /^vxvirt: --remote "1{64}…" \(10000 characters\): must be an IPv4 or IPv6 address\n$/],
  ['--remote with shell metacharacters', remote('$(touch canary)'), 3, /--remote "\$\(touch canary\)": must be an IPv4/],
  ['--remote twice the same', [...remote('192.168.8.101'), '--remote', '192.168.8.101'], 3, /--remote "192\.168\.8\.101": is given more than once/],
  ['--dev with #', define('n', '--vni', '77', '--dev', 'e#0', '--remote', '192.168.8.101'), 3, /--dev "e#0": must be a network interface name of 1 to 15 bytes without "\/", ":", "#", quotes or spaces/],
  ['--dev with a leading quote', define('n', '--vni', '77', '--dev', '"e0', '--remote', '192.168.8.101'), 3, /--dev "\\"e0": must be a network interface name/],
  ['--dev of 8 characters, 16 bytes', define('n', '--vni', '77', '--dev', 'éééééééé', '--remote', '192.168.8.101'), 3, /--dev "éééééééé": must be a network interface name of 1 to 15 bytes/],
  ['--dev ..', define('n', '--vni', '77', '--dev', '..', '--remote', '192.168.8.101'), 3, /--dev "\.\.": must be a network interface name/],
  ['unknown option', [...net('n'), '--bogus'], 2, /Unknown argument: bogus/],
  ['generate: a binary file', ['generate', '--network', 'tut', '/usr/bin/true'], 4, /\/usr\/bin\/true is not valid UTF-8: byte 0x[0-9A-F]{2} at offset \d+/],
  ['generate: endless input (/dev/zero)', ['generate', '--network', 'tut', '/dev/zero'], 4, /\/dev\/zero is larger than 8 MiB, which no libvirt domain's XML is/],
  ['generate: a directory', ['generate', '--network', 'tut', '/'], 2, /cannot read \/: EISDIR/],
];

it('CLI: absurd arguments are one line with a documented status, and write nothing', (ctx) => {
  for (const [what, args, status, line] of cliCases) {
    const before = listing(ctx.host.dir, ['probe']);
    const r = runConfined(ctx.host, process.execPath, [cli, ...args], { limitSeconds: LIMIT_SECONDS });
    check(ctx, what, r, { status, line }, before, false);
  }
  expect(listing(ctx.canary).size === 0, 'a shell ran on an argument');
  console.log(`\n${rows.splice(0).join('\n')}`);
  reportProblems();
});

it.run();
