// Reads a kernel setting from /proc/sys. The net.* settings shown there are
// those of the reading process's network namespace, which is the host's for
// the hook and the CLI (and the test's private one in the integration tests).
import { readFileSync } from 'node:fs';
import { sysctlPath } from './host-limits.ts';

/** A numeric sysctl's value, or undefined when it cannot be read (absent, not numeric, no permission). */
export function readSysctl(name: string): number | undefined {
  try {
    const value = Number(readFileSync(sysctlPath(name), 'utf8').trim());
    return Number.isFinite(value) ? value : undefined;
  } catch {
    return undefined;
  }
}
