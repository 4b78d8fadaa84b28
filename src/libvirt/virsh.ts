// `virsh`, the one command-line client every libvirt host has
// (libvirt-clients): the runner every libvirt module here uses, and the
// domain backend when the bindings are not there (or VXVIRT_LIBVIRT=virsh).
//
// virsh runs with LC_ALL=C (its messages are read, see virsh-output.ts) and
// stdin closed. Domains are named with --domain NAME, so a name that starts
// with '-' is not taken for an option.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { LibvirtError, ToolError } from '../errors.ts';
import { failure, isLiveXml, libvirtUri, noSuchDomain, unreachable, type ActiveDomain, type DomainBackend, type DomainState } from './backend.ts';
import { classifyVirshError, domainNameOf, parseDomainInfo, parseDomainList, type VirshFailure } from './virsh-output.ts';

export interface VirshResult {
  ok: boolean;
  stdout: string;
  stderr: string;
}

export const VIRSH_MISSING_HINT = 'install libvirt-clients';

export async function virsh(args: readonly string[]): Promise<VirshResult> {
  // With reject: false, execa returns a failure to start (ENOENT) rather than throwing it.
  const r = await execa('virsh', ['-q', '-c', libvirtUri(), ...args], {
    reject: false,
    stdin: 'ignore',
    // XML is passed on exactly as libvirt wrote it, as the bindings pass it.
    stripFinalNewline: false,
    env: { LC_ALL: 'C', LANG: 'C', LANGUAGE: '' },
  });
  if ((r as { code?: string }).code === 'ENOENT') {
    throw new ToolError(`virsh not found on PATH (${process.env.PATH ?? ''}): ${VIRSH_MISSING_HINT}`);
  }
  return { ok: r.exitCode === 0, stdout: String(r.stdout), stderr: String(r.stderr) };
}

/** A failed virsh call as an error: libvirt not reachable is the same error whatever was asked. */
export function virshFailure(what: string, f: VirshFailure): LibvirtError {
  if (f.kind === 'unreachable') return unreachable(f.detail);
  return new LibvirtError(`${what}: ${f.all}`);
}

/** Run virsh; its stdout, or an error saying `what` failed (with all of virsh's lines). */
export async function virshOk(what: string, args: readonly string[]): Promise<string> {
  const r = await virsh(args);
  if (!r.ok) throw virshFailure(what, classifyVirshError(r.stderr));
  return r.stdout;
}

/** Run `virsh SUBCOMMAND … FILE …` with `xml` in a private temporary file. */
export async function withXmlFile<T>(xml: string, fn: (path: string) => Promise<T>): Promise<T> {
  const dir = mkdtempSync(join(tmpdir(), 'vxvirt-'));
  const path = join(dir, 'object.xml');
  try {
    writeFileSync(path, xml, { mode: 0o600 });
    return await fn(path);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

// ---- domains ------------------------------------------------------------------

/**
 * A virsh call about domain `name`, its errors worded as the bindings word
 * them: no such domain -> NotFoundError, unreachable -> the connection
 * error, anything else -> `what: libvirt's message`.
 */
async function domainCall(name: string, what: string, args: readonly string[]): Promise<string> {
  const r = await virsh(args);
  if (r.ok) return r.stdout;
  const f = classifyVirshError(r.stderr);
  if (f.kind === 'unreachable') throw unreachable(f.detail);
  if (f.kind === 'no-domain') throw noSuchDomain(name);
  throw failure(what, f.detail);
}

/** Like domainCall, but a domain that is gone by now gives undefined. */
async function domainCallIfThere(what: string, args: readonly string[]): Promise<string | undefined> {
  const r = await virsh(args);
  if (r.ok) return r.stdout;
  const f = classifyVirshError(r.stderr);
  if (f.kind === 'unreachable') throw unreachable(f.detail);
  if (f.kind === 'no-domain') return undefined;
  throw failure(what, f.detail);
}

async function readDomainState(name: string): Promise<DomainState> {
  const what = `reading domain ${name}`;
  const persistentXml = await domainCall(name, what, ['dumpxml', '--inactive', '--security-info', '--domain', name]);
  // virsh also takes a domain's id or UUID for its name; the bindings look up
  // by name only, and so does vxvirt.
  if (domainNameOf(persistentXml) !== name) throw noSuchDomain(name);
  const info = parseDomainInfo(await domainCall(name, what, ['dominfo', '--domain', name]));
  if (!info.uuid) throw failure(what, 'virsh dominfo printed no UUID');
  const state: DomainState = { name, uuid: info.uuid, persistentXml, running: info.id !== undefined };
  if (state.running) {
    const live = await domainCall(name, what, ['dumpxml', '--security-info', '--domain', name]);
    // Stopped since dominfo: what came back is the inactive definition.
    state.running = isLiveXml(live);
    if (state.running) state.liveXml = live;
  }
  return state;
}

/** How many `virsh dumpxml` run at once when listing active domains. */
const LIST_PARALLEL = 4;

async function listActiveDomains(): Promise<ActiveDomain[]> {
  const r = await virsh(['list', '--uuid', '--name']);
  if (!r.ok) {
    const f = classifyVirshError(r.stderr);
    if (f.kind === 'unreachable') throw unreachable(f.detail);
    throw failure('listing the active domains', f.detail);
  }
  const listed = parseDomainList(r.stdout);
  const read: Array<ActiveDomain | undefined> = new Array(listed.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < listed.length) {
      const i = next++;
      const d = listed[i]!;
      // By UUID: a domain renamed meanwhile is still the one listed.
      const xml = await domainCallIfThere('reading an active domain', ['dumpxml', '--domain', d.uuid]);
      // Gone (transient) or stopped (its inactive XML) since the list: not active.
      if (xml !== undefined && isLiveXml(xml)) read[i] = { uuid: d.uuid, name: d.name, liveXml: xml };
    }
  };
  await Promise.all(Array.from({ length: Math.min(LIST_PARALLEL, listed.length) }, worker));
  return read.filter((d): d is ActiveDomain => d !== undefined);
}

async function defineDomain(xml: string): Promise<string> {
  const name = domainNameOf(xml);
  await withXmlFile(xml, async (path) => {
    const r = await virsh(['define', '--file', path]);
    if (r.ok) return;
    const f = classifyVirshError(r.stderr);
    if (f.kind === 'unreachable') throw unreachable(f.detail);
    throw failure('libvirt refused the domain XML', f.detail);
  });
  if (name === undefined) throw failure('reading back the defined domain', 'the domain XML has no <name>');
  const r = await virsh(['dumpxml', '--inactive', '--security-info', '--domain', name]);
  if (!r.ok) {
    const f = classifyVirshError(r.stderr);
    if (f.kind === 'unreachable') throw unreachable(f.detail);
    throw failure('reading back the defined domain', f.detail);
  }
  return r.stdout;
}

export const virshBackend: DomainBackend = { kind: 'virsh', readDomainState, listActiveDomains, defineDomain };
