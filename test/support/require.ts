// Prerequisites of single tests (a tool on PATH, a built file). A test calls
// `needs('xmllint')` before using it: when it is missing, the test fails with
// one line naming it and how to install it — or, when a partial run was asked
// for (VXVIRT_TEST_PARTIAL=1, see test/run.mjs), test/support/uvu-tracked.mjs
// records it as skipped and the runner counts and names it. Never a silent
// pass. How to install each one: `tools` in test/support/suites.json.
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

const REPO = new URL('../..', import.meta.url).pathname;
const HINTS = (JSON.parse(readFileSync(join(REPO, 'test/support/suites.json'), 'utf8')) as { tools: Record<string, string> }).tools;
/** Daemons live in sbin, which a non-root PATH often lacks. */
const SEARCH_PATH = `${process.env.PATH ?? ''}:/usr/local/sbin:/usr/sbin:/sbin`;

export class MissingPrerequisite extends Error {
  override name = 'MissingPrerequisite';
  /** What uvu-tracked.mjs looks for. */
  readonly missingPrerequisite = true;
}

const known = new Map<string, boolean>();

/** Whether `what` is here: `root`, a path (with a `/`; relative to the repository) or a command on PATH. */
export function present(what: string): boolean {
  let ok = known.get(what);
  if (ok === undefined) {
    if (what === 'root') ok = process.getuid?.() === 0;
    else if (what.includes('/')) ok = existsSync(what.startsWith('/') ? what : join(REPO, what));
    else ok = spawnSync('sh', ['-c', 'command -v "$1"', 'sh', what], { env: { ...process.env, PATH: SEARCH_PATH } }).status === 0;
    known.set(what, ok);
  }
  return ok;
}

/** Throws MissingPrerequisite naming everything in `what` that is missing and how to get it. */
export function needs(...what: string[]): void {
  const missing = what.filter((w) => !present(w));
  if (missing.length === 0) return;
  const how = missing.map((m) => `${m} (${HINTS[m] ?? 'not in the tools table of test/support/suites.json'})`);
  throw new MissingPrerequisite(`missing ${how.join(', ')}; test/all installs what the tests need`);
}
