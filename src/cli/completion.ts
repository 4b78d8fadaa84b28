// `vxvirt completion`: the shell completion script. Completing runs
// `vxvirt --get-yargs-completions WORDS…`, which yargs answers from the same
// command definitions as --help, so `vxvirt` must be on PATH (INSTALL.md links it).
import yargs from 'yargs';
import type { Argv, CommandModule } from 'yargs';

export const completion: CommandModule = {
  command: 'completion',
  describe: 'Print a bash completion script for vxvirt (a zsh one when $SHELL is zsh)',
  builder: (y: Argv) =>
    y
      .example('$0 completion > /etc/bash_completion.d/vxvirt', 'complete commands and options in every new bash')
      .example('source <($0 completion)', 'in this shell only'),
  handler: () => {
    // yargs names the script after its $0 ('vxvirt', not dist/cli.js); @types/yargs lacks these parameters.
    (yargs() as unknown as { showCompletionScript($0: string, cmd: string): void }).showCompletionScript('vxvirt', 'completion');
  },
};
