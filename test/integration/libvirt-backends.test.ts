// The two domain backends of src/libvirt/ side by side, on real libvirt:
// libvirt's own test driver (test:///default: a fresh host with one running
// domain `test` per connection, no daemon), and a URI whose socket does not
// exist (libvirtd not running). Each answer, each error and its exit status
// must be the same through the bindings (@unraid/libvirt) and through virsh;
// and the CLI prints the same lines with the same status.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';

const REPO = new URL('../..', import.meta.url).pathname.replace(/\/$/, '');
const BINDINGS = join(REPO, 'node_modules/@unraid/libvirt/build/Release/libvirt.node');
const TEST_URI = 'test:///default';
const DOWN_URI = 'qemu:///system?socket=/nonexistent/vxvirt-test/libvirt-sock';

type Backend = 'bindings' | 'virsh';

/** Calls into src/libvirt/index.ts in a child process with VXVIRT_LIBVIRT=backend; each call's result or error, as JSON. */
function calls(backend: Backend, uri: string, script: string): Record<string, unknown> {
  const driver = `
import * as lv from ${JSON.stringify(join(REPO, 'src/libvirt/index.ts'))};
const out = {};
const calls = { ${script} };
for (const [k, f] of Object.entries(calls)) {
  try { out[k] = { ok: await f() }; } catch (e) { out[k] = { error: e.constructor.name, status: e.exitCode, message: e.message }; }
}
process.stdout.write(JSON.stringify(out));
`;
  const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', driver], {
    encoding: 'utf8',
    env: { ...process.env, VXVIRT_LIBVIRT: backend, LIBVIRT_DEFAULT_URI: uri },
    cwd: REPO,
  });
  assert.is(r.status, 0, `${backend}: ${r.stderr}`);
  return JSON.parse(r.stdout) as Record<string, unknown>;
}

test('prerequisites: virsh and the built bindings', () => {
  assert.ok(spawnSync('sh', ['-c', 'command -v virsh']).status === 0, 'virsh is needed (apt-get install libvirt-clients)');
  assert.ok(existsSync(BINDINGS), `the bindings are needed (${BINDINGS}): install libvirt-dev, python3, g++ and make, then npm rebuild @unraid/libvirt`);
});

test("libvirt's test driver: a running domain, the active list, no such domain, a name that is another domain's id, refused XML — the same through both", () => {
  const script = `
    access: () => lv.libvirtAccess().then((a) => a.backend),
    state: () => lv.readDomainState('test'),
    list: () => lv.listActiveDomains(),
    missing: () => lv.readDomainState('nosuch'),
    byId: () => lv.readDomainState('1'),
    refused: () => lv.defineDomain("<domain type='test'><name>x</name><memory>1024</memory><os><type>bogus</type></os></domain>"),
  `;
  const b = calls('bindings', TEST_URI, script);
  const v = calls('virsh', TEST_URI, script);
  assert.equal(b.access, { ok: 'bindings' });
  assert.equal(v.access, { ok: 'virsh' });
  for (const k of ['state', 'list', 'missing', 'byId', 'refused']) assert.equal(v[k], b[k], k);
  const state = (b.state as { ok: { running: boolean; uuid: string; persistentXml: string; liveXml: string } }).ok;
  assert.equal([state.running, state.uuid], [true, '6695eb01-f6a4-8304-79aa-97f2502e193f']);
  assert.match(state.persistentXml, /^<domain type='test'>\n/);
  assert.match(state.liveXml, /^<domain type='test' id='1'>\n/);
  assert.equal((b.list as { ok: Array<{ name: string }> }).ok.map((d) => d.name), ['test']);
  assert.equal(b.missing, { error: 'NotFoundError', status: 8, message: `domain nosuch does not exist (at ${TEST_URI})` });
  assert.equal(b.byId, { error: 'NotFoundError', status: 8, message: `domain 1 does not exist (at ${TEST_URI})` });
  assert.equal(b.refused, { error: 'LibvirtError', status: 9, message: "libvirt refused the domain XML: unsupported configuration: unknown OS type 'bogus'" });
});

test('libvirtd not running: every call is the same "cannot connect" error with status 9 through both', () => {
  const script = `
    state: () => lv.readDomainState('vm1'),
    list: () => lv.listActiveDomains(),
    define: () => lv.defineDomain('<domain><name>vm1</name></domain>'),
    networks: () => lv.listLibvirtNetworks(),
  `;
  const b = calls('bindings', DOWN_URI, script);
  const v = calls('virsh', DOWN_URI, script);
  assert.equal(v, b);
  const expected = {
    error: 'LibvirtUnreachableError',
    status: 9,
    message: `cannot connect to libvirt at ${DOWN_URI}: Failed to connect socket to '/nonexistent/vxvirt-test/libvirt-sock': No such file or directory`,
  };
  for (const k of ['state', 'list', 'define', 'networks']) assert.equal(b[k], expected, k);
});

test('the CLI: attach and detach print the same line and exit with the same status through both', () => {
  const cli = join(REPO, 'dist/cli.js');
  assert.ok(existsSync(cli), 'dist/cli.js is missing: npm run build');
  const run = (backend: Backend, uri: string, ...args: string[]) => {
    const r = spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8', env: { ...process.env, VXVIRT_LIBVIRT: backend, LIBVIRT_DEFAULT_URI: uri } });
    return { status: r.status, stdout: r.stdout, stderr: r.stderr };
  };
  const cases: Array<[string, string[], number]> = [
    [DOWN_URI, ['detach', 'vm1'], 9],
    [TEST_URI, ['detach', 'nosuch'], 8],
    [TEST_URI, ['detach', 'test'], 2],
  ];
  for (const [uri, args, status] of cases) {
    const b = run('bindings', uri, ...args);
    const v = run('virsh', uri, ...args);
    assert.equal(v, b, `${args.join(' ')} at ${uri}`);
    assert.is(b.status, status, `${args.join(' ')}: ${b.stderr}`);
    assert.is(b.stderr.split('\n').filter(Boolean).length, 1, b.stderr);
  }
  assert.is(run('virsh', TEST_URI, 'detach', 'test').stderr, 'vxvirt: domain test has no NIC that vxvirt attached (nothing in its vxvirt metadata)\n');
});

test.run();
