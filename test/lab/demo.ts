// The README tutorial, for real: two simulated hosts, a point-to-point VXLAN
// network tenant1 (VNI 42, 192.168.8.100 <-> 192.168.8.101 on ens47f1), a
// guest on each host (10.20.1.2 and 10.20.1.3) put on it with `vxvirt attach`,
// started, pinging each other, destroyed; teardown. One line per step; a
// summary at the end; exit status 1 if any step failed.
import { INSTALLED, Lab, UNDERLAY_DEV, VXVIRT_CLI, vxvirtHookFile, type Guest, type Host } from './lab.ts';
import { shellQuote } from './exec.ts';

interface Step {
  title: string;
  ok: boolean;
  ms: number;
  detail?: string;
}

const out = (line: string) => process.stdout.write(line + '\n');

export async function runDemo(): Promise<number> {
  const t0 = Date.now();
  const steps: Step[] = [];
  let lab: Lab | undefined;
  let failed = false;

  const step = async (title: string, fn: () => Promise<string>): Promise<void> => {
    if (failed) {
      steps.push({ title, ok: false, ms: 0, detail: 'skipped (an earlier step failed)' });
      return;
    }
    const t = Date.now();
    out(`\n==> ${title}`);
    try {
      const detail = await fn();
      steps.push({ title, ok: true, ms: Date.now() - t, detail });
      out(`    ok (${((Date.now() - t) / 1000).toFixed(1)} s)`);
    } catch (err) {
      failed = true;
      const msg = err instanceof Error ? err.message : String(err);
      steps.push({ title, ok: false, ms: Date.now() - t, detail: msg.split('\n')[0] });
      out(`    FAILED: ${msg}`);
      if (lab) out(await lab.diagnostics().catch((e) => `(diagnostics failed: ${e})`));
    }
  };

  const say = (host: Host | undefined, line: string) => out(`    ${host ? `[${host.name}] ` : ''}${line}`);
  const vx = async (h: Host, ...args: string[]) => {
    say(h, `$ vxvirt ${shellQuote(args)}`);
    const r = await h.vxvirt(...args);
    for (const l of (r.stdout + r.stderr).trim().split('\n').filter(Boolean)) say(h, `  ${l}`);
    if (r.code !== 0) throw new Error(`vxvirt ${args[0]} on ${h.name} exited ${r.code}`);
  };
  const devices = async (h: Host) => {
    const d = await h.vxDevices();
    return d.length ? d.join(' ') : '(none)';
  };

  let h1!: Host, h2!: Host, g1!: Guest, g2!: Guest;
  try {
    await step('bring up two simulated hosts (netns + private mounts, own libvirtd, vxvirt hook)', async () => {
      lab = await Lab.create({ name: 'demo', hosts: 2, log: (l) => say(undefined, l) });
      [h1, h2] = [lab.host(1), lab.host(2)];
      for (const h of lab.hosts) {
        const hook = (await h.exec(['readlink', '/etc/libvirt/hooks/qemu'])).stdout.trim();
        say(h, `${UNDERLAY_DEV} ${h.ip}/24, libvirtd pid ${h.pidOf('libvirtd')}, /etc/libvirt/hooks/qemu -> ${hook}`);
        if (hook !== vxvirtHookFile('qemu')) throw new Error(`${h.name}: the qemu hook is ${hook}, not ${vxvirtHookFile('qemu')}`);
      }
      const node = (await h1.exec(['sh', '-c', 'command -v node && node --version'])).stdout.trim().replace(/\n/, ' ');
      say(undefined, `vxvirt: ${VXVIRT_CLI.join(' ')}${INSTALLED ? ' (the installed package)' : ''}; node on the hosts' PATH: ${node}`);
      return `${lab.id}`;
    });

    await step('define the network tenant1 on both hosts (point-to-point, VNI 42)', async () => {
      await vx(h1, 'define-network', 'tenant1', '--vni', '42', '--dev', UNDERLAY_DEV, '--local', h1.ip, '--remote', h2.ip);
      await vx(h2, 'define-network', 'tenant1', '--vni', '42', '--dev', UNDERLAY_DEV, '--local', h2.ip, '--remote', h1.ip);
      for (const h of [h1, h2]) say(h, `devices now: ${await devices(h)} (created when a guest starts)`);
      return 'tenant1: VNI 42';
    });

    await step('define a guest on each host (its NIC on some other bridge, virbr0), then vxvirt attach it to tenant1', async () => {
      g1 = h1.guest({ name: 'vm1', addr: '10.20.1.2/24', peers: ['10.20.1.3'], bridge: 'virbr0', interval: 0.5 });
      g2 = h2.guest({ name: 'vm2', addr: '10.20.1.3/24', peers: ['10.20.1.2'], bridge: 'virbr0', interval: 0.5 });
      for (const g of [g1, g2]) {
        await g.define();
        say(g.host, `$ virsh define ${g.name}.xml: 128 MiB TCG guest, NIC ${g.mac} on virbr0`);
        await vx(g.host, 'attach', g.name, '--network', 'tenant1');
        const xml = (await g.host.virsh('dumpxml', '--inactive', g.name)).stdout;
        const nic = /<interface[\s\S]*?<\/interface>/.exec(xml)?.[0] ?? '(no interface!)';
        say(g.host, `${g.name}'s NIC now: ${nic.replace(/\s*\n\s*/g, ' ')}`);
        if (!/bridge='vxbr42'/.test(nic)) throw new Error(`${g.name}'s NIC is not on vxbr42 after vxvirt attach`);
      }
      return 'vm1, vm2 on tenant1';
    });

    await step('virsh start both guests (the hook creates vxbr42 + vxlan42)', async () => {
      for (const g of [g1, g2]) {
        const before = await devices(g.host);
        const r = await g.start();
        say(g.host, `$ virsh start ${g.name}: exit ${r.code} in ${r.ms} ms: ${(r.stdout + r.stderr).trim()}`);
        if (r.code !== 0) throw new Error(`virsh start ${g.name} failed`);
        say(g.host, `devices before [${before}] after [${await devices(g.host)}]`);
      }
      const d = (await h1.linkDetails('vxlan42')).replace(/\s+/g, ' ');
      const pick = (re: RegExp) => re.exec(d)?.[0] ?? '?';
      say(h1, `vxlan42: ${pick(/vxlan id \d+/)}, ${pick(/remote \S+/)}, ${pick(/local \S+/)}, ${pick(/dev \S+/)}, ${pick(/dstport \d+/)}, ${pick(/mtu \d+/)}, ${pick(/master \S+/)}`);
      const ports = (await h1.exec(['bridge', 'link', 'show', 'master', 'vxbr42'])).stdout
        .split('\n')
        .map((l) => /^\d+:\s+([^:@\s]+)/.exec(l)?.[1])
        .filter(Boolean);
      say(h1, `vxbr42 ports: ${ports.join(' ')}`);
      return 'both running';
    });

    await step('ping across the VXLAN: 10.20.1.2 <-> 10.20.1.3', async () => {
      const t = Date.now();
      const [s1, s2] = await Promise.all([g1.waitPingOk('10.20.1.3', { count: 3, timeoutMs: 90_000 }), g2.waitPingOk('10.20.1.2', { count: 3, timeoutMs: 90_000 })]);
      say(h1, `vm1 10.20.1.2 -> 10.20.1.3: ${s1.ok} answered, ${s1.fail} lost while vm2 was still booting`);
      say(h2, `vm2 10.20.1.3 -> 10.20.1.2: ${s2.ok} answered, ${s2.fail} lost while vm1 was still booting`);
      say(undefined, `guest eth0 MTU: vm1 ${await g1.eth0Mtu()}, vm2 ${await g2.eth0Mtu()}; 3 answers each way ${((Date.now() - t) / 1000).toFixed(1)} s after the start`);
      return `${s1.ok}+${s2.ok} answers`;
    });

    await step('virsh destroy both guests (the hook removes the devices)', async () => {
      for (const g of [g1, g2]) {
        const before = await devices(g.host);
        const r = await g.destroy();
        say(g.host, `$ virsh destroy ${g.name}: exit ${r.code} in ${r.ms} ms`);
        if (r.code !== 0) throw new Error(`virsh destroy ${g.name} failed: ${r.stderr}`);
        const after = await devices(g.host);
        say(g.host, `devices before [${before}] after [${after}]`);
        if (after !== '(none)') throw new Error(`${g.host.name} still has ${after}`);
      }
      return 'no devices left';
    });
  } finally {
    const t = Date.now();
    if (lab) {
      out('\n==> tear down the lab (daemons, namespaces, state)');
      lab.destroySync();
      out(`    ok (${((Date.now() - t) / 1000).toFixed(1)} s)`);
    }
  }

  out('\n==> summary');
  for (const s of steps) out(`    ${s.ok ? 'PASS' : 'FAIL'}  ${s.title}${s.detail ? ` — ${s.detail}` : ''}`);
  const passed = steps.filter((s) => s.ok).length;
  out(`    demo ${failed ? 'FAILED' : 'passed'}: ${passed}/${steps.length} steps in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  return failed ? 1 : 0;
}
