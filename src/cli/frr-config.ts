// `vxvirt frr-config`: print the BGP EVPN part of this host's frr.conf. It
// reads the evpn definitions and this host's addresses, and changes nothing:
// loading it into FRR is the operator's step.
import type { ArgumentsCamelCase, Argv, CommandModule } from 'yargs';
import { frrConfig, readFrrTemplate, renderFrrConfig } from '../frr.ts';
import * as iproute from '../iproute.ts';
import { floodingMode } from '../network-definition.ts';
import * as store from '../store.ts';
import { list, single } from './options.ts';

interface Args {
  asn?: unknown;
  routerId?: unknown;
  local?: unknown;
  neighbor?: unknown;
  routeReflector?: unknown;
  reflectorFor?: unknown;
}

export const frrConfigCommand: CommandModule<object, Args> = {
  command: 'frr-config',
  describe: "Print the BGP EVPN part of this host's frr.conf, for its --evpn networks (changes nothing)",
  builder: (y: Argv) =>
    y
      .option('asn', { type: 'string', describe: 'the AS number every host of the fabric shares (iBGP), 1..4294967295' })
      .option('local', { type: 'string', describe: "this host's underlay address, BGP's source (default: the evpn networks' --local, else their underlay's address)" })
      .option('router-id', { type: 'string', describe: 'BGP router ID, an IPv4 address (default: --local, when it is IPv4)' })
      .option('neighbor', { type: 'string', describe: "full mesh: another host's underlay address, repeated (this host's own addresses are left out)" })
      .option('route-reflector', { type: 'string', describe: 'a client: the route reflector(s) to peer with, instead of --neighbor' })
      .option('reflector-for', { type: 'string', describe: 'the route reflector: accept clients from this prefix (bgp listen range), repeated' })
      .example('$0 frr-config --asn 65000 --neighbor 192.168.8.100 --neighbor 192.168.8.101 --neighbor 192.168.8.102', 'full mesh: the same command on every host')
      .example('$0 frr-config --asn 65000 --route-reflector 192.168.8.1', 'a host that peers only with the route reflector')
      .example('$0 frr-config --asn 65000 --local 192.168.8.1 --reflector-for 192.168.8.0/24', "the route reflector's own part") as unknown as Argv<Args>,
  handler: async (argv: ArgumentsCamelCase<Args>) => {
    const evpn = store.loadDefinitions().defs.filter((d) => floodingMode(d) === 'evpn');
    const own = await iproute.readAddresses();
    const config = frrConfig(
      {
        asn: single('asn', argv.asn),
        routerId: single('router-id', argv.routerId),
        local: single('local', argv.local),
        neighbors: list(argv.neighbor),
        routeReflectors: list(argv.routeReflector),
        reflectorFor: list(argv.reflectorFor),
      },
      evpn,
      own,
    );
    process.stdout.write(renderFrrConfig(readFrrTemplate(), config));
  },
};
