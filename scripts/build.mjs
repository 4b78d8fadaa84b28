#!/usr/bin/env node
// Builds dist/ from src/: one self-contained bundle per entry point (the CLI,
// the qemu hook, the network hook), no shared chunks, so each file is the
// whole of its program.
// Each bundle is written beside its final name and renamed over it: rename(2)
// is atomic, so a hook that libvirt starts while a build (or an upgrade) runs
// loads the old bundle or the new one, never a mix of both.
//
//   node scripts/build.mjs [--outdir DIR] [--version VERSION] [--metafile FILE]
//
// --outdir: where the bundles go (default dist/ of this checkout); --version:
// the version the bundles say they are (default package.json's), e.g. to
// build two distinguishable versions for the upgrade test; --metafile: also
// write esbuild's account of what went into each bundle (scripts/package.mjs
// lists the bundled npm packages' licenses from it).
import { build } from 'esbuild';
import { chmod, mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');

// The hooks are CommonJS (.cjs, since package.json says "type": "module"):
// node starts a CommonJS bundle faster than an ES module (no ESM loader), and
// libvirt starts a hook several times per guest start and stop.
export const entries = {
  cli: { file: 'src/cli/main.ts', format: 'esm' },
  hook: { file: 'src/hook-main.ts', format: 'cjs' },
  'network-hook': { file: 'src/network-hook-main.ts', format: 'cjs' },
};
// Executable bundles: run directly as programs.
const executable = new Set(['cli']);

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

// ESM bundles still meet CommonJS dependencies (yargs' and execa's helpers)
// that call require(): give them one.
export const banner =
  "import { createRequire as __vxvirtRequire } from 'node:module'; const require = __vxvirtRequire(import.meta.url);";

/**
 * esbuild's options for one entry (test/support/crash-bundle.ts builds with
 * them, crash points on). `version` is what the bundle says it is.
 */
export function buildOptions(name, { crashPoints = false, outdir = join(root, 'dist'), version = '0.0.0', metafile = false } = {}) {
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
    define: { VXVIRT_CRASH_POINTS: String(crashPoints), VXVIRT_VERSION: JSON.stringify(version) },
    minifySyntax: true,
    ...(format === 'esm' ? { banner: { js: banner } } : {}),
    plugins: [cliuiWordWrap],
    metafile,
  };
}

/**
 * Build every entry into `outdir`, each bundle written beside its name and
 * renamed into place; with `metafile`, esbuild's account of all of them is
 * written there.
 */
export async function buildBundles({ outdir = join(root, 'dist'), version, metafile } = {}) {
  version ??= JSON.parse(await readFile(join(root, 'package.json'), 'utf8')).version;
  outdir = resolve(outdir);
  await mkdir(outdir, { recursive: true });
  const merged = { inputs: {}, outputs: {} };
  for (const name of Object.keys(entries)) {
    const result = await build(buildOptions(name, { outdir, version, metafile: metafile !== undefined }));
    if (result.metafile) {
      Object.assign(merged.inputs, result.metafile.inputs);
      Object.assign(merged.outputs, result.metafile.outputs);
    }
    for (const file of result.outputFiles) {
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
  if (metafile !== undefined) await writeFile(metafile, JSON.stringify(merged));
}

if (process.argv[1] && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) {
  const { values } = parseArgs({ options: { outdir: { type: 'string' }, version: { type: 'string' }, metafile: { type: 'string' } } });
  await buildBundles(values);
}
