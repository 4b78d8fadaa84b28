// `vxvirt check`: is this host ready for vxvirt networks, and if not, what to do.
import type { ArgumentsCamelCase, Argv, CommandModule } from 'yargs';
import { diagnose, formatFindings, summary } from '../check.ts';
import { gatherFacts } from '../check-facts.ts';
import { CheckFailedError } from '../errors.ts';
import { hooksDir, hooksDirOption } from './hook-install.ts';
import { printJson } from './output.ts';

interface Args {
  json: boolean;
  hooksDir?: unknown;
}

const plural = (n: number, word: string): string => `${n} ${word}${n === 1 ? '' : 's'}`;

export const check: CommandModule<object, Args> = {
  command: 'check',
  describe: "Check this host: iproute2, flock, the kernel's VXLAN support, libvirt access (bindings or virsh), the hook, each network's underlay, route and MTU, the multicast group limit, file permissions",
  builder: (y: Argv) =>
    hooksDirOption(y)
      .option('json', { type: 'boolean', default: false, describe: 'print the findings as a JSON array of {level, subject, message, hint}' })
      .example('$0 check', 'one line per finding: OK, WARN or FAIL, with a hint for what to do')
      .example('$0 check --json', 'the same as a JSON array, for monitoring; exit status 10 if anything FAILs') as unknown as Argv<Args>,
  handler: async (argv: ArgumentsCamelCase<Args>) => {
    const findings = diagnose(await gatherFacts(hooksDir(argv)));
    const { fail, warn } = summary(findings);
    // Every entry has the same four keys, hint null where there is none.
    if (argv.json) printJson(findings.map((f) => ({ level: f.level, subject: f.subject, message: f.message, hint: f.hint ?? null })));
    else process.stdout.write(`${formatFindings(findings)}\n${fail === 0 ? 'no failures' : plural(fail, 'failure')}, ${plural(warn, 'warning')}\n`);
    if (fail > 0) throw new CheckFailedError(`check found ${plural(fail, 'failure')}: see the FAIL ${argv.json ? 'entries' : 'lines'} above`);
  },
};
