// What `vxvirt generate` prints is a domain libvirt's QEMU driver accepts:
// defined through the embedded QEMU driver (qemu:///embed, no daemon; it runs
// the QEMU driver's own parse and validation against the installed QEMU), and
// read back with libvirt's own dumpxml.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { XMLParser } from 'fast-xml-parser';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { repo, sh, TestHost } from '../support/netns.ts';

interface Ctx {
  host: TestHost;
  root: string;
}
const it = suite<Ctx>('generated XML, defined in libvirt');

it.before.each((ctx) => {
  ctx.host = new TestHost('gen');
  ctx.host.addUnderlay();
  ctx.root = mkdtempSync(join(tmpdir(), 'vxvirt-embed-'));
});
it.after.each((ctx) => {
  ctx.host.destroy();
  rmSync(ctx.root, { recursive: true, force: true });
});

/** `virsh -c qemu:///embed?root=…` commands, in one process (an embedded driver lives as long as its process). */
function virsh(root: string, commands: string): { status: number; stdout: string; stderr: string } {
  return sh('virsh', ['-q', '-c', `qemu:///embed?root=${root}`, commands]);
}

type Nic = { '@_type': string; mac: { '@_address': string }; source: Record<string, string>; model?: { '@_type': string }; boot?: { '@_order': string }; mtu?: { '@_size': string } };

it('NICs with socket back ends (mcast, udp, server, client), after generate, are bridge ports libvirt defines with their model, MAC and boot order', ({ host, root }) => {
  const version = sh('virsh', ['--version']);
  assert.is(version.status, 0, `virsh is needed (apt-get install libvirt-clients libvirt-daemon-driver-qemu): ${version.stderr}`);
  const defined = host.vxvirt('define-network', '--no-libvirt', 'lab', '--vni', '100', '--dev', 'ens47f1', '--group', '239.1.1.100');
  assert.is(defined.status, 0, defined.stderr);
  const fixture = join(repo, 'test/fixtures/domains/sockets.xml');
  const before = virsh(root, `define ${fixture}; undefine sockets`);
  assert.is(before.status, 0, `the fixture itself is a domain the QEMU driver accepts: ${before.stderr}`);

  const generated = host.vxvirt('generate', fixture, '--network', 'lab');
  assert.is(generated.status, 0, generated.stderr);
  const file = join(root, 'sockets-generated.xml');
  writeFileSync(file, generated.stdout);
  const r = virsh(root, `define ${file}; dumpxml --inactive sockets`);
  assert.is(r.status, 0, `virsh define of the generated XML: ${r.stderr}`);

  const xml = r.stdout.slice(r.stdout.indexOf('<domain'));
  const parsed = new XMLParser({ ignoreAttributes: false, isArray: (name) => name === 'interface' }).parse(xml) as { domain: { devices: { interface: Nic[] } } };
  const nics = parsed.domain.devices.interface.map((n) => ({
    type: n['@_type'],
    mac: n.mac['@_address'],
    source: n.source,
    model: n.model?.['@_type'],
    boot: n.boot?.['@_order'],
    mtu: n.mtu?.['@_size'],
  }));
  assert.equal(nics, [
    { type: 'bridge', mac: '52:54:00:40:00:00', source: { '@_bridge': 'vxbr100' }, model: 'virtio', boot: '1', mtu: '1450' },
    { type: 'bridge', mac: '52:54:00:40:00:01', source: { '@_bridge': 'vxbr100' }, model: 'e1000', boot: undefined, mtu: undefined },
    { type: 'bridge', mac: '52:54:00:40:00:02', source: { '@_bridge': 'vxbr100' }, model: 'rtl8139', boot: undefined, mtu: undefined },
    { type: 'bridge', mac: '52:54:00:40:00:03', source: { '@_bridge': 'vxbr100' }, model: 'virtio', boot: undefined, mtu: '1450' },
  ]);
});

it.run();
