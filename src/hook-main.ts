// Entry point of the bundled qemu hook (dist/hook.cjs), started by hooks/qemu.
import { readStdinSync } from './hook-stdin.ts';
import { runHook } from './hook.ts';
import { endSession, startSession } from './iproute.ts';
import { flushChangeLog } from './lifecycle.ts';

const [, op] = process.argv.slice(2);
// Start ip now, so its exec overlaps reading and parsing the XML.
if (op === 'prepare' || op === 'release' || op === 'reconnect') startSession();
// CommonJS (scripts/build.mjs says why): no top-level await.
runHook(process.argv.slice(2), {
  readStdin: async () => readStdinSync('domain XML on stdin'),
  error: (line) => process.stderr.write(`${line}\n`),
})
  .then((status) => {
    process.exitCode = status;
  })
  .finally(() => {
    endSession();
    flushChangeLog();
  });
