// Reads and writes kernel settings in /proc/sys. The net.* settings shown there are
// those of the reading process's network namespace, which is the host's for
// the hook and the CLI (and the test's private one in the integration tests).
import { readFileSync, writeFileSync } from 'node:fs';
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

/** Set a sysctl of this network namespace; false when it cannot be written (absent on this kernel, no permission). */
export function writeSysctl(name: string, value: number): boolean {
  try {
    writeFileSync(sysctlPath(name), `${value}\n`);
    return true;
  } catch {
    return false;
  }
}
