// The hooks' stdin, read synchronously: at most MAX_DOMAIN_XML_BYTES,
// strictly UTF-8 (domain-xml.ts says why). Not process.stdin: that would
// first load node's stream and net modules, several milliseconds on every VM
// start and stop. Past the cap nothing more is read; the writer gets EPIPE,
// which libvirt ignores.
//
// hooks/qemu and hooks/network pass what they read from libvirt in the
// environment instead (VXVIRT_HOOK_INPUT, up to 64 KiB: sh then execs node
// rather than piping to it). It is read back from /proc/self/environ as
// bytes, so the strict UTF-8 check is the same, and taken out of
// process.env: the hook's children do not get it.
import { readFileSync, readSync } from 'node:fs';
import { decodeDomainXml, MAX_DOMAIN_XML_BYTES, tooLarge } from './domain-xml.ts';

const INPUT_VARIABLE = 'VXVIRT_HOOK_INPUT';

/**
 * The bytes of VXVIRT_HOOK_INPUT as this process got it, or undefined
 * without one; taken out of process.env, so call it before starting any
 * child process.
 */
export function takeInputFromEnvironment(): Buffer | undefined {
  const value = process.env[INPUT_VARIABLE];
  if (value === undefined) return undefined;
  delete process.env[INPUT_VARIABLE];
  let environ: Buffer;
  try {
    environ = readFileSync('/proc/self/environ');
  } catch {
    // No /proc (never so on a libvirt host): the value as node decoded it, where invalid UTF-8 shows as U+FFFD instead of being refused.
    return Buffer.from(value, 'utf8');
  }
  const prefix = Buffer.from(`${INPUT_VARIABLE}=`);
  for (let start = 0; start < environ.length; ) {
    let end = environ.indexOf(0, start);
    if (end < 0) end = environ.length;
    if (environ.subarray(start, start + prefix.length).equals(prefix)) return environ.subarray(start + prefix.length, end);
    start = end + 1;
  }
  return undefined;
}

/** The hook's input: `given` (takeInputFromEnvironment) if there is one, else stdin. */
export function readStdinSync(source: string, given?: Buffer): string {
  if (given !== undefined) {
    if (given.length > MAX_DOMAIN_XML_BYTES) throw tooLarge(source);
    return decodeDomainXml(given, source);
  }
  const chunks: Buffer[] = [];
  const buf = Buffer.allocUnsafe(1 << 16);
  let size = 0;
  for (;;) {
    let n: number;
    try {
      n = readSync(0, buf, 0, buf.length, null);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'EOF') break;
      if (code === 'EAGAIN') {
        // A non-blocking pipe with nothing in it yet: wait a moment, read again.
        Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 2);
        continue;
      }
      throw err;
    }
    if (n === 0) break;
    size += n;
    if (size > MAX_DOMAIN_XML_BYTES) throw tooLarge(source);
    chunks.push(Buffer.from(buf.subarray(0, n)));
  }
  return decodeDomainXml(Buffer.concat(chunks, size), source);
}
