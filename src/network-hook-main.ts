// Entry point of the bundled network hook (dist/network-hook.js), started by hooks/network.
import { runHookEntry } from './hook-entry.ts';
import { runNetworkHook } from './network-hook.ts';

await runHookEntry(['port-created', 'port-deleted'], 'network hook data on stdin', runNetworkHook);
