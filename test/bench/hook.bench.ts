// Benchmark: what the hook costs per call, as libvirt calls it, in a private
// network namespace. Run with `npm run bench` (root). Prints the median and
// 90th percentile wall time of each kind of call; asserts nothing.
import { bridgeNic, domainXml, networkNic, TestHost } from '../support/netns.ts';

const rounds = Number(process.env.ROUNDS ?? 30);

function time(fn: () => void): number {
  const t = process.hrtime.bigint();
  fn();
  return Number(process.hrtime.bigint() - t) / 1e6;
}

function report(label: string, samples: number[]): void {
  const s = [...samples].sort((a, b) => a - b);
  const q = (p: number) => s[Math.min(s.length - 1, Math.floor(p * s.length))]!.toFixed(1);
  process.stdout.write(`${label.padEnd(58)} median ${q(0.5).padStart(6)} ms   p90 ${q(0.9).padStart(6)} ms   (n=${s.length})\n`);
}

const host = new TestHost('bench');
try {
  host.addUnderlay();
  const vx = domainXml('vm', '00000000-0000-4000-8000-000000000001', bridgeNic('vxbr42'));
  const plain = domainXml('plain', '00000000-0000-4000-8000-000000000002', `${bridgeNic('br0')}\n${networkNic('default')}`);
  const check = (r: { status: number; stderr: string }) => {
    if (r.status !== 0) throw new Error(r.stderr);
  };

  report('baseline: node -e 0', Array.from({ length: rounds }, () => time(() => host.exec(process.execPath, ['-e', '0']))));
  report('no networks defined: prepare (sh only)', Array.from({ length: rounds }, () => time(() => check(host.hook('vm', 'prepare', 'begin', vx)))));
  check(host.vxvirt('define-network', '--no-libvirt', 'tut', '--vni', '42', '--dev', 'ens47f1', '--remote', '192.168.8.101'));
  report('ignored operation: started begin (sh only)', Array.from({ length: rounds }, () => time(() => check(host.hook('vm', 'started', 'begin', vx)))));
  report('domain without vxvirt NICs: prepare', Array.from({ length: rounds }, () => time(() => check(host.hook('plain', 'prepare', 'begin', plain)))));
  const prepare: number[] = [];
  const again: number[] = [];
  const release: number[] = [];
  for (let i = 0; i < rounds; i++) {
    prepare.push(time(() => check(host.hook('vm', 'prepare', 'begin', vx))));
    again.push(time(() => check(host.hook('vm', 'prepare', 'begin', vx))));
    release.push(time(() => check(host.hook('vm', 'release', 'end', vx))));
  }
  report('prepare: create bridge + vxlan', prepare);
  report('prepare again: pair already there', again);
  report('release: last user, delete the pair', release);
} finally {
  host.destroy();
}
