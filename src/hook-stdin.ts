// The hooks' stdin, read synchronously: at most MAX_DOMAIN_XML_BYTES,
// strictly UTF-8 (domain-xml.ts says why). Not process.stdin: that would
// first load node's stream and net modules, several milliseconds on every VM
// start and stop. Past the cap nothing more is read; the writer gets EPIPE,
// which libvirt ignores.
import { readSync } from 'node:fs';
import { decodeDomainXml, MAX_DOMAIN_XML_BYTES, tooLarge } from './domain-xml.ts';

export function readStdinSync(source: string): string {
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
