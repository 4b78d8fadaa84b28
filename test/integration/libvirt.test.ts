// src/libvirt/ and the commands that talk to libvirt (attach, detach, --live,
// reconcile, define-network's and undefine-network's libvirt network) against
// a real libvirtd and real QEMU guests: the domain steps run once with each
// backend (VXVIRT_LIBVIRT=bindings, =virsh) and once more from a copy of vxvirt
// without node_modules, as on a machine where the bindings never built.
// Everything runs inside one simulated lab host (test/lab): its own network
// namespace and mount namespace with private /run,
// /etc/libvirt, /var/lib/libvirt, /var/log/libvirt, /var/cache/libvirt and
// /dev/kvm, and its own virtlogd + libvirtd (pinned to CPU 0), so the
// machine's own libvirt is never touched. The tests run in order and share
// the lab.
import { cpSync, existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as assert from 'uvu/assert';
import { UNDERLAY_DEV, type Guest, type Host } from '../lab/lab.ts';
import { suite } from 'uvu';
import { labSuite, log } from '../lab/support.ts';

const REPO = new URL('../..', import.meta.url).pathname.replace(/\/$/, '');
const BINDINGS = join(REPO, 'node_modules/@unraid/libvirt/build/Release/libvirt.node');
const haveLibvirt = existsSync('/usr/sbin/libvirtd') && existsSync('/usr/bin/qemu-system-x86_64') && existsSync('/usr/bin/virsh');

if (!haveLibvirt || process.getuid?.() !== 0) {
  // A missing prerequisite fails: these tests must not pass by not running.
  const test = suite('libvirt');
  test('prerequisites: root, libvirtd, virsh and qemu-system-x86_64', () => {
    assert.unreachable('the libvirt integration tests need root, /usr/sbin/libvirtd, /usr/bin/virsh and /usr/bin/qemu-system-x86_64 (apt-get install libvirt-daemon-system qemu-system-x86)');
  });
  test.run();
} else {
  const { test, step } = labSuite('libvirt', 'lv', 1);
  const g: Record<string, Guest> = {};
  type Backend = 'bindings' | 'virsh' | 'fresh';
  /** A copy of vxvirt without node_modules, inside the host's files: an install where the bindings never built. */
  let freshCheckout: string | undefined;

  /** `vxvirt ARGS` inside the host, reaching libvirt as `backend` says. */
  const vxAs = (host: Host, backend: Backend, ...args: string[]) =>
    backend === 'fresh'
      ? host.exec([process.execPath, join(freshCheckout!, 'dist', 'cli.js'), ...args], { timeoutMs: 60_000 })
      : host.exec([process.execPath, join(REPO, 'dist', 'cli.js'), ...args], { timeoutMs: 60_000, extraEnv: { VXVIRT_LIBVIRT: backend } });
  /** The same, asserting success; stdout+stderr. */
  const vxOk = async (host: Host, backend: Backend, ...args: string[]): Promise<string> => {
    const r = await vxAs(host, backend, ...args);
    const out = (r.stdout + r.stderr).trim();
    if (r.code !== 0) throw new Error(`vxvirt ${args.join(' ')} (${backend}) exited ${r.code}:\n${out}`);
    return out;
  };

  /** Run a function of src/libvirt/ inside the host (where its libvirtd is). */
  async function lib(host: Host, fn: string, ...args: unknown[]): Promise<{ code: number | null; out: unknown; stderr: string }> {
    const driver = join(host.dir, 'driver.mts');
    writeFileSync(
      driver,
      `import * as lv from ${JSON.stringify(join(REPO, 'src/libvirt/index.ts'))};
const [fn, args] = JSON.parse(process.argv[2]);
try {
  const out = await lv[fn](...args);
  process.stdout.write(JSON.stringify(out ?? null));
} catch (err) {
  process.stderr.write(err.name + ' ' + (err.exitCode ?? '') + ' ' + err.message);
  process.exitCode = 3;
}
`,
    );
    // nsenter starts in /, so tsx is given by its full URL.
    const r = await host.exec([process.execPath, '--import', import.meta.resolve('tsx'), driver, JSON.stringify([fn, args])], { timeoutMs: 60_000 });
    return { code: r.code, out: r.code === 0 ? JSON.parse(r.stdout) : undefined, stderr: r.stderr };
  }

  const demo = { name: 'demo', vni: 42, dev: UNDERLAY_DEV, remotes: ['192.168.8.200'], dstport: 4789, learning: true };

  const dumpInactive = async (host: Host, name: string): Promise<string> => (await host.virsh('dumpxml', '--inactive', name)).stdout;
  /** The bridge the tap of the guest NIC with this MAC is a port of (tap from virsh domiflist). */
  const masterOf = async (host: Host, domain: string, mac: string): Promise<string | undefined> => {
    const row = (await host.virsh('domiflist', domain)).stdout.split('\n').find((l) => l.includes(mac));
    const tap = row?.trim().split(/\s+/)[0];
    if (!tap) return undefined;
    return (JSON.parse((await host.exec(['ip', '-j', 'link', 'show', 'dev', tap])).stdout) as Array<{ master?: string }>)[0]?.master;
  };

  step('libvirt network: defined, autostarted and started before vxbrN exists; idempotent; same UUID on update', async (lab) => {
    const h = lab.host(1);
    const created = await lib(h, 'defineLibvirtNetwork', demo);
    assert.is(created.code, 0, created.stderr);
    assert.equal(created.out, { action: 'created', active: true });
    const info = (await h.virsh('net-info', 'demo')).stdout;
    assert.match(info, /Active:\s+yes/);
    assert.match(info, /Autostart:\s+yes/);
    assert.match(info, /Bridge:\s+vxbr42/);
    assert.not.ok((await h.vxDevices()).includes('vxbr42'), 'libvirt started the network without creating the bridge');
    const xml = (await h.virsh('net-dumpxml', 'demo')).stdout;
    log(`libvirt network demo:\n${xml.trim()}`);
    assert.match(xml, /<forward mode='bridge'\/>/);
    assert.match(xml, /<vxvirt:network xmlns:vxvirt="https:\/\/vxvirt.dev\/xmlns\/1" vni="42"\/>/);
    const uuid = (await h.virsh('net-uuid', 'demo')).stdout.trim();

    const again = await lib(h, 'defineLibvirtNetwork', demo);
    assert.equal(again.out, { action: 'unchanged', active: true });
    const moved = await lib(h, 'defineLibvirtNetwork', { ...demo, vni: 43 });
    assert.is(moved.code, 0, moved.stderr);
    assert.equal(moved.out, { action: 'updated', active: true }, 'no guest connected: restarted with the new bridge');
    assert.match((await h.virsh('net-info', 'demo')).stdout, /Bridge:\s+vxbr43/);
    assert.is((await h.virsh('net-uuid', 'demo')).stdout.trim(), uuid);

    const removed = await lib(h, 'undefineLibvirtNetwork', 'demo');
    assert.equal(removed.out, { action: 'removed' });
    assert.equal((await lib(h, 'undefineLibvirtNetwork', 'demo')).out, { action: 'absent' });
    assert.is((await h.virsh('net-info', 'demo')).code, 1);
  });

  step("libvirt network: one vxvirt did not define is left alone", async (lab) => {
    const h = lab.host(1);
    await h.sh(`printf "<network><name>taken</name><forward mode='bridge'/><bridge name='br9'/></network>" > /tmp/taken.xml && virsh -c qemu:///system net-define /tmp/taken.xml`);
    const def = await lib(h, 'defineLibvirtNetwork', { ...demo, name: 'taken' });
    assert.is(def.code, 3);
    assert.match(def.stderr, /^LibvirtError 9 libvirt already has a network taken that vxvirt did not define/);
    const undef = await lib(h, 'undefineLibvirtNetwork', 'taken');
    assert.match(undef.stderr, /^LibvirtError 9 libvirt network taken was not defined by vxvirt/);
    assert.match((await h.virsh('net-dumpxml', 'taken')).stdout, /br9/, 'still there, unchanged');
  });

  step("networks demo (VNI 42) and demo2 (VNI 43), with their libvirt networks; bridge br-old for the guests' NICs", async (lab) => {
    const h = lab.host(1);
    for (const [name, vni] of [['demo', '42'], ['demo2', '43']] as const) {
      const out = await vxOk(h, 'virsh', 'define-network', name, '--vni', vni, '--dev', UNDERLAY_DEV, '--remote', '192.168.8.200');
      assert.match(out, new RegExp(`^defined network ${name}: VNI ${vni} on ${UNDERLAY_DEV}, MTU 1450; libvirt network created$`));
    }
    // The NIC's original bridge exists, as it would on a real host.
    await h.exec(['ip', 'link', 'add', 'br-old', 'type', 'bridge'], { check: true });
    await h.exec(['ip', 'link', 'set', 'br-old', 'up'], { check: true });
  });

  // The same steps with each way of reaching libvirt; `fresh` is a copy of
  // vxvirt without node_modules (no bindings), with VXVIRT_LIBVIRT unset.
  const CHECK_SAYS: Record<Backend, RegExp> = {
    bindings: /^bindings @unraid\/libvirt for domains \(VXVIRT_LIBVIRT=bindings\); virsh for libvirt networks and hot-plug$/,
    virsh: /^virsh \(VXVIRT_LIBVIRT=virsh\)$/,
    fresh: /^virsh \(the bindings @unraid\/libvirt did not load: Cannot find package '@unraid\/libvirt' imported from /,
  };
  for (const backend of ['bindings', 'virsh', 'fresh'] as const) {
    const guest = `guest-${backend}`;
    step(`${backend}: vxvirt check says how libvirt is reached`, async (lab) => {
      const h = lab.host(1);
      if (backend === 'fresh') {
        freshCheckout = join(h.dir, 'fresh-vxvirt');
        mkdirSync(freshCheckout, { recursive: true });
        for (const f of ['package.json', 'README.md', 'dist', 'templates', 'hooks']) cpSync(join(REPO, f), join(freshCheckout, f), { recursive: true });
        assert.not.ok(existsSync(join(freshCheckout, 'node_modules')));
      } else if (backend === 'bindings') {
        assert.ok(existsSync(BINDINGS), `the bindings pass needs @unraid/libvirt built (${BINDINGS}): install libvirt-dev, python3, g++ and make, then npm rebuild @unraid/libvirt`);
      }
      const findings = JSON.parse((await vxAs(h, backend, 'check', '--json')).stdout) as Array<{ level: string; subject: string; message: string }>;
      const access = findings.find((f) => f.subject === 'libvirt access');
      log(`${backend}: libvirt access: ${access?.level} ${access?.message}`);
      assert.is(access?.level, 'OK', JSON.stringify(access));
      assert.match(access!.message, CHECK_SAYS[backend]);
    });

    step(`${backend}: attach: a defined guest NIC moves to vxbr42; the guest starts on it with the overlay MTU`, async (lab) => {
      const h = lab.host(1);
      g[guest] = h.guest({ name: guest, addr: '10.20.1.2/24', bridge: 'br-old', interval: 0.5 });
      await g[guest]!.define();
      const before = await dumpInactive(h, guest);

      const out = await vxOk(h, backend, 'attach', guest, '--network', 'demo');
      log(out);
      assert.match(out, /moved .* to network demo \(vxbr42, MTU 1450\)/);
      const after = await dumpInactive(h, guest);
      assert.match(after, /<source bridge='vxbr42'\/>/);
      assert.match(after, /<mtu size='1450'\/>/);
      assert.match(after, /<vxvirt:networks xmlns:vxvirt="https:\/\/vxvirt.dev\/xmlns\/1">/);
      assert.match(after, /&lt;source bridge='br-old'\/&gt;/, 'the original NIC is kept in the metadata');
      // libvirt keeps everything outside the NIC and the metadata.
      const outside = (x: string) => x.replace(/ *<metadata>[\s\S]*<\/metadata>\n/, '').replace(/<interface[\s\S]*?<\/interface>/, '');
      assert.fixture(outside(after), outside(before));
      // Attaching again changes nothing.
      assert.match(await vxOk(h, backend, 'attach', guest, '--network', 'demo'), /already on network demo/);
      assert.is(await dumpInactive(h, guest), after);

      await g[guest]!.startOrThrow();
      assert.is(await masterOf(h, guest, g[guest]!.mac), 'vxbr42', 'the tap is a port of vxbr42 (made by the hook)');
      assert.is(await g[guest]!.eth0Mtu(), 1450, 'the guest learned the overlay MTU from the device');
    });

    step(`${backend}: attach --add --live: a NIC on a second network is hot-plugged, its pair made and the domain recorded as its user`, async (lab) => {
      const h = lab.host(1);
      const out = await vxOk(h, backend, 'attach', guest, '--network', 'demo2', '--add', '--mac', '52:54:00:43:00:01', '--live');
      log(out);
      assert.match(out, /hot-plugged on vxbr43/);
      assert.ok((await h.vxDevices()).includes('vxlan43'), 'vxlan43 made without a hook');
      assert.is(await masterOf(h, guest, '52:54:00:43:00:01'), 'vxbr43');
      const status = JSON.parse((await vxAs(h, backend, 'status', '--json')).stdout) as Array<{ name: string; domains: Array<{ name: string }> }>;
      assert.equal(status.find((n) => n.name === 'demo2')?.domains.map((d) => d.name), [guest]);
      // libvirt re-serialises metadata (double quotes).
      assert.match(await dumpInactive(h, guest), /<vxvirt:interface mac="52:54:00:43:00:01" network="demo2" vni="43" added="yes"\/>/);
    });

    step(`${backend}: attach --interface --live: a running NIC moves from vxbr42 to vxbr43 in place`, async (lab) => {
      const h = lab.host(1);
      const out = await vxOk(h, backend, 'attach', guest, '--network', 'demo2', '--interface', g[guest]!.mac, '--live');
      log(out);
      assert.is(await masterOf(h, guest, g[guest]!.mac), 'vxbr43');
      const xml = await dumpInactive(h, guest);
      assert.match(xml, new RegExp(`<vxvirt:interface mac="${g[guest]!.mac}" network="demo2" vni="43">`));
      assert.match(xml, /&lt;source bridge='br-old'\/&gt;/, 'still the first original');
    });

    step(`${backend}: detach --live: the added NIC goes, the converted one is back on br-old; stopping releases every pair`, async (lab) => {
      const h = lab.host(1);
      const out = await vxOk(h, backend, 'detach', guest, '--live');
      log(out);
      assert.is(await masterOf(h, guest, g[guest]!.mac), 'br-old', 'running NIC moved back');
      const xml = await dumpInactive(h, guest);
      assert.not.match(xml, /vxvirt:|xmlns\/1/, xml);
      assert.not.match(xml, /52:54:00:43:00:01/);
      assert.match(xml, /<source bridge='br-old'\/>/);
      assert.not.match(xml, /<mtu /);
      await g[guest]!.destroy();
      await g[guest]!.waitState('shut off');
      assert.equal(await h.vxDevices(), [], 'release removed vxbr42/43 and vxlan42/43');
    });

    step(`${backend}: errors: unknown domain, bad selector, a running guest without --live`, async (lab) => {
      const h = lab.host(1);
      const none = await vxAs(h, backend, 'attach', 'nosuchvm', '--network', 'demo');
      assert.is(none.code, 8, none.stderr);
      assert.match(none.stderr, /^vxvirt: domain nosuchvm does not exist/);
      const bad = await vxAs(h, backend, 'attach', guest, '--network', 'demo', '--interface', '7');
      assert.is(bad.code, 2, bad.stderr);
      assert.match(bad.stderr, /--interface 7: the domain has 1 interface\(s\)/);
      const nothing = await vxAs(h, backend, 'detach', guest);
      assert.is(nothing.code, 2);
      assert.match(nothing.stderr, /has no NIC that vxvirt attached/);
      await g[guest]!.startOrThrow();
      const r = await vxAs(h, backend, 'attach', guest, '--network', 'demo');
      assert.is(r.code, 0, r.stderr);
      assert.match(r.stderr, /is running: the change applies when it next starts \(or use --live\)/);
      assert.is(await masterOf(h, guest, g[guest]!.mac), 'br-old', 'the running guest is untouched');
      await g[guest]!.destroy();
    });

    step(`${backend}: reconcile asks libvirt: a user it does not run is dropped, one it runs stays, and lost state is found again`, async (lab) => {
      const h = lab.host(1);
      await g[guest]!.startOrThrow(); // on vxbr42 now: the previous step attached it to demo for its next start
      assert.is(await masterOf(h, guest, g[guest]!.mac), 'vxbr42');
      // A domain libvirt does not have, recorded on demo as if its release had been lost.
      const ghost = `<domain type='kvm'><name>ghost</name><uuid>00000000-0000-4000-8000-0000000000ee</uuid><devices><interface type='bridge'><source bridge='vxbr42'/></interface></devices></domain>`;
      const planted = await h.exec(['/etc/libvirt/hooks/qemu', 'ghost', 'prepare', 'begin', '-'], { input: ghost });
      assert.is(planted.code, 0, planted.stderr);
      const users = async () => (JSON.parse((await vxAs(h, backend, 'status', '--json')).stdout) as Array<{ name: string; domains: Array<{ name: string }> }>).find((n) => n.name === 'demo')?.domains.map((d) => d.name).sort();
      assert.equal(await users(), ['ghost', guest]);

      const dropped = await vxAs(h, backend, 'reconcile');
      log(dropped.stdout.trim());
      assert.is(dropped.code, 0, dropped.stdout + dropped.stderr);
      assert.is(dropped.stdout, 'dropped user ghost from demo: domain is not running (libvirt)\ndropped the record of ghost on demo: domain is not running (libvirt)\n');
      assert.equal(await users(), [guest]);
      assert.is(await masterOf(h, guest, g[guest]!.mac), 'vxbr42', 'the running guest keeps its pair');

      // The state directory lost while the guest runs: libvirt's live XML says where it is.
      await h.exec(['rm', '-rf', '/run/vxvirt'], { check: true });
      const found = await vxAs(h, backend, 'reconcile');
      log(found.stdout.trim());
      assert.is(found.code, 0, found.stdout + found.stderr);
      assert.is(
        found.stdout,
        `recorded ${guest} on demo: the domain is running on vxbr42 (libvirt) but was not recorded\nadded user ${guest} to demo: the domain is running on vxbr42 (libvirt) but was not recorded\n`,
      );
      assert.equal(await users(), [guest]);
      // Its release finds the record again and removes the pair.
      await g[guest]!.destroy();
      await g[guest]!.waitState('shut off');
      assert.equal(await h.vxDevices(), [], 'the release removed vxbr42 and vxlan42');
      assert.is((await vxAs(h, backend, 'reconcile')).stdout, 'nothing to do\n');
    });
  }

  step('libvirtd down: define-network writes the definition and warns; reconcile makes the libvirt network once libvirtd is back; undefine-network while it is down, and reconcile removes it', async (lab) => {
    const h = lab.host(1);
    await h.stopLibvirtd();
    const def = await vxAs(h, 'virsh', 'define-network', 'later', '--vni', '44', '--dev', UNDERLAY_DEV, '--remote', '192.168.8.200');
    assert.is(def.code, 0, def.stderr);
    assert.is(def.stdout, `defined network later: VNI 44 on ${UNDERLAY_DEV}, MTU 1450; libvirt network not created yet\n`);
    assert.match(def.stderr, /^vxvirt: warning: libvirt network later was not created \(cannot connect to libvirt at qemu:\/\/\/system: .*\): `vxvirt reconcile` creates it once libvirt is reachable, or run this command again with --replace\n$/);
    await h.startLibvirtd();
    assert.is((await h.virsh('net-info', 'later')).code, 1, 'no libvirt network yet');
    const status = JSON.parse((await vxAs(h, 'virsh', 'status', '--json')).stdout) as Array<{ name: string; libvirtNetwork: Record<string, unknown>; drift: Array<{ detail: string }> }>;
    const row = status.find((r) => r.name === 'later')!;
    assert.equal([row.libvirtNetwork.wanted, row.libvirtNetwork.exists], [true, false]);
    assert.ok(row.drift.some((d) => d.detail === 'libvirt network later does not exist'), JSON.stringify(row.drift));
    // libvirtd, starting, marks a network with <forward mode='bridge'/> whose
    // bridge does not exist inactive (no guest runs, so vxbr42/43 do not), and
    // autostarts networks only at its first start after boot: demo and demo2
    // are down now, and reconcile starts them again.
    const restarted = 'started libvirt network demo: it was inactive\nstarted libvirt network demo2: it was inactive\n';
    const dry = await vxAs(h, 'virsh', 'reconcile', '--dry-run');
    assert.is(dry.code, 11, dry.stderr);
    assert.is(dry.stdout, `${restarted}created libvirt network later on vxbr44: network later is defined with one, and libvirt has none\ndry run: nothing was changed\n`);
    const made = await vxAs(h, 'virsh', 'reconcile');
    assert.is(made.code, 0, made.stdout + made.stderr);
    assert.is(made.stdout, `${restarted}created libvirt network later on vxbr44: network later is defined with one, and libvirt has none\n`);
    const info = (await h.virsh('net-info', 'later')).stdout;
    assert.match(info, /Active:\s+yes/);
    assert.match(info, /Autostart:\s+yes/);
    assert.match(info, /Bridge:\s+vxbr44/);
    assert.is((await vxAs(h, 'virsh', 'reconcile')).stdout, 'nothing to do\n');
    assert.match((await vxAs(h, 'virsh', 'status')).stdout, /\nlater\s+44\s+.*\s+active\n/);

    await h.stopLibvirtd();
    const undef = await vxAs(h, 'virsh', 'undefine-network', 'later');
    assert.is(undef.code, 0, undef.stderr);
    assert.is(undef.stdout, 'undefined network later\n');
    assert.match(undef.stderr, /^vxvirt: warning: libvirt network later was not removed \(cannot connect to libvirt at .*\): `vxvirt reconcile` removes it, if vxvirt made it, once libvirt is reachable\n$/);
    await h.startLibvirtd();
    const text = (await vxAs(h, 'virsh', 'status')).stdout;
    assert.match(text, /\n {2}later: libvirt network later was made by vxvirt for a network that is not defined\n/);
    const removed = await vxAs(h, 'virsh', 'reconcile');
    assert.is(removed.code, 0, removed.stdout + removed.stderr);
    assert.is(removed.stdout, `${restarted}removed libvirt network later (vxbr44): network later is no longer defined\n`);
    assert.is((await h.virsh('net-info', 'later')).code, 1, 'the libvirt network is gone');
    // The networks still defined keep theirs.
    assert.match((await h.virsh('net-info', 'demo')).stdout, /Active:\s+yes/);
  });
  test.run();
}
