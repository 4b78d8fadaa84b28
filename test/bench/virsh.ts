// End to end: `virsh start` + `virsh destroy` of the same small TCG guest,
// once on a vxvirt network (the hook creates and deletes the pair) and once
// on a bridge made beforehand on a host without the hook. Two one-host labs,
// rounds interleaved so that drift hits both alike.
import { Lab, UNDERLAY_DEV, type Guest } from '../lab/lab.ts';
import { median, row, sums, type Row } from './stats.ts';

export interface VirshSummary {
  ratio: number;
}

const ROUNDS = Number(process.env.VIRSH_ROUNDS ?? 8);

export async function virshBench(): Promise<{ rows: Row[]; summary: VirshSummary }> {
  let withHook: Lab | undefined;
  let without: Lab | undefined;
  try {
    [withHook, without] = await Promise.all([Lab.create({ name: 'benchvx', hosts: 1 }), Lab.create({ name: 'benchbr', hosts: 1, hook: false })]);
    const hv = withHook.host(1);
    const hb = without.host(1);
    const def = await hv.vxvirt('define-network', 'bench', '--vni', '42', '--dev', UNDERLAY_DEV, '--local', hv.ip, '--remote', '10.99.0.250');
    if (def.code !== 0) throw new Error(`define-network: ${def.stderr}`);
    for (const cmd of [
      ['ip', 'link', 'add', 'br0', 'mtu', '1450', 'type', 'bridge'],
      ['ip', 'link', 'set', 'br0', 'up'],
    ]) {
      const r = await hb.exec(cmd);
      if (r.code !== 0) throw new Error(`${cmd.join(' ')}: ${r.stderr}`);
    }
    const gv: Guest = hv.guest({ name: 'bench', addr: '10.20.1.2/24', peers: [], bridge: 'vxbr42', mtu: 1450 });
    const gb: Guest = hb.guest({ name: 'bench', addr: '10.20.1.2/24', peers: [], bridge: 'br0', mtu: 1450 });
    await gv.define();
    await gb.define();
    const t = { vxStart: [] as number[], vxDestroy: [] as number[], brStart: [] as number[], brDestroy: [] as number[] };
    for (let i = 0; i < ROUNDS + 1; i++) {
      const keep = i > 0; // the first round warms the caches
      for (const [g, start, destroy] of [
        [gv, t.vxStart, t.vxDestroy],
        [gb, t.brStart, t.brDestroy],
      ] as const) {
        const s = await g.start();
        if (s.code !== 0) throw new Error(`virsh start on ${g.host.name}: ${s.stderr}`);
        const d = await g.destroy();
        if (d.code !== 0) throw new Error(`virsh destroy on ${g.host.name}: ${d.stderr}`);
        if (keep) {
          start.push(s.ms);
          destroy.push(d.ms);
        }
      }
    }
    const vx = sums(t.vxStart, t.vxDestroy);
    const br = sums(t.brStart, t.brDestroy);
    const ratio = median(vx) / median(br);
    return {
      rows: [
        row('virsh', 'virsh start, vxvirt network (hook creates the pair)', t.vxStart),
        row('virsh', 'virsh destroy, vxvirt network (hook deletes the pair)', t.vxDestroy),
        row('virsh', 'virsh start, bridge made beforehand, no hook', t.brStart),
        row('virsh', 'virsh destroy, bridge made beforehand, no hook', t.brDestroy),
        row('virsh', 'start + destroy, vxvirt', vx),
        row('virsh', 'start + destroy, no hook', br, `vxvirt / no hook = ${ratio.toFixed(3)}`),
      ],
      summary: { ratio },
    };
  } finally {
    withHook?.destroySync();
    without?.destroySync();
  }
}
