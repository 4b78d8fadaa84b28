// Entry point of the bundled hook (dist/hook.js), started by hooks/qemu.
import { runHook } from './hook.ts';

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

const status = await runHook(process.argv.slice(2), {
  readStdin,
  error: (line) => process.stderr.write(`${line}\n`),
});
process.exitCode = status;
