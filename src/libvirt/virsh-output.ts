// What virsh prints, read. Pure, so every reading is unit-tested.
// virsh runs with LC_ALL=C (virsh.ts): its own words are not translated.
import { firstChild, parseXml, textContent } from '../xml.ts';

/**
 * What went wrong, from virsh's stderr. virsh prints its own line ("failed to
 * get domain 'x'", "Failed to define domain from FILE", "failed to connect to
 * the hypervisor") and then libvirt's message, each as "error: …". `detail`
 * is libvirt's message, as the bindings give it; `all` every line.
 */
export type VirshFailure =
  | { kind: 'unreachable'; detail: string; all: string }
  | { kind: 'no-domain'; detail: string; all: string }
  | { kind: 'no-network'; detail: string; all: string }
  | { kind: 'other'; detail: string; all: string };

export function virshErrorLines(stderr: string): string[] {
  return stderr
    .split('\n')
    .map((l) => l.replace(/^error:\s*/, '').trim())
    .filter(Boolean);
}

export function classifyVirshError(stderr: string): VirshFailure {
  const lines = virshErrorLines(stderr);
  const all = lines.join('; ') || 'virsh failed without a message';
  const connect = lines.findIndex((l) => /^failed to connect to the hypervisor$/i.test(l));
  if (connect >= 0) {
    const rest = lines.filter((_, i) => i !== connect);
    return { kind: 'unreachable', detail: rest.join('; ') || lines[connect]!, all };
  }
  // virsh looks a domain up by id, UUID and name and, when all fail, says only
  // this (libvirt's "Domain not found" is dropped on the way).
  if (lines.some((l) => /^failed to get domain\b/i.test(l) || /^Domain not found\b/i.test(l))) return { kind: 'no-domain', detail: 'Domain not found', all };
  if (lines.some((l) => /network not found|no network with matching name|^failed to get network\b/i.test(l))) return { kind: 'no-network', detail: all, all };
  const detail = (lines.length > 1 ? lines.slice(1) : lines).join('; ') || all;
  return { kind: 'other', detail, all };
}

/** `virsh list --uuid --name`: one "UUID NAME" line per domain (a name may hold spaces). */
export function parseDomainList(stdout: string): Array<{ uuid: string; name: string }> {
  const out: Array<{ uuid: string; name: string }> = [];
  for (const line of stdout.split('\n')) {
    const m = /^\s*([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}) (.+)$/.exec(line);
    if (m) out.push({ uuid: m[1]!.toLowerCase(), name: m[2]! });
  }
  return out;
}

/** `virsh dominfo`: the fields vxvirt uses. `id` is undefined for a domain that is not running ("Id: -"). */
export function parseDomainInfo(stdout: string): { id?: number; uuid?: string } {
  const field = (label: string): string | undefined => new RegExp(`^${label}:[ \\t]*(.*)$`, 'm').exec(stdout)?.[1]?.trim();
  const out: { id?: number; uuid?: string } = {};
  const id = field('Id');
  if (id !== undefined && /^\d+$/.test(id)) out.id = Number(id);
  const uuid = field('UUID');
  if (uuid) out.uuid = uuid;
  return out;
}

/** `virsh net-list --name`: one name per line. */
export const parseNameList = (stdout: string): string[] =>
  stdout
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean);

/** The <name> of a domain's XML (what libvirt names it by), or undefined. */
export function domainNameOf(xml: string): string | undefined {
  try {
    const el = firstChild(parseXml(xml).root, 'name');
    return el && textContent(xml, el).trim();
  } catch {
    return undefined;
  }
}
