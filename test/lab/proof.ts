// Harness self-test without vxvirt: a hand-made bridge + VXLAN pair in each of
// two hosts (point-to-point VNI 42 over 192.168.8.100 <-> .101) and two guests
// (10.20.1.2 <-> 10.20.1.3) that must ping each other across the underlay.
import { Lab, UNDERLAY_DEV, type Log } from './lab.ts';

export async function runProof(log: Log): Promise<{ ok: number; ms: number }> {
  const t0 = Date.now();
  const lab = await Lab.create({ name: 'proof', hosts: 2, hook: false, log });
  try {
    return await lab.check('hand-made VXLAN proof', async () => {
      const [h1, h2] = [lab.host(1), lab.host(2)];
      for (const [h, peer] of [
        [h1, h2.ip],
        [h2, h1.ip],
      ] as const) {
        await h.sh(
          `set -e
ip link add vxlan42 type vxlan id 42 local ${h.ip} remote ${peer} dev ${UNDERLAY_DEV} dstport 4789
ip link add vxbr42 type bridge
ip link set vxlan42 master vxbr42
ip link set vxlan42 up
ip link set vxbr42 up`,
          { check: true },
        );
        log(`${h.name}: created ${(await h.vxDevices()).join(' ')} by hand`);
      }
      const g1 = h1.guest({ name: 'proof1', addr: '10.20.1.2/24', peers: ['10.20.1.3'], bridge: 'vxbr42' });
      const g2 = h2.guest({ name: 'proof2', addr: '10.20.1.3/24', peers: ['10.20.1.2'], bridge: 'vxbr42' });
      await Promise.all([g1.define(), g2.define()]);
      const tStart = Date.now();
      await Promise.all([g1.startOrThrow(), g2.startOrThrow()]);
      log(`started ${g1.name} on ${h1.name} and ${g2.name} on ${h2.name} in ${Date.now() - tStart} ms`);
      const [s1, s2] = await Promise.all([g1.waitPingOk('10.20.1.3', { count: 3 }), g2.waitPingOk('10.20.1.2', { count: 3 })]);
      log(`${g1.name} 10.20.1.2 -> 10.20.1.3: ${s1.ok} ok, ${s1.fail} fail; ${g2.name} 10.20.1.3 -> 10.20.1.2: ${s2.ok} ok, ${s2.fail} fail (${Date.now() - tStart} ms after start)`);
      log(`guest eth0 MTU ${await g1.eth0Mtu()}`);
      const tDestroy = Date.now();
      await Promise.all([g1.destroy(), g2.destroy()]);
      log(`destroyed both guests in ${Date.now() - tDestroy} ms`);
      return { ok: s1.ok + s2.ok, ms: Date.now() - t0 };
    });
  } finally {
    lab.destroySync();
    log(`lab removed; total ${Date.now() - t0} ms`);
  }
}
