// The hook bundle with crash points compiled in (src/crash-point.ts):
// scripts/build.mjs's build of that entry, but VXVIRT_CRASH_POINTS=true. Run
// with node exactly as hooks/qemu runs dist/hook.cjs; VXVIRT_CRASH_AT=POINT
// kills it there (or the process it hands a release's teardown to),
// VXVIRT_PAUSE_AT=POINT stops it there until SIGCONT.
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import * as assert from 'uvu/assert';
import { repo } from './netns.ts';

/** Every crashPoint('…') and crashPointInChild('…') in src/, so a new one cannot go untested. */
export function crashPointsInSource(): string[] {
  const r = spawnSync('grep', ['-rhoE', "crashPoint(InChild)?\\('[^']+'\\)", join(repo, 'src')], { encoding: 'utf8' });
  return [...new Set(r.stdout.split('\n').filter(Boolean).map((l) => /'([^']+)'/.exec(l)![1]!))].sort();
}

/** Build the bundle of entry `name` of scripts/build.mjs (the qemu hook's by default) into `dir`; returns its path. */
export function buildCrashBundle(dir: string, name: 'hook' | 'network-hook' = 'hook'): string {
  const script = `import { build } from 'esbuild';
import { buildOptions } from './scripts/build.mjs';
const options = buildOptions(${JSON.stringify(name)}, { crashPoints: true, outdir: ${JSON.stringify(dir)} });
const [file] = (await build(options)).outputFiles;
const { writeFileSync } = await import('node:fs');
writeFileSync(file.path, file.contents);
process.stdout.write(file.path);`;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { cwd: repo, encoding: 'utf8' });
  assert.is(r.status, 0, `esbuild: ${r.stderr}`);
  return r.stdout.trim();
}
