// `vxvirt generate`: print a domain's XML with its NICs on a vxvirt network.
import { randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import type { ArgumentsCamelCase, Argv, CommandModule } from 'yargs';
import { readDomainXml } from '../domain-xml.ts';
import { DomainXmlError, UsageError, warn } from '../errors.ts';
import { generate } from '../generator.ts';
import { networkMtu } from '../attach.ts';
import { linkMtu } from '../iproute.ts';
import type { NetworkDefinition } from '../network-definition.ts';
import * as store from '../store.ts';
import { list, single } from './options.ts';

/** A MAC for a new NIC: QEMU's 52:54:00 prefix (as libvirt uses), random rest. */
function randomMac(): string {
  return `52:54:00:${[...randomBytes(3)].map((b) => b.toString(16).padStart(2, '0')).join(':')}`;
}

/** Options shared by generate and attach. */
export interface NicArgs {
  network?: unknown;
  interface?: unknown;
  add: boolean;
  mac?: unknown;
}

export const nicOptions = <T>(y: Argv<T>): Argv<T & NicArgs> =>
  y
    .option('network', { type: 'string', describe: 'the vxvirt network (see list-networks)', demandOption: '--network is required' })
    .option('interface', {
      type: 'string',
      describe: 'a NIC to put on the network: its MAC or 0-based index (repeatable; default: every NIC)',
    })
    .option('add', { type: 'boolean', default: false, describe: 'add a new virtio NIC on the network instead' })
    .option('mac', { type: 'string', describe: 'MAC of the NIC --add adds (default: 52:54:00 and random)' }) as unknown as Argv<T & NicArgs>;

export interface NicChoice {
  network: NetworkDefinition;
  interfaces?: string[];
  add: boolean;
  mac?: string;
}

export function nicChoice(argv: NicArgs): NicChoice {
  const name = single('network', argv.network);
  if (name === undefined || name === '') throw new UsageError('--network is required');
  const network = store.readDefinition(name);
  const interfaces = list(argv.interface);
  const mac = single('mac', argv.mac);
  if (mac !== undefined && !argv.add) throw new UsageError(`--mac ${mac}: only with --add (it is the new NIC's MAC)`);
  if (argv.add && interfaces.length > 0) {
    throw new UsageError(`--interface ${interfaces.join(', ')} cannot be combined with --add: --add appends a new NIC`);
  }
  const choice: NicChoice = { network, add: argv.add };
  if (interfaces.length > 0) choice.interfaces = interfaces;
  if (argv.add) choice.mac = mac ?? randomMac();
  return choice;
}

interface Args extends NicArgs {
  file?: string;
}

/** The input, read as domain-xml.ts reads the hook's stdin: bounded, and strictly UTF-8, so the output keeps every byte the rewrite does not change. */
async function readInput(file: string | undefined): Promise<string> {
  // yargs hands a lone "-" over as an empty string.
  if (file === undefined || file === '-' || file === '') {
    if (file === undefined && process.stdin.isTTY) {
      throw new UsageError('no domain XML: give a FILE, or pipe it in (virsh dumpxml --inactive --security-info DOMAIN | vxvirt generate --network NAME)');
    }
    return readDomainXml(process.stdin, 'domain XML on stdin');
  }
  try {
    return await readDomainXml(createReadStream(file), file);
  } catch (err) {
    if (err instanceof DomainXmlError) throw err;
    throw new UsageError(`cannot read ${file}: ${(err as Error).message}`);
  }
}

export const generateCommand: CommandModule<object, Args> = {
  command: 'generate [file]',
  describe: "Print a domain's XML with its NICs on a vxvirt network (FILE, or - / nothing for stdin)",
  builder: (y: Argv) =>
    nicOptions(
      y
        .positional('file', { type: 'string', describe: 'domain XML file (e.g. from virsh dumpxml --inactive --security-info)' })
        .example('$0 generate vm1.xml --network tenant1 > vm1-new.xml', 'every NIC of vm1.xml on tenant1')
        .example('virsh dumpxml --inactive --security-info vm1 | $0 generate --network tenant1 --interface 52:54:00:12:34:56', 'one NIC, chosen by MAC')
        .example('$0 generate vm1.xml --network tenant1 --add', 'add a new virtio NIC on tenant1'),
    ) as unknown as Argv<Args>,
  handler: async (argv: ArgumentsCamelCase<Args>) => {
    const choice = nicChoice(argv);
    const xml = await readInput(argv.file);
    const mtu = await networkMtu(choice.network, linkMtu, warn);
    process.stdout.write(generate(xml, { ...choice, mtu }));
  },
};
