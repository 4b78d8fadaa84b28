// End to end: `virsh start` + `virsh destroy` of the same small TCG guest on
// three one-host labs: a vxvirt network (the hook creates and deletes the
// pair); the hand-written shell hook (test/bench/shell-hook.sh) doing the
// same `ip` work; and a bridge made beforehand on a host with no hook at
// all. Rounds are interleaved so that drift hits all three alike. The
// difference between "no hook" and the shell hook is what any hook costs:
// libvirt formats the domain XML and runs the hook five times per lifecycle.
import { join } from 'node:path';
import { Lab, REPO, UNDERLAY_DEV, type Guest, type Host } from '../lab/lab.ts';
import { median, row, sums, type Row } from './stats.ts';

export interface VirshSummary {
  ratio: number;
  shellRatio: number;
  /** vxvirt's start + destroy over the shell hook's, in the same rounds. */
  vsShell: number;
}

const ROUNDS = Number(process.env.VIRSH_ROUNDS ?? 8);

async function must(h: Host, cmd: string[]): Promise<void> {
  const r = await h.exec(cmd);
  if (r.code !== 0) throw new Error(`${cmd.join(' ')}: ${r.stderr}`);
}

export async function virshBench(): Promise<{ rows: Row[]; summary: VirshSummary }> {
  const labs: Lab[] = [];
  try {
    const [vx, sh, none] = await Promise.all([
      Lab.create({ name: 'benchvx', hosts: 1 }),
      Lab.create({ name: 'benchsh', hosts: 1, hook: join(REPO, 'test/bench/shell-hook.sh') }),
      Lab.create({ name: 'benchbr', hosts: 1, hook: false }),
    ]);
    labs.push(vx!, sh!, none!);
    const hv = vx!.host(1);
    const hs = sh!.host(1);
    const hb = none!.host(1);
    const def = await hv.vxvirt('define-network', 'bench', '--vni', '42', '--dev', UNDERLAY_DEV, '--local', hv.ip, '--remote', '10.99.0.250');
    if (def.code !== 0) throw new Error(`define-network: ${def.stderr}`);
    // The shell hook's underlay and addresses are fixed: host 1 of a lab has them.
    if (hs.ip !== '192.168.8.100' || UNDERLAY_DEV !== 'ens47f1') throw new Error(`the shell hook expects 192.168.8.100 on ens47f1, the lab host has ${hs.ip} on ${UNDERLAY_DEV}`);
    await must(hb, ['ip', 'link', 'add', 'br0', 'mtu', '1450', 'type', 'bridge']);
    await must(hb, ['ip', 'link', 'set', 'br0', 'up']);
    const spec = { name: 'bench', addr: '10.20.1.2/24', peers: [], mtu: 1450 };
    const guests: Array<[string, Guest]> = [
      ['vxvirt', hv.guest({ ...spec, bridge: 'vxbr42' })],
      ['shell hook', hs.guest({ ...spec, bridge: 'vxbr42' })],
      ['no hook', hb.guest({ ...spec, bridge: 'br0' })],
    ];
    for (const [, g] of guests) await g.define();
    const times = new Map(guests.map(([label]) => [label, { start: [] as number[], destroy: [] as number[] }]));
    for (let i = 0; i < ROUNDS + 1; i++) {
      for (const [label, g] of guests) {
        const s = await g.start();
        if (s.code !== 0) throw new Error(`virsh start (${label}): ${s.stderr}`);
        const d = await g.destroy();
        if (d.code !== 0) throw new Error(`virsh destroy (${label}): ${d.stderr}`);
        if (i === 0) continue; // the first round warms the caches
        times.get(label)!.start.push(s.ms);
        times.get(label)!.destroy.push(d.ms);
      }
    }
    const total = (label: string) => sums(times.get(label)!.start, times.get(label)!.destroy);
    const ratio = median(total('vxvirt')) / median(total('no hook'));
    const shellRatio = median(total('shell hook')) / median(total('no hook'));
    const vsShell = median(total('vxvirt')) / median(total('shell hook'));
    const rows: Row[] = [];
    for (const [label] of guests) {
      rows.push(row('virsh', `virsh start, ${label}`, times.get(label)!.start), row('virsh', `virsh destroy, ${label}`, times.get(label)!.destroy));
    }
    rows.push(
      row('virsh', 'start + destroy, vxvirt', total('vxvirt'), `vxvirt / no hook = ${ratio.toFixed(3)}, vxvirt / shell hook = ${vsShell.toFixed(3)}`),
      row('virsh', 'start + destroy, shell hook', total('shell hook'), `shell hook / no hook = ${shellRatio.toFixed(3)}`),
      row('virsh', 'start + destroy, no hook (bridge made beforehand)', total('no hook')),
    );
    return { rows, summary: { ratio, shellRatio, vsShell } };
  } finally {
    for (const lab of labs) lab.destroySync();
  }
}
