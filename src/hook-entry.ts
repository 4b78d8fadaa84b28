// What both bundled hook entry points (hook-main.ts, network-hook-main.ts) do
// around their operation: start the `ip` session before reading stdin, so
// ip's exec overlaps reading and parsing it; end the session and flush the
// change log whatever happens; leave the exit status in process.exitCode.
// A run in the background (hooks/qemu's release) has no one to read its
// stderr: its error goes to the change log as well.
import type { HookIo } from './hook.ts';
import { readStdinSync } from './hook-stdin.ts';
import { endSession, startSession } from './iproute.ts';
import { flushChangeLog, realEffects, type Effects } from './lifecycle.ts';

export async function runHookEntry(
  ipOperations: readonly string[],
  stdinWhat: string,
  run: (argv: readonly string[], io: HookIo, fx: Effects) => Promise<number>,
): Promise<void> {
  const argv = process.argv.slice(2);
  if (ipOperations.includes(argv[1] ?? '')) startSession();
  const background = process.env.VXVIRT_LOCK_HELD_BY_PARENT !== undefined;
  const operation = `${argv[1]} ${argv[2]}`;
  const fx: Effects = background
    ? {
        ...realEffects,
        warn: (message) => {
          realEffects.warn(message);
          realEffects.log({ action: 'warning', domain: argv[0], operation, message });
        },
      }
    : realEffects;
  try {
    process.exitCode = await run(
      argv,
      {
        readStdin: async () => readStdinSync(stdinWhat),
        error: (line) => {
          process.stderr.write(`${line}\n`);
          if (background) realEffects.log({ action: 'failed', domain: argv[0], operation, error: line });
        },
        background,
      },
      fx,
    );
  } finally {
    endSession();
    flushChangeLog();
  }
}
