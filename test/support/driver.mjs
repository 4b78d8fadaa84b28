// One suite's test files in one uvu process, for test/run.mjs:
//
//   node --import tsx --import ./test/support/uvu-redirect.mjs test/support/driver.mjs REPORT FILE...
//
// Imports each FILE (its tests register through uvu-tracked.mjs), runs them
// with uvu (its usual output on stdout, for people), then writes REPORT: per
// file, every registered test with how it ended, import errors, and whether
// uvu finished. The report is written at process exit whatever happened, so
// a test that ends the process early leaves its unfinished tests on record.
import { writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';

const [report, ...files] = process.argv.slice(2);
if (!report) throw new Error('usage: driver.mjs REPORT FILE...');

globalThis.UVU_DEFER = 1; // uvu waits for exec() instead of running at import
const uvu = await import('./uvu-tracked.mjs');
const registry = globalThis.__vxvirtTestRegistry;

const importErrors = {};
let finished = false;
let execError;
process.on('exit', (code) => {
  writeFileSync(report, JSON.stringify({ files, groups: registry.groups, importErrors, execError, finished, exitCode: code }));
});

for (const [index, file] of files.entries()) {
  globalThis.UVU_INDEX = index;
  globalThis.UVU_QUEUE.push([file]);
  registry.file = file;
  try {
    await import(pathToFileURL(resolve(file)).href);
  } catch (err) {
    importErrors[file] = String(err instanceof Error ? err.message : err).split('\n')[0];
    console.error(err);
  }
}
registry.file = undefined;

if (process.env.VXVIRT_TEST_REGISTER_ONLY !== '1') {
  try {
    await uvu.exec(false);
  } catch (err) {
    // A failing `after` hook escapes uvu and stops the files after it.
    execError = String(err instanceof Error ? err.message : err).split('\n')[0];
    console.error(err);
    process.exitCode = 1;
  }
}
finished = true;
