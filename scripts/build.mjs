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

// The hooks are CommonJS (.cjs, since package.json says "type": "module"):
// node starts a CommonJS bundle faster than an ES module (no ESM loader), and
// libvirt starts a hook several times per guest start and stop.

// --metafile FILE: also write esbuild's account of what went into each bundle
// (scripts/package.mjs lists the bundled npm packages' licenses from it).
const metafileArg = process.argv.indexOf('--metafile');
const metafilePath = metafileArg >= 0 ? process.argv[metafileArg + 1] : undefined;

const entries = {
  cli: { file: 'src/cli/main.ts', format: 'esm' },
  hook: { file: 'src/hook-main.ts', format: 'cjs' },
  'network-hook': { file: 'src/network-hook-main.ts', format: 'cjs' },
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

/** esbuild's options for one entry (test/support/crash-bundle.ts builds with them, crash points on). */
export function buildOptions(name, { crashPoints = false, outdir = dist, metafile = false } = {}) {
  const { file, format } = entries[name];
  return {
    entryPoints: { [name]: join(root, file) },
    bundle: true,
    platform: 'node',
    target: 'node18.19',
    format,
    outExtension: { '.js': format === 'cjs' ? '.cjs' : '.js' },
    outdir,
    write: false,
    logLevel: 'warning',
    define: { VXVIRT_CRASH_POINTS: String(crashPoints) },
    minifySyntax: true,
    ...(format === 'esm' ? { banner: { js: banner } } : {}),
    plugins: [cliuiWordWrap],
    metafile,
  };
}

/**
 * Build every entry into `outdir`, each file written beside its name and
 * renamed over it. Returns esbuild's metafiles of all entries, merged, when
 * asked for one.
 */
export async function buildAll({ crashPoints = false, outdir = dist, metafile = false } = {}) {
  await mkdir(outdir, { recursive: true });
  const merged = { inputs: {}, outputs: {} };
  for (const name of Object.keys(entries)) {
    const result = await build(buildOptions(name, { crashPoints, outdir, metafile }));
    const { outputFiles } = result;
    if (result.metafile) {
      Object.assign(merged.inputs, result.metafile.inputs);
      Object.assign(merged.outputs, result.metafile.outputs);
    }
    for (const file of outputFiles) {
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
  }
  return metafile ? merged : undefined;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const metafile = await buildAll({ metafile: metafilePath !== undefined });
  if (metafilePath) await writeFile(metafilePath, JSON.stringify(metafile));
}
