// Entry point of the bundled hook (dist/hook.js), started by hooks/qemu.
import { readDomainXml } from './domain-xml.ts';
import { runHook } from './hook.ts';

const status = await runHook(process.argv.slice(2), {
  // At most MAX_DOMAIN_XML_BYTES, strictly UTF-8 (domain-xml.ts says why).
  readStdin: () => readDomainXml(process.stdin, 'domain XML on stdin'),
  error: (line) => process.stderr.write(`${line}\n`),
});
process.exitCode = status;
