#!/usr/bin/env node
// Is node_modules what package-lock.json says it should be? Exit 0 if so;
// otherwise print why not (one line) and exit 1, so that scripts/install-deps
// runs `npm ci`. With BINDINGS_BUILDABLE=yes (what the optional libvirt
// bindings need to build is installed), bindings that do not load count as
// missing: the npm ci that skipped them ran before their build dependencies.
import { existsSync, readFileSync, statSync } from 'node:fs';

const root = new URL('..', import.meta.url).pathname;
const read = (p) => JSON.parse(readFileSync(root + p, 'utf8'));

function whyNot() {
  const marker = 'node_modules/.package-lock.json';
  if (!existsSync(root + marker)) return 'node_modules is not installed';
  if (statSync(root + 'package-lock.json').mtimeMs > statSync(root + marker).mtimeMs) return 'package-lock.json is newer than node_modules';
  const lock = read('package-lock.json');
  const pkg = read('package.json');
  const direct = { ...pkg.dependencies, ...pkg.devDependencies };
  for (const name of Object.keys(direct)) {
    const want = lock.packages?.[`node_modules/${name}`]?.version;
    let have;
    try {
      have = read(`node_modules/${name}/package.json`).version;
    } catch {
      return `${name} is not installed`;
    }
    if (want && have !== want) return `${name} is ${have}, package-lock.json says ${want}`;
  }
  return undefined;
}

async function bindingsLoad() {
  for (const name of Object.keys(read('package.json').optionalDependencies ?? {})) {
    try {
      await import(name);
    } catch (err) {
      return `the optional ${name} does not load (${String(err?.message ?? err).split('\n')[0]})`;
    }
  }
  return undefined;
}

let reason = whyNot();
if (!reason && process.env.BINDINGS_BUILDABLE === 'yes') reason = await bindingsLoad();
if (reason) {
  console.log(reason);
  process.exit(1);
}
