// The virsh backend's pure parts (src/libvirt/virsh-output.ts, backend.ts,
// choice.ts), and the backend itself against a fake `virsh` on PATH: what it
// asks, and how it reads the answers — a domain that stops or goes away while
// the active ones are listed is left out, a name virsh resolved as an id is
// not the domain asked for.
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { LibvirtError, LibvirtUnreachableError, NotFoundError, UsageError } from '../../src/errors.ts';
import { isLiveXml } from '../../src/libvirt/backend.ts';
import { describeAccess, parseSetting } from '../../src/libvirt/choice.ts';
import { virshBackend } from '../../src/libvirt/virsh.ts';
import { classifyVirshError, domainNameOf, parseDomainInfo, parseDomainList, parseNameList } from '../../src/libvirt/virsh-output.ts';
import { withPath } from '../support/path.ts';

const tmp = mkdtempSync(join(tmpdir(), 'vxvirt-virsh-'));
test.after(() => rmSync(tmp, { recursive: true, force: true }));

// ---- reading virsh's words ------------------------------------------------------------

test("virsh errors: unreachable keeps libvirt's reason, not virsh's own line", () => {
  const stderr = "error: failed to connect to the hypervisor\nerror: Failed to connect socket to '/run/libvirt/libvirt-sock': No such file or directory\n";
  assert.equal(classifyVirshError(stderr), {
    kind: 'unreachable',
    detail: "Failed to connect socket to '/run/libvirt/libvirt-sock': No such file or directory",
    all: "failed to connect to the hypervisor; Failed to connect socket to '/run/libvirt/libvirt-sock': No such file or directory",
  });
  assert.equal(classifyVirshError('error: failed to connect to the hypervisor\n').detail, 'failed to connect to the hypervisor');
});

test('virsh errors: no domain (virsh drops libvirt\'s words), no network, and anything else as libvirt said it', () => {
  assert.is(classifyVirshError("error: failed to get domain 'vm1'\n").kind, 'no-domain');
  assert.is(classifyVirshError("error: failed to get domain 'vm1'\n").detail, 'Domain not found');
  assert.is(classifyVirshError("error: failed to get network 'n'\nerror: Network not found: no network with matching name 'n'\n").kind, 'no-network');
  const refused = classifyVirshError("error: Failed to define domain from /tmp/vxvirt-x/object.xml\nerror: unsupported configuration: unknown OS type 'bogus'\n");
  assert.equal([refused.kind, refused.detail], ['other', "unsupported configuration: unknown OS type 'bogus'"]);
  assert.is(classifyVirshError('error: something odd\n').detail, 'something odd');
  assert.is(classifyVirshError('').all, 'virsh failed without a message');
});

test('virsh list --uuid --name, dominfo, name lists, domain names', () => {
  assert.equal(parseDomainList('6695EB01-f6a4-8304-79aa-97f2502e193f test\n00000000-0000-4000-8000-00000000000a vm with spaces\n\n'), [
    { uuid: '6695eb01-f6a4-8304-79aa-97f2502e193f', name: 'test' },
    { uuid: '00000000-0000-4000-8000-00000000000a', name: 'vm with spaces' },
  ]);
  assert.equal(parseDomainList(''), []);
  assert.equal(parseDomainInfo('Id:             7\nName:           vm1\nUUID:           6695eb01-f6a4-8304-79aa-97f2502e193f\nState:          running\n'), {
    id: 7,
    uuid: '6695eb01-f6a4-8304-79aa-97f2502e193f',
  });
  assert.equal(parseDomainInfo('Id:             -\nName:           vm1\nUUID:           6695eb01-f6a4-8304-79aa-97f2502e193f\nState:          shut off\n'), {
    uuid: '6695eb01-f6a4-8304-79aa-97f2502e193f',
  });
  assert.equal(parseNameList('default\n tenant1 \n\n'), ['default', 'tenant1']);
  assert.is(domainNameOf("<domain type='kvm'>\n  <name>a&amp;b</name>\n</domain>"), 'a&b');
  assert.is(domainNameOf('not xml'), undefined);
});

test("live XML: only a running domain's has an id", () => {
  assert.ok(isLiveXml("<domain type='kvm' id='3'><name>vm</name></domain>"));
  assert.not.ok(isLiveXml("<domain type='kvm'><name>vm</name></domain>"));
  assert.not.ok(isLiveXml("<domain type='kvm' id='-1'><name>vm</name></domain>"));
  assert.not.ok(isLiveXml('<domain'));
});

