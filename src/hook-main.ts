// Entry point of the bundled qemu hook (dist/hook.js), started by hooks/qemu.
import { runHookEntry } from './hook-entry.ts';
import { runHook } from './hook.ts';

await runHookEntry(['prepare', 'release', 'reconnect'], 'domain XML on stdin', runHook);
