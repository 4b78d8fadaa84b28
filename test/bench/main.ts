// `npm run bench`: what vxvirt costs, side by side with a hand-written shell
// hook (test/bench/shell-hook.sh) in the same run, and `virsh start` +
// `virsh destroy` with and without vxvirt in the lab. Prints one table and
// the targets; asserts nothing about time (results go in BENCHMARKS.md).
//
//   npm run bench                 everything (root; the lab part needs libvirt + QEMU)
//   npm run bench -- --no-lab     only the hook
//   npm run bench -- --no-subreaper
//                                 the virsh section without a child subreaper
//   ROUNDS=50 npm run bench       more rounds (default 30 for the hook, 8 for virsh)
//
// The benchmark runs under `tini -s`, a child subreaper, as the lab tests do
// (test/run.mjs): `virsh destroy` waits until QEMU is reaped, and this
// machine's PID 1 reaps orphans 1-2 s late, where a systemd host reaps them
// at once. --no-subreaper leaves them to PID 1, for comparison.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { repo } from '../support/netns.ts';
import { ms, table, type Row } from './stats.ts';
import { virshBench, type VirshSummary } from './virsh.ts';

interface HookSummary {
  lifecycleRatio: number;
  lifecycleRatioAtScale: number;
  scaleRatio: number;
  shellScaleRatio: number;
  ignoredWorst: number;
  shellFloor: number;
  burstPrepareTotal: number;
  burstPrepareLongest: number;
  burstReleaseTotal: number;
  burstBeforeLock: number;
  burstUnderLock: number;
  scaleSetup: string;
}

function hookBench(): { rows: Row[]; summary: HookSummary } {
  const ns = `vxbench-${process.pid}`;
  const dir = mkdtempSync(join(tmpdir(), 'vxvirt-bench-'));
  const mustIp = (...args: string[]) => {
    const r = spawnSync('ip', args, { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`ip ${args.join(' ')}: ${r.stderr}`);
  };
  mustIp('netns', 'add', ns);
  try {
    const r = spawnSync('ip', ['netns', 'exec', ns, process.execPath, '--import', 'tsx', join(repo, 'test/bench/hook-inside.ts')], {
      cwd: repo,
      env: { ...process.env, VXVIRT_CONFIG_DIR: join(dir, 'etc'), VXVIRT_STATE_DIR: join(dir, 'run'), VXVIRT_LOG_FILE: join(dir, 'vxvirt.log') },
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'inherit'],
      maxBuffer: 64 << 20,
    });
    if (r.status !== 0) throw new Error(`hook benchmark failed (exit ${r.status})`);
    return JSON.parse(r.stdout.trim().split('\n').at(-1)!);
  } finally {
    spawnSync('ip', ['netns', 'del', ns]);
    rmSync(dir, { recursive: true, force: true });
  }
}

const SUBREAPER_ENV = 'VXVIRT_BENCH_SUBREAPER';
const subreaper = !process.argv.includes('--no-subreaper');
if (subreaper && process.env[SUBREAPER_ENV] !== 'tini') {
  // Run again as the child of `tini -s`: orphans are reparented to the nearest subreaper above them.
  const r = spawnSync('tini', ['-s', '--', process.execPath, ...process.execArgv, ...process.argv.slice(1)], {
    stdio: 'inherit',
    env: { ...process.env, [SUBREAPER_ENV]: 'tini' },
  });
  if (r.error) throw new Error(`cannot run tini (apt-get install tini), or use --no-subreaper: ${r.error.message}`);
  process.exit(r.status ?? 1);
}

const withLab = !process.argv.includes('--no-lab');
const started = Date.now();
const hook = hookBench();
const rows = [...hook.rows];
let virsh: VirshSummary | undefined;
if (withLab) {
  const v = await virshBench();
  rows.push(...v.rows);
  virsh = v.summary;
}

const s = hook.summary;
const verdict = (ok: boolean) => (ok ? 'met' : 'MISSED');
const out = (l = '') => process.stdout.write(`${l}\n`);
out(`vxvirt benchmark — ${new Date().toISOString().slice(0, 10)}, ${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}, node ${process.version}, ${((Date.now() - started) / 1000).toFixed(0)} s, ${subreaper ? 'under a child subreaper (tini -s)' : 'without a subreaper (orphans reaped by PID 1)'}`);
out();
out(table(rows));
out();
out('| target | result | |');
out('|---|---|---|');
out(`| lifecycle vs shell hook ≤ 1.5 (aim ≤ 1.0) | ${s.lifecycleRatio.toFixed(2)} (at scale ${s.lifecycleRatioAtScale.toFixed(2)}) | ${verdict(s.lifecycleRatio <= 1.5)} |`);
out(`| ignored operations and domains without vxvirt NICs ≤ 10 ms | worst median ${ms(s.ignoredWorst)} ms; a shell hook that only exits: ${ms(s.shellFloor)} ms here | ${verdict(s.ignoredWorst <= 10)} |`);
// The shell hook's own change between the two phases is drift of the machine: divided out, what is left is vxvirt's growth.
const corrected = s.scaleRatio / s.shellScaleRatio;
out(`| scale: 1,000 networks + 500 domains ≤ 1.15 × 1 network | ${s.scaleRatio.toFixed(2)}; the shell hook in the same rounds ${s.shellScaleRatio.toFixed(2)}, so vxvirt's own growth ${corrected.toFixed(2)} | ${verdict(s.scaleRatio <= 1.15)}${s.scaleRatio > 1.15 && corrected <= 1.15 ? ' (met once drift is divided out)' : ''} |`);
out(`| burst: 64 prepares over 8 VNIs | ${ms(s.burstPrepareTotal)} ms total, longest hook ${ms(s.burstPrepareLongest)} ms (with the lock held: ${ms(s.burstBeforeLock)} ms before it, ${ms(s.burstUnderLock)} ms under it); 64 releases ${ms(s.burstReleaseTotal)} ms | reported |`);
if (virsh) {
  out(`| virsh start + destroy, vxvirt vs the shell hook ≤ 1.05 (aim ≤ 1.0) | ${virsh.vsShell.toFixed(3)} | ${verdict(virsh.vsShell <= 1.05)} |`);
  out(`| virsh start + destroy, vxvirt vs bridge made beforehand ≤ 1.10 (aim ≤ 1.03) | ${virsh.ratio.toFixed(3)} (the shell hook: ${virsh.shellRatio.toFixed(3)}) | ${verdict(virsh.ratio <= 1.1)} |`);
}
