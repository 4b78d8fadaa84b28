// What both bundled hook entry points (hook-main.ts, network-hook-main.ts) do
// around their operation: start the `ip` session before reading stdin, so
// ip's exec overlaps reading and parsing it; end the session and flush the
// change log whatever happens; leave the exit status in process.exitCode.
import type { HookIo } from './hook.ts';
import { readStdinSync } from './hook-stdin.ts';
import { endSession, startSession } from './iproute.ts';
import { flushChangeLog } from './lifecycle.ts';

export async function runHookEntry(
  ipOperations: readonly string[],
  stdinWhat: string,
  run: (argv: readonly string[], io: HookIo) => Promise<number>,
): Promise<void> {
  const argv = process.argv.slice(2);
  if (ipOperations.includes(argv[1] ?? '')) startSession();
  try {
    process.exitCode = await run(argv, {
      readStdin: async () => readStdinSync(stdinWhat),
      error: (line) => process.stderr.write(`${line}\n`),
    });
  } finally {
    endSession();
    flushChangeLog();
  }
}
