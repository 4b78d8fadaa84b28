#!/usr/bin/env node
// The vxvirt command line: one yargs command module per command, one file per
// command group. Errors from any command end here, as one line on stderr and
// the error's exit status.
import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import { UsageError, exitCodeOf, formatError } from '../errors.ts';
import { defineNetwork } from './define-network.ts';
import { redefine, setPeers } from './redefine.ts';
import { listNetworks, status, undefineNetwork } from './networks.ts';
import { generateCommand } from './generate.ts';
import { attachCommand, detachCommand } from './attach.ts';

// Commands in the order `vxvirt --help` lists them.
const commands = [defineNetwork, setPeers, redefine, undefineNetwork, listNetworks, status, generateCommand, attachCommand, detachCommand];

async function main(argv: string[]): Promise<void> {
  let cli = yargs(argv)
    .scriptName('vxvirt')
    .usage('$0 <command> [options]\n\nPer-VNI bridge + VXLAN networks for libvirt guests.')
    .strict()
    .demandCommand(1, 'give a command (see vxvirt --help)')
    .recommendCommands()
    .help()
    .version(false)
    .wrap(Math.min(110, process.stdout.columns || 100))
    .fail((msg, err) => {
      // yargs' own validation messages become one-line usage errors.
      throw err ?? new UsageError(msg);
    });
  for (const command of commands) cli = cli.command(command as never);
  await cli.parseAsync();
}

try {
  await main(hideBin(process.argv));
} catch (err) {
  process.stderr.write(`${formatError(err)}\n`);
  process.exitCode = exitCodeOf(err);
}
