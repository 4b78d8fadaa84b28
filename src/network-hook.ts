// What the libvirt *network* hook does. libvirt runs
// `network NET OPERATION SUB-OPERATION -` with <hookData> on stdin
// (network-port.ts) for each NIC of a domain on a libvirt network:
//
//   port-created begin   at every start (after the qemu hook's prepare), on
//                        restore, on hot-plug (`virsh attach-interface
//                        --type network` / `attach-device`: the only hook
//                        that runs then) and, when libvirtd restarts, for
//                        each running domain's NIC
//   port-deleted begin   on hot-unplug and at every stop (before `release`)
//
// port-created ensures the pair and records the NIC's domain as a user with
// that NIC (lifecycle.ensureForDomain, as prepare does: idempotent after a
// prepare). port-deleted takes the NIC away (lifecycle.unplugNic): after the
// domain's last NIC on the network, it is released from that network as a
// stop releases it. The hook never calls back into libvirt and writes
// nothing on stdout.
import { formatError } from './errors.ts';
import { networkOf } from './domain-xml.ts';
import { storedDefinitions, type HookIo } from './hook.ts';
import { ensureForDomain, realEffects, unplugNic, type Effects } from './lifecycle.ts';
import { vniOfBridge, type NetworkDefinition } from './network-definition.ts';
import { readNetworkPort, type NetworkPort } from './network-port.ts';

/**
 * The vxvirt network a port is on: by its bridge vxbrN (the VNI index), else
 * by the libvirt network's name. A vxbrN no readable definition explains
 * fails with the unreadable definitions' error, as for the qemu hook.
 */
export function definitionForPort(port: NetworkPort, fx: Pick<Effects, 'findDefinition' | 'findDefinitionByVni'>): NetworkDefinition | undefined {
  return networkOf(port, storedDefinitions(fx));
}

/**
 * The network a deleted port leaves, without needing its definition (a
 * release never does): the one of the domain's record on that VNI, else
 * the definition, else the libvirt network's name with the bridge's VNI.
 */
function networkLeft(port: NetworkPort, fx: Effects): { name: string; vni: number } | undefined {
  const vni = vniOfBridge(port.bridge);
  const record = fx.readDomainRecord(port.key);
  const recorded = record?.networks.find((n) => (vni !== undefined ? n.vni === vni : n.name === port.network));
  if (recorded) return recorded;
  let def: NetworkDefinition | undefined;
  try {
    def = definitionForPort(port, fx);
  } catch {
    def = undefined;
  }
  if (def) return { name: def.name, vni: def.vni };
  return vni !== undefined ? { name: port.network, vni } : undefined;
}

/** Run one network hook invocation; returns the exit status. */
export async function runNetworkHook(argv: readonly string[], io: HookIo, fx: Effects = realEffects): Promise<number> {
  const [, op, subop] = argv;
  if (op !== 'port-created' && op !== 'port-deleted') return 0; // start, started, stopped, updated: not ours
  try {
    const port = readNetworkPort(await io.readStdin());
    const domain = { key: port.key, name: port.owner.name };
    if (op === 'port-created') {
      const def = definitionForPort(port, fx);
      if (!def) return 0;
      await ensureForDomain(domain, [def], fx, new Map([[def.name, port.mac ? [port.mac] : 'unknown']]), `${op} ${subop ?? ''}`.trim());
    } else {
      const network = networkLeft(port, fx);
      // A NIC without a MAC cannot be told from the domain's others: its stop releases it.
      if (network && port.mac) await unplugNic(domain, network, port.mac, fx);
    }
    return 0;
  } catch (err) {
    io.error(formatError(err));
    // A failed port-created fails the start or the hot-plug, as it should;
    // port-deleted cannot undo an unplug, so it never fails.
    return op === 'port-created' ? 1 : 0;
  }
}
