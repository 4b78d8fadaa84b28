#!/usr/bin/env node
// The vxvirt command line: one yargs command module per command, one file per
// command group. Errors from any command end here, as one line on stderr and
// the error's exit status.
import { join } from 'node:path';
import yargs, { type Argv } from 'yargs';
import { hideBin } from 'yargs/helpers';
import { UsageError, exitCodeOf, formatError } from '../errors.ts';
import { endSession } from '../iproute.ts';
import { flushChangeLog } from '../lifecycle.ts';
import { thisCheckout } from '../hook-install.ts';
import { defineNetwork } from './define-network.ts';
import { redefine, setPeers } from './redefine.ts';
import { listNetworks, status, undefineNetwork } from './networks.ts';
import { generateCommand } from './generate.ts';
import { attachCommand, detachCommand } from './attach.ts';
import { installHook, uninstallHook } from './hook-install.ts';
import { check } from './check.ts';
import { frrConfigCommand } from './frr-config.ts';
import { completion } from './completion.ts';
import { reconcileCommand } from './reconcile.ts';
import { applyCommand } from './apply.ts';

// Commands in the order `vxvirt --help` lists them.
const commands = [
  defineNetwork,
  setPeers,
  redefine,
  undefineNetwork,
  applyCommand,
  listNetworks,
  status,
  reconcileCommand,
  generateCommand,
  attachCommand,
  detachCommand,
  installHook,
  uninstallHook,
  check,
  frrConfigCommand,
  completion,
];

async function main(argv: string[]): Promise<void> {
  // The statuses themselves are one table, in README.md; every --help points there.
  const exitStatuses = `Exit status: 0 on success, 1 to 11 by kind of failure: see the table "Exit statuses" in ${join(thisCheckout(), 'README.md')}.`;
  let cli = yargs(argv)
    .scriptName('vxvirt')
    .usage('$0 <command> [options]\n\nPer-VNI bridge + VXLAN networks for libvirt guests.')
    .strict()
    .demandCommand(1, 'give a command (see vxvirt --help)')
    .recommendCommands()
    .help()
    .epilogue(exitStatuses)
    .version(false)
    .wrap(Math.min(110, process.stdout.columns || 100))
    .fail((msg, err) => {
      // yargs' own validation messages become one-line usage errors.
      throw err ?? new UsageError(msg);
    });
  // Each command's --help ends with the same pointer to the exit statuses.
  for (const command of commands) {
    const builder = command.builder as (y: Argv) => Argv;
    cli = cli.command({ ...command, builder: (y: Argv) => builder(y).epilogue(exitStatuses) } as never);
  }
  await cli.parseAsync();
}

try {
  await main(hideBin(process.argv));
} catch (err) {
  process.stderr.write(`${formatError(err)}\n`);
  process.exitCode = exitCodeOf(err);
} finally {
  endSession();
  flushChangeLog();
}
