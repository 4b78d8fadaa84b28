// `vxvirt check`: is this host ready for vxvirt networks, and if not, what to do.
import type { ArgumentsCamelCase, Argv, CommandModule } from 'yargs';
import { diagnose, formatFindings, summary } from '../doctor.ts';
import { gatherFacts } from '../doctor-facts.ts';
import { CheckFailedError, UsageError } from '../errors.ts';
import { single } from './options.ts';
import { hooksDir, hooksDirOption } from './hook-install.ts';
import { printJson } from './output.ts';

interface Args {
  json: boolean;
  hooksDir?: unknown;
  frrPathspace?: unknown;
}

const plural = (n: number, word: string): string => `${n} ${word}${n === 1 ? '' : 's'}`;

export const check: CommandModule<object, Args> = {
  command: 'check',
  describe: "Check this host: iproute2, flock, the kernel's VXLAN support, libvirt access (bindings or virsh), the hook, each network's underlay, route and MTU, the multicast group limit, FRR's EVPN sessions and VNIs (with --evpn networks), file permissions",
  builder: (y: Argv) =>
    hooksDirOption(y)
      .option('json', { type: 'boolean', default: false, describe: 'print the findings as a JSON array of {level, subject, message, hint}' })
      .option('frr-pathspace', {
        type: 'string',
        describe: 'ask the FRR started with -N NAME (vtysh -N NAME); default: $VXVIRT_FRR_PATHSPACE, else the default FRR',
      })
      .example('$0 check', 'one line per finding: OK, WARN or FAIL, with a hint for what to do')
      .example('$0 check --json', 'the same as a JSON array, for monitoring; exit status 10 if anything FAILs') as unknown as Argv<Args>,
  handler: async (argv: ArgumentsCamelCase<Args>) => {
    const pathspace = single('frr-pathspace', argv.frrPathspace) ?? (process.env.VXVIRT_FRR_PATHSPACE || undefined);
    if (pathspace !== undefined && !/^[A-Za-z0-9_.-]{1,64}$/.test(pathspace)) {
      throw new UsageError(`FRR pathspace ${JSON.stringify(pathspace)}: must be a name of 1 to 64 letters, digits, "_", "." or "-" (as given to FRR's -N)`);
    }
    const findings = diagnose(await gatherFacts(hooksDir(argv), pathspace));
    const { fail, warn } = summary(findings);
    // Every entry has the same four keys, hint null where there is none.
    if (argv.json) printJson(findings.map((f) => ({ level: f.level, subject: f.subject, message: f.message, hint: f.hint ?? null })));
    else process.stdout.write(`${formatFindings(findings)}\n${fail === 0 ? 'no failures' : plural(fail, 'failure')}, ${plural(warn, 'warning')}\n`);
    if (fail > 0) throw new CheckFailedError(`check found ${plural(fail, 'failure')}: see the FAIL ${argv.json ? 'entries' : 'lines'} above`);
  },
};
