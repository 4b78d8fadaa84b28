// The XML vxvirt writes into libvirt's documents: its namespace, and the
// skeletons in templates/ (a NIC for the generator, a libvirt network for
// libvirt/networks.ts) with their {{field}}s filled. Pure but for reading a
// template file.
import { readFileSync } from 'node:fs';
import { InternalError } from './errors.ts';
import { escapeAttribute } from './xml.ts';

/** The namespace of vxvirt's elements in libvirt's <metadata>. */
export const VXVIRT_XMLNS = 'https://vxvirt.dev/xmlns/1';

/** Read a template from the package's templates/ directory (next to src/ and dist/). */
export function readTemplate(name: 'interface.xml' | 'network.xml'): string {
  const text = readFileSync(new URL(`../templates/${name}`, import.meta.url), 'utf8');
  // The leading comment documents the template; it is not part of the output.
  return text.replace(/^\s*<!--[\s\S]*?-->\s*/, '');
}

/**
 * Fill a template's {{field}}s (XML-escaped, quotes included, so they fit
 * either quote style). A line holding a field whose value is undefined is
 * left out. With `quote` '"', the template's single-quoted attribute values
 * are written in double quotes.
 */
export function fillTemplate(
  template: string,
  fields: Readonly<Record<string, string | number | undefined>>,
  quote: '"' | "'" = "'",
): string {
  const lines: string[] = [];
  for (const line of template.replace(/\s+$/, '').split('\n')) {
    let missing = false;
    const filled = line.replace(/\{\{(\w+)\}\}/g, (_, key: string) => {
      if (!(key in fields)) throw new InternalError(`template field {{${key}}} has no value`);
      const v = fields[key];
      if (v === undefined) {
        missing = true;
        return '';
      }
      return escapeAttribute(String(v), "'").replace(/"/g, '&quot;');
    });
    if (!missing) lines.push(quote === '"' ? filled.replace(/='([^']*)'/g, '="$1"') : filled);
  }
  return lines.join('\n');
}