test('VXVIRT_LIBVIRT: auto, bindings, virsh; anything else is a usage error; what check says of each', () => {
  assert.is(parseSetting(undefined), 'auto');
  assert.is(parseSetting(''), 'auto');
  for (const s of ['auto', 'bindings', 'virsh'] as const) assert.is(parseSetting(s), s);
  try {
    parseSetting('libvirt-python');
    assert.unreachable();
  } catch (err) {
    assert.instance(err, UsageError);
    assert.is((err as Error).message, 'VXVIRT_LIBVIRT="libvirt-python": must be auto, bindings or virsh');
  }
  assert.is(describeAccess({ setting: 'auto', backend: 'virsh', bindingsError: 'it did not build' }), 'virsh (the bindings @unraid/libvirt did not load: it did not build)');
  assert.is(describeAccess({ setting: 'virsh', backend: 'virsh' }), 'virsh (VXVIRT_LIBVIRT=virsh)');
  assert.is(describeAccess({ setting: 'auto', backend: 'bindings' }), 'bindings @unraid/libvirt for domains; virsh for libvirt networks and hot-plug');
});

// ---- the virsh backend against a fake virsh ------------------------------------------------

const UUID_A = '00000000-0000-4000-8000-00000000000a';
const UUID_B = '00000000-0000-4000-8000-00000000000b';
const UUID_C = '00000000-0000-4000-8000-00000000000c';
const live = (name: string, id: number) => `<domain type='kvm' id='${id}'>\n  <name>${name}</name>\n</domain>\n`;
const inactive = (name: string) => `<domain type='kvm'>\n  <name>${name}</name>\n</domain>\n`;

/**
 * A fake virsh: `answers` maps "SUBCOMMAND ARG…" (options and values as
 * given, without -q -c URI) to [exit status, stdout, stderr].
 */
function fakeVirsh(answers: Record<string, [number, string, string?]>): { dir: string; calls: () => string[] } {
  const dir = mkdtempSync(join(tmp, 'virsh-'));
  const cases = Object.entries(answers)
    .map(([args, [code, out, err]], i) => {
      writeFileSync(join(dir, `out${i}`), out);
      writeFileSync(join(dir, `err${i}`), err ?? '');
      return `  ${JSON.stringify(args)}) cat ${dir}/out${i}; cat ${dir}/err${i} >&2; exit ${code} ;;`;
    })
    .join('\n');
  writeFileSync(
    join(dir, 'virsh'),
    `#!/bin/sh
shift 3  # -q -c URI
echo "$*" >> ${dir}/calls
case "$*" in
${cases}
  *) echo "error: unexpected call: $*" >&2; exit 1 ;;
esac
`,
  );
  chmodSync(join(dir, 'virsh'), 0o755);
  return { dir, calls: () => readFileSync(join(dir, 'calls'), 'utf8').trim().split('\n') };
}


test('listActiveDomains: a domain that stopped (inactive XML) or went away (transient) while being read is left out', async () => {
  const v = fakeVirsh({
    'list --uuid --name': [0, `${UUID_A} vm-a\n${UUID_B} vm-b\n${UUID_C} vm-c\n`],
    [`dumpxml --domain ${UUID_A}`]: [0, live('vm-a', 3)],
    [`dumpxml --domain ${UUID_B}`]: [0, inactive('vm-b')],
    [`dumpxml --domain ${UUID_C}`]: [1, '', `error: failed to get domain '${UUID_C}'\n`],
  });
  const got = await withPath(v.dir, () => virshBackend.listActiveDomains());
  assert.equal(got, [{ uuid: UUID_A, name: 'vm-a', liveXml: live('vm-a', 3) }]);
});

test('listActiveDomains: any other failure is an error, not a shorter list', async () => {
  const v = fakeVirsh({
    'list --uuid --name': [0, `${UUID_A} vm-a\n`],
    [`dumpxml --domain ${UUID_A}`]: [1, '', 'error: internal error: client socket is closed\n'],
  });
  try {
    await withPath(v.dir, () => virshBackend.listActiveDomains());
    assert.unreachable();
  } catch (err) {
    assert.instance(err, LibvirtError);
    assert.is((err as Error).message, 'reading an active domain: internal error: client socket is closed');
  }
});

