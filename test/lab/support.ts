// Glue between uvu and the lab: one lab per suite, created by the suite's first
// test (so a setup failure is reported as a failed test with diagnostics,
// not as a crashed runner), destroyed by `after` whatever happened.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { suite, type Test } from 'uvu';
import * as assert from 'uvu/assert';
import { INSTALLED, Lab, VXVIRT_ROOT, vxvirtHookFile, type Guest, type Host, type LabOptions } from './lab.ts';

export const log = (line: string): void => {
  process.stdout.write(`\n  [lab] ${line}`);
};

export interface LabSuite {
  test: Test;
  /** The lab (throws if setup failed, so later tests fail with that reason). */
  lab(): Lab;
  /** Register a test whose failure carries the lab's diagnostics. */
  step(name: string, fn: (lab: Lab) => Promise<void>): void;
}

export function labSuite(title: string, name: string, hosts: number, options: Pick<LabOptions, 'daemons'> = {}): LabSuite {
  const test = suite(title);
  let lab: Lab | undefined;
  let setupError: unknown;
  let t0 = Date.now();
  test.before(() => {
    t0 = Date.now();
  });
  test.after(() => {
    lab?.destroySync();
    log(`${title}: lab removed, suite took ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  });
  const daemons = options.daemons === 'modular' ? 'virtqemud + virtnetworkd' : 'libvirtd';
  test(`lab: ${hosts} hosts with their own ${daemons}, vxvirt hook installed`, async () => {
    for (const f of ['dist/cli.js', 'dist/hook.js', 'hooks/qemu']) {
      if (!existsSync(join(VXVIRT_ROOT, f))) {
        setupError = new Error(`${join(VXVIRT_ROOT, f)} is missing: ${INSTALLED ? 'install the vxvirt package' : "run 'npm ci && npm run build' first"}`);
        throw setupError;
      }
    }
    try {
      lab = await Lab.create({ name, hosts, log, ...options });
    } catch (err) {
      setupError = err;
      throw err;
    }
    for (const h of lab.hosts) {
      const r = await h.exec(['readlink', '-f', '/etc/libvirt/hooks/qemu']);
      assert.is(r.stdout.trim(), vxvirtHookFile('qemu'), `hook on ${h.name}`);
    }
  });
  const get = (): Lab => {
    if (!lab) throw new Error(`no lab: setup failed (${setupError instanceof Error ? setupError.message.split('\n')[0] : String(setupError)})`);
    return lab;
  };
  return {
    test,
    lab: get,
    step: (stepName, fn) =>
      test(stepName, async () => {
        const l = get();
        const t = Date.now();
        await l.check(stepName, () => fn(l));
        log(`${stepName}: ${((Date.now() - t) / 1000).toFixed(1)} s`);
      }),
  };
}

/** `vxvirt ...` inside a host; asserts success and returns stdout+stderr. */
export async function vxvirt(host: Host, ...args: string[]): Promise<string> {
  const r = await host.vxvirt(...args);
  const out = (r.stdout + r.stderr).trim();
  if (r.code !== 0) throw new Error(`on ${host.name}: vxvirt ${args.join(' ')} exited ${r.code}:\n${out}`);
  return out;
}

export async function assertDevices(host: Host, expected: string[], why: string): Promise<void> {
  const got = await host.vxDevices();
  assert.equal(got, [...expected].sort(), `${host.name}: vxbr*/vxlan* devices ${why}: expected [${expected.join(' ')}], got [${got.join(' ')}]`);
}

/** Wait until every guest has had `count` answers from each of its peers (pings are in parallel). */
export async function waitAllPing(guests: Guest[], peersOf: (g: Guest) => string[], opts: { count?: number; timeoutMs?: number; since?: Map<Guest, number> } = {}): Promise<string[]> {
  const lines: string[] = [];
  await Promise.all(
    guests.flatMap((g) =>
      peersOf(g).map(async (p) => {
        const s = await g.waitPingOk(p, { count: opts.count ?? 2, timeoutMs: opts.timeoutMs ?? 90_000, since: opts.since?.get(g) ?? 0 });
        lines.push(`${g.name} ${g.spec.addr.split('/')[0]} -> ${p}: ${s.ok} ok / ${s.fail} fail`);
      }),
    ),
  );
  return lines.sort();
}

export const addrOf = (g: Guest): string => g.spec.addr.split('/')[0]!;
