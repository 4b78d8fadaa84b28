#!/usr/bin/env node
// Builds dist/ from src/: one self-contained bundle per entry point (the CLI,
// the qemu hook, the network hook), no shared chunks, so each file is the
// whole of its program.
// Each bundle is written beside its final name and renamed over it: rename(2)
// is atomic, so a hook that libvirt starts while a build (or an upgrade) runs
// loads the old bundle or the new one, never a mix of both.
import { build } from 'esbuild';
import { chmod, mkdir, rename, rm, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const dist = join(root, 'dist');

// --metafile FILE: also write esbuild's account of what went into each bundle
// (scripts/package.mjs lists the bundled npm packages' licenses from it).
const metafileArg = process.argv.indexOf('--metafile');
const metafilePath = metafileArg >= 0 ? process.argv[metafileArg + 1] : undefined;

const entries = {
  cli: 'src/cli/main.ts',
  hook: 'src/hook-main.ts',
  'network-hook': 'src/network-hook-main.ts',
};
// Executable bundles: run directly as programs.
const executable = new Set(['cli']);

// ESM bundles still meet CommonJS dependencies (yargs' and execa's helpers)
// that call require(): give them one.
// yargs' ESM entry takes cliui's ESM wrapper, which wraps --help text by
// cutting lines at the width, mid-word ("the kerne / l allows"); its CommonJS
// build wraps at word boundaries (wrap-ansi). Bundle that one.
const cliuiWordWrap = {
  name: 'cliui-word-wrap',
  setup(b) {
    b.onResolve({ filter: /^cliui$/ }, (args) => ({
      path: createRequire(args.importer).resolve('cliui'),
    }));
  },
};

const banner =
  "import { createRequire as __vxvirtRequire } from 'node:module'; const require = __vxvirtRequire(import.meta.url);";

await mkdir(dist, { recursive: true });
const result = await build({
  entryPoints: Object.fromEntries(Object.entries(entries).map(([name, file]) => [name, join(root, file)])),
  bundle: true,
  platform: 'node',
  target: 'node18.19',
  format: 'esm',
  outdir: dist,
  write: false,
  logLevel: 'warning',
  define: { VXVIRT_CRASH_POINTS: 'false' },
  minifySyntax: true,
  banner: { js: banner },
  plugins: [cliuiWordWrap],
  metafile: metafilePath !== undefined,
});

for (const file of result.outputFiles) {
  const name = file.path.slice(dist.length + 1).replace(/\.js$/, '');
  const beside = `${file.path}.new-${process.pid}`;
  try {
    await writeFile(beside, file.contents, { mode: executable.has(name) ? 0o755 : 0o644 });
    if (executable.has(name)) await chmod(beside, 0o755);
    await rename(beside, file.path);
  } catch (err) {
    await rm(beside, { force: true });
    throw err;
  }
}

if (metafilePath) await writeFile(metafilePath, JSON.stringify(result.metafile));