test('readDomainState: persistent XML with secrets, UUID and id from dominfo, live XML only while running', async () => {
  const running = fakeVirsh({
    'dumpxml --inactive --security-info --domain vm-a': [0, inactive('vm-a')],
    'dominfo --domain vm-a': [0, `Id:             3\nName:           vm-a\nUUID:           ${UUID_A}\n`],
    'dumpxml --security-info --domain vm-a': [0, live('vm-a', 3)],
  });
  assert.equal(await withPath(running.dir, () => virshBackend.readDomainState('vm-a')), {
    name: 'vm-a',
    uuid: UUID_A,
    persistentXml: inactive('vm-a'),
    running: true,
    liveXml: live('vm-a', 3),
  });
  const stopped = fakeVirsh({
    'dumpxml --inactive --security-info --domain vm-a': [0, inactive('vm-a')],
    'dominfo --domain vm-a': [0, `Id:             -\nName:           vm-a\nUUID:           ${UUID_A}\n`],
  });
  assert.equal(await withPath(stopped.dir, () => virshBackend.readDomainState('vm-a')), { name: 'vm-a', uuid: UUID_A, persistentXml: inactive('vm-a'), running: false });
  assert.equal(stopped.calls(), ['dumpxml --inactive --security-info --domain vm-a', 'dominfo --domain vm-a']);
  // Stopped between dominfo and the live dump: not running.
  const raced = fakeVirsh({
    'dumpxml --inactive --security-info --domain vm-a': [0, inactive('vm-a')],
    'dominfo --domain vm-a': [0, `Id:             3\nName:           vm-a\nUUID:           ${UUID_A}\n`],
    'dumpxml --security-info --domain vm-a': [0, inactive('vm-a')],
  });
  assert.is((await withPath(raced.dir, () => virshBackend.readDomainState('vm-a'))).running, false);
});

test('readDomainState: no such domain, a name virsh took for another id, and libvirtd down', async () => {
  const expectError = async (dir: string, name: string, kind: new (...a: never[]) => Error, message: string | RegExp) => {
    try {
      await withPath(dir, () => virshBackend.readDomainState(name));
      assert.unreachable();
    } catch (err) {
      assert.instance(err, kind);
      if (typeof message === 'string') assert.is((err as Error).message, message);
      else assert.match((err as Error).message, message);
    }
  };
  const uri = process.env.LIBVIRT_DEFAULT_URI || 'qemu:///system';
  const none = fakeVirsh({ 'dumpxml --inactive --security-info --domain nosuch': [1, '', "error: failed to get domain 'nosuch'\n"] });
  await expectError(none.dir, 'nosuch', NotFoundError, `domain nosuch does not exist (at ${uri})`);
  // `virsh dumpxml 3` finds the domain with id 3; the bindings (and vxvirt) look up names only.
  const byId = fakeVirsh({ 'dumpxml --inactive --security-info --domain 3': [0, inactive('vm-a')] });
  await expectError(byId.dir, '3', NotFoundError, `domain 3 does not exist (at ${uri})`);
  const down = fakeVirsh({
    'dumpxml --inactive --security-info --domain vm-a': [1, '', "error: failed to connect to the hypervisor\nerror: Failed to connect socket to '/run/libvirt/libvirt-sock': Connection refused\n"],
  });
  await expectError(down.dir, 'vm-a', LibvirtUnreachableError, `cannot connect to libvirt at ${uri}: Failed to connect socket to '/run/libvirt/libvirt-sock': Connection refused`);
});

test('defineDomain: libvirt refusing is said as the bindings say it; the result is read back by name', async () => {
  const refused = fakeVirsh({});
  writeFileSync(
    join(refused.dir, 'virsh'),
    `#!/bin/sh\nshift 3\necho "$*" >> ${refused.dir}/calls\necho "error: Failed to define domain from $3" >&2\necho "error: XML error: missing name" >&2\nexit 1\n`,
  );
  try {
    await withPath(refused.dir, () => virshBackend.defineDomain(inactive('vm-a')));
    assert.unreachable();
  } catch (err) {
    assert.instance(err, LibvirtError);
    assert.is((err as Error).message, 'libvirt refused the domain XML: XML error: missing name');
  }
  const ok = fakeVirsh({});
  writeFileSync(
    join(ok.dir, 'virsh'),
    `#!/bin/sh\nshift 3\necho "$*" >> ${ok.dir}/calls\ncase "$1" in define) cp "$3" ${ok.dir}/defined.xml; echo "Domain 'vm-a' defined from $3" ;; dumpxml) echo "<domain type='kvm'><name>vm-a</name><uuid>${UUID_A}</uuid></domain>" ;; esac\n`,
  );
  const back = await withPath(ok.dir, () => virshBackend.defineDomain(inactive('vm-a')));
  assert.is(back, `<domain type='kvm'><name>vm-a</name><uuid>${UUID_A}</uuid></domain>\n`);
  assert.is(readFileSync(join(ok.dir, 'defined.xml'), 'utf8'), inactive('vm-a'));
  assert.equal(
    ok.calls().map((c) => c.replace(/\/\S+\/object\.xml/, 'FILE')),
    ['define --file FILE', 'dumpxml --inactive --security-info --domain vm-a'],
  );
});

test.run();
