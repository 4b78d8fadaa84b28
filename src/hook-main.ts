// Entry point of the bundled qemu hook (dist/hook.cjs), started by hooks/qemu.
// CommonJS (scripts/build.mjs says why): no top-level await.
import { runHookEntry } from './hook-entry.ts';
import { runHook } from './hook.ts';

void runHookEntry(['prepare', 'release', 'reconnect'], 'domain XML on stdin', runHook);
