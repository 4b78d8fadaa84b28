// Option parsing helpers shared by the commands. yargs turns `--vni abc` into
// NaN, so numeric options are declared as strings and checked by the
// definition's validator, which names the option and the allowed range.
import { UsageError } from '../errors.ts';

/** A repeatable option as a list (yargs gives a string for one use, an array for several). */
export function list(value: unknown): string[] {
  if (value === undefined) return [];
  return (Array.isArray(value) ? value : [value]).map(String);
}

/** A single-valued option given more than once is a mistake worth naming. */
export function single(option: string, value: unknown): string | undefined {
  if (value === undefined) return undefined;
  if (Array.isArray(value)) {
    throw new UsageError(`--${option} is given ${value.length} times (${value.join(', ')}): give it once`);
  }
  return String(value);
}
