// What both bundled hook entry points (hook-main.ts, network-hook-main.ts) do
// around their operation: start the `ip` session before reading stdin, so
// ip's exec — and the host lock, which the session's process takes first —
// overlap reading and parsing it; end the session and flush the change log
// whatever happens; leave the exit status in process.exitCode.
// A run in the background (hooks/qemu's release) has no one to read its
// stderr: its error goes to the change log as well.
import type { HookIo } from './hook.ts';
import { readStdinSync, takeInputFromEnvironment } from './hook-stdin.ts';
import { endSession, LOCK_CONFLICT_STATUS, startSession } from './iproute.ts';
import { flushChangeLog, realEffects, type Effects } from './lifecycle.ts';
import { lockAcquiredBy, openHostLockEarly } from './store.ts';

export async function runHookEntry(
  ipOperations: readonly string[],
  stdinWhat: string,
  run: (argv: readonly string[], io: HookIo, fx: Effects) => Promise<number>,
): Promise<void> {
  const argv = process.argv.slice(2);
  const input = takeInputFromEnvironment();
  const background = process.env.VXVIRT_LOCK_HELD_BY_PARENT !== undefined;
  if (ipOperations.includes(argv[1] ?? '')) {
    // The session takes the host lock as it starts (iproute.ts's SessionLock),
    // unless the parent holds it for this run (background).
    const lock = background ? undefined : openHostLockEarly();
    const session = startSession(lock);
    if (lock && session.locked) lockAcquiredBy({ held: session.locked, timedOut: () => session.status === LOCK_CONFLICT_STATUS });
  }
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
  // Node ends when nothing it waits for holds it alive: should a wait ever
  // lose its hold (a bug), the hook would end mid-work. It then fails where
  // failing is allowed (prepare, port-created: the start stops) and says so.
  let finished = false;
  process.exitCode = argv[1] === 'prepare' || argv[1] === 'port-created' ? 1 : 0;
  process.once('exit', () => {
    if (!finished) process.stderr.write(`vxvirt: internal error: the hook's ${operation} ended before its work was done\n`);
  });
  try {
    process.exitCode = await run(
      argv,
      {
        readStdin: async () => readStdinSync(stdinWhat, input),
        error: (line) => {
          process.stderr.write(`${line}\n`);
          if (background) realEffects.log({ action: 'failed', domain: argv[0], operation, error: line });
        },
        background,
      },
      fx,
    );
    finished = true;
  } finally {
    endSession();
    flushChangeLog();
  }
}
