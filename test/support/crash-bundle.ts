// The hook bundle with crash points compiled in (src/crash-point.ts):
// scripts/build.mjs's build, but VXVIRT_CRASH_POINTS=true. Run with node exactly as
// hooks/qemu runs dist/hook.js; VXVIRT_CRASH_AT=POINT kills it there,
// VXVIRT_PAUSE_AT=POINT stops it there until SIGCONT.
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import * as assert from 'uvu/assert';
import { repo } from './netns.ts';

/** Every crashPoint('…') in src/, so a new one cannot go untested. */
export function crashPointsInSource(): string[] {
  const r = spawnSync('grep', ['-rhoE', "crashPoint\\('[^']+'\\)", join(repo, 'src')], { encoding: 'utf8' });
  return [...new Set(r.stdout.split('\n').filter(Boolean).map((l) => /'([^']+)'/.exec(l)![1]!))].sort();
}

/** Build the bundle of `entry` (the qemu hook's by default) into `dir` as NAME.mjs; returns its path. */
export function buildCrashBundle(dir: string, entry = 'src/hook-main.ts', name = 'hook'): string {
  const build = readFileSync(join(repo, 'scripts/build.mjs'), 'utf8');
  const banner = /const banner =\s*"((?:[^"\\]|\\.)*)"/.exec(build)?.[1]?.replace(/\\(.)/g, '$1');
  assert.ok(banner, 'the banner of the build script (scripts/build.mjs)');
  // .mjs: outside the repository no package.json says "type": "module".
  const out = join(dir, `${name}.mjs`);
  const r = spawnSync(
    join(repo, 'node_modules/.bin/esbuild'),
    [entry, '--bundle', '--platform=node', '--target=node20', '--format=esm', '--log-level=warning', '--define:VXVIRT_CRASH_POINTS=true', `--banner:js=${banner}`, `--outfile=${out}`],
    { cwd: repo, encoding: 'utf8' },
  );
  assert.is(r.status, 0, `esbuild: ${r.stderr}`);
  return out;
}
