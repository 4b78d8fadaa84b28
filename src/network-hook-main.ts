// Entry point of the bundled network hook (dist/network-hook.cjs), started by hooks/network.
// CommonJS (scripts/build.mjs says why): no top-level await.
import { runHookEntry } from './hook-entry.ts';
import { runNetworkHook } from './network-hook.ts';

void runHookEntry(['port-created', 'port-deleted'], 'network hook data on stdin', runNetworkHook);
