// Entry point of the bundled network hook (dist/network-hook.cjs), started by hooks/network.
import { readStdinSync } from './hook-stdin.ts';
import { endSession, startSession } from './iproute.ts';
import { flushChangeLog } from './lifecycle.ts';
import { runNetworkHook } from './network-hook.ts';

const [, op] = process.argv.slice(2);
// Start ip now, so its exec overlaps reading and parsing the XML.
if (op === 'port-created' || op === 'port-deleted') startSession();
// CommonJS (scripts/build.mjs says why): no top-level await.
runNetworkHook(process.argv.slice(2), {
  readStdin: async () => readStdinSync('network hook data on stdin'),
  error: (line) => process.stderr.write(`${line}\n`),
})
  .then((status) => {
    process.exitCode = status;
  })
  .finally(() => {
    endSession();
    flushChangeLog();
  });
