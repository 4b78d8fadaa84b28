// `vxvirt attach` and `vxvirt detach`: their options; the transactions are in
// src/attach.ts.
import type { ArgumentsCamelCase, Argv, CommandModule } from 'yargs';
import { attachDomain, detachDomain } from '../attach.ts';
import { realLibvirt } from '../libvirt/index.ts';
import { realEffects } from '../lifecycle.ts';
import { nicChoice, nicOptions, type NicArgs } from './generate.ts';
import { single } from './options.ts';

const say = (line: string): void => void process.stdout.write(`${line}\n`);

// ---- commands -----------------------------------------------------------------

interface AttachArgs extends NicArgs {
  domain: string;
  live: boolean;
}

export const attachCommand: CommandModule<object, AttachArgs> = {
  command: 'attach <domain>',
  describe: "Put a libvirt domain's NICs (or a new one, --add) on a vxvirt network",
  builder: (y: Argv) =>
    nicOptions(
      y
        .positional('domain', { type: 'string', describe: 'libvirt domain name' })
        .option('live', { type: 'boolean', default: false, describe: 'also change the running guest (hot-plug)' })
        .example('$0 attach vm1 --network tenant1', "vm1's NICs on tenant1 from its next start")
        .example('$0 attach vm1 --network tenant1 --add --live', 'hot-plug a new NIC on tenant1 into the running vm1'),
    ) as unknown as Argv<AttachArgs>,
  handler: async (argv: ArgumentsCamelCase<AttachArgs>) => {
    const choice = nicChoice(argv);
    await attachDomain({ domain: String(argv.domain), ...choice, live: argv.live }, realEffects, realLibvirt, say);
  },
};

interface DetachArgs {
  domain: string;
  network?: unknown;
  live: boolean;
}

export const detachCommand: CommandModule<object, DetachArgs> = {
  command: 'detach <domain>',
  describe: 'Undo attach: remove NICs vxvirt added, put converted NICs back as they were',
  builder: (y: Argv) =>
    y
      .positional('domain', { type: 'string', describe: 'libvirt domain name' })
      .option('network', { type: 'string', describe: "only this network's NICs (default: all of vxvirt's)" })
      .option('live', { type: 'boolean', default: false, describe: 'also change the running guest (hot-unplug)' })
      .example('$0 detach vm1', "vm1's NICs back as they were before attach")
      .example('$0 detach vm1 --network tenant1 --live', 'only the NICs on tenant1, in the running guest too') as unknown as Argv<DetachArgs>,
  handler: async (argv: ArgumentsCamelCase<DetachArgs>) => {
    const network = single('network', argv.network);
    await detachDomain({ domain: String(argv.domain), live: argv.live, ...(network !== undefined ? { network } : {}) }, realEffects, realLibvirt, say);
  },
};
