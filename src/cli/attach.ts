// `vxvirt attach` and `vxvirt detach`: put a libvirt domain's NICs on a vxvirt
// network (or take them off again) by rewriting its persistent definition,
// and with --live also the running guest.
//
// attach DOMAIN --network NAME [--interface MAC|INDEX]... [--add [--mac MAC]] [--live]
//   Rewrites the persistent XML with the generator and defines it. With
//   --live on a running domain it then makes sure the network's bridge and
//   vxlan exist and records the domain as their user (no hook runs on
//   hot-plug, and the domain's `release` must later tear them down), and
//   changes the running guest: a NIC added with --add is hot-plugged, a
//   converted NIC is moved to the bridge in place (virsh update-device).
//
// detach DOMAIN [--network NAME] [--live]
//   Undoes attach from what vxvirt recorded in the domain's metadata: NICs
//   vxvirt added are removed, NICs it converted get their original XML back
//   (so a NIC that was on libvirt network `default` is on it again). Only
//   those on NAME with --network. With --live the running guest is changed
//   the same way; when no NIC of the running guest is left on a vxvirt
//   network the domain stops being a user of vxvirt's networks (and pairs no
//   one else uses are removed), as when it stops.
import type { ArgumentsCamelCase, Argv, CommandModule } from 'yargs';
import { readDomain, networksUsedBy } from '../domain-xml.ts';
import { LibvirtError, UsageError, warn } from '../errors.ts';
import { detach, generate, interfaceXml, listInterfaces, liveInterfaceXml, selectInterfaces } from '../generator.ts';
import * as libvirt from '../libvirt/index.ts';
import { ensureForDomain, releaseDomain } from '../lifecycle.ts';
import { bridgeName, type NetworkDefinition } from '../network-definition.ts';
import * as store from '../store.ts';
import { networkMtu, nicChoice, nicOptions, type NicArgs } from './generate.ts';
import { single } from './options.ts';

/** What attach/detach need from the world; tests replace it. */
export interface Ops {
  readDomainState(name: string): Promise<libvirt.DomainState>;
  defineDomain(xml: string): Promise<string>;
  attachDeviceLive(domain: string, xml: string): Promise<void>;
  detachDeviceLive(domain: string, xml: string): Promise<void>;
  updateDeviceLive(domain: string, xml: string): Promise<void>;
  ensureForDomain(domain: { key: string; name: string }, defs: NetworkDefinition[]): Promise<void>;
  releaseDomain(key: string): Promise<unknown>;
  listDefinitions(): NetworkDefinition[];
  networkMtu(def: NetworkDefinition): Promise<number>;
  say(line: string): void;
  warn(line: string): void;
}

const realOps: Ops = {
  readDomainState: libvirt.readDomainState,
  defineDomain: libvirt.defineDomain,
  attachDeviceLive: libvirt.attachDeviceLive,
  detachDeviceLive: libvirt.detachDeviceLive,
  updateDeviceLive: libvirt.updateDeviceLive,
  ensureForDomain: (domain, defs) => ensureForDomain(domain, defs),
  releaseDomain: (key) => releaseDomain(key),
  listDefinitions: store.listDefinitions,
  networkMtu: (def) => networkMtu(def),
  say: (line) => process.stdout.write(`${line}\n`),
  warn,
};

/** A NIC for messages: its MAC, else its index. */
const describe = (n: { index?: number; mac?: string }): string => n.mac ?? `interface ${n.index}`;

export interface AttachOptions {
  domain: string;
  network: NetworkDefinition;
  interfaces?: string[];
  add: boolean;
  mac?: string;
  live: boolean;
}

export async function attachDomain(o: AttachOptions, ops: Ops = realOps): Promise<void> {
  const mtu = await ops.networkMtu(o.network);
  const state = await ops.readDomainState(o.domain);
  const genOpts = { network: o.network, mtu, add: o.add, ...(o.interfaces ? { interfaces: o.interfaces } : {}), ...(o.mac ? { mac: o.mac } : {}) };
  const rewritten = generate(state.persistentXml, genOpts);
  const bridge = bridgeName(o.network.vni);

  // Which NICs are ours now: converting keeps a NIC's index, --add appends one.
  const chosen = o.add ? [listInterfaces(state.persistentXml).length] : selectInterfaces(state.persistentXml, o.interfaces);

  let defined = state.persistentXml;
  if (rewritten !== state.persistentXml) {
    defined = await ops.defineDomain(rewritten);
    // libvirt assigned MACs to NICs that had none: key their metadata by MAC.
    if (chosen.length > 0) {
      const rekeyed = generate(defined, { network: o.network, mtu, interfaces: chosen.map(String) });
      if (rekeyed !== defined) defined = await ops.defineDomain(rekeyed);
    }
  }
  const nics = listInterfaces(defined).filter((n) => chosen.includes(n.index));
  const names = nics.map(describe).join(', ');
  if (rewritten === state.persistentXml) ops.say(`domain ${o.domain}: ${names} already on network ${o.network.name} (${bridge}, MTU ${mtu})`);
  else ops.say(`domain ${o.domain}: ${o.add ? 'added' : 'moved'} ${names} ${o.add ? 'on' : 'to'} network ${o.network.name} (${bridge}, MTU ${mtu})`);

  if (!o.live) {
    if (state.running) ops.warn(`domain ${o.domain} is running: the change applies when it next starts (or use --live)`);
    return;
  }
  if (!state.running || state.liveXml === undefined) {
    ops.warn(`domain ${o.domain} is not running: --live had nothing to change`);
    return;
  }
  // No hook runs for a type='bridge' hot-plug: make the pair and record the domain as its user first
  // (its NICs there unknown to vxvirt: it stays a user until it stops).
  const info = readDomain(defined);
  await ops.ensureForDomain({ key: info.key, name: info.name }, [o.network]);
  const live = listInterfaces(state.liveXml);
  for (const nic of nics) {
    const running = nic.mac ? live.find((l) => l.mac === nic.mac) : undefined;
    if (running) {
      if (running.bridge === bridge && running.type === 'bridge') continue;
      // A running NIC keeps its MTU (libvirt cannot change it live).
      await liveStep(o.domain, () => ops.updateDeviceLive(o.domain, liveInterfaceXml(interfaceXml(defined, nic.index), { keepMtu: running.mtu ?? null })));
      ops.say(`domain ${o.domain}: running NIC ${describe(nic)} moved to ${bridge}`);
      if (running.mtu !== mtu) {
        ops.warn(`domain ${o.domain}: NIC ${describe(nic)} keeps its MTU (${running.mtu ?? 'default'}) until the domain restarts: set MTU ${mtu} in the guest meanwhile`);
      }
    } else {
      await liveStep(o.domain, () => ops.attachDeviceLive(o.domain, liveInterfaceXml(interfaceXml(defined, nic.index))));
      ops.say(`domain ${o.domain}: NIC ${describe(nic)} hot-plugged on ${bridge}`);
    }
  }
}

export interface DetachOptions {
  domain: string;
  network?: string;
  live: boolean;
}

export async function detachDomain(o: DetachOptions, ops: Ops = realOps): Promise<void> {
  const state = await ops.readDomainState(o.domain);
  const r = detach(state.persistentXml, o.network !== undefined ? { network: o.network } : {});
  if (r.removed.length + r.restored.length + r.stale.length === 0) {
    throw new UsageError(`domain ${o.domain} has no NIC that vxvirt attached (nothing in its vxvirt metadata)`);
  }
  if (r.xml !== state.persistentXml) await ops.defineDomain(r.xml);
  for (const n of r.removed) ops.say(`domain ${o.domain}: removed ${describe(n)} (network ${n.network})`);
  for (const n of r.restored) ops.say(`domain ${o.domain}: ${describe(n)} is back as it was before network ${n.network}`);
  for (const n of r.stale) ops.warn(`domain ${o.domain}: forgot ${describe(n)} (network ${n.network}): the domain has no such NIC any more`);

  if (!o.live) {
    if (state.running && r.removed.length + r.restored.length > 0) {
      ops.warn(`domain ${o.domain} is running: the change applies when it next starts (or use --live)`);
    }
    return;
  }
  if (!state.running || state.liveXml === undefined) {
    ops.warn(`domain ${o.domain} is not running: --live had nothing to change`);
    return;
  }
  const live = listInterfaces(state.liveXml);
  for (const n of r.removed) {
    const running = live.find((l) => l.mac === n.mac);
    if (!running) continue;
    await liveStep(o.domain, () => ops.detachDeviceLive(o.domain, liveInterfaceXml(interfaceXml(state.liveXml as string, running.index))));
    ops.say(`domain ${o.domain}: NIC ${n.mac} unplugged from the running guest`);
  }
  for (const n of r.restored) {
    const running = live.find((l) => l.mac === n.mac);
    if (!running) continue;
    await liveStep(o.domain, () => ops.updateDeviceLive(o.domain, liveInterfaceXml(n.xml, { keepMtu: running.mtu ?? null })));
    ops.say(`domain ${o.domain}: running NIC ${n.mac} moved back`);
    const wanted = listInterfaces(r.xml)[n.index]?.mtu;
    if (running.mtu !== undefined && running.mtu !== wanted) {
      ops.warn(`domain ${o.domain}: NIC ${n.mac} keeps MTU ${running.mtu} until the domain restarts (libvirt cannot change it live)`);
    }
  }
  // Stop being a user only when the running guest has no vxvirt NIC left.
  const defs = ops.listDefinitions();
  const after = await ops.readDomainState(o.domain);
  if (after.running && after.liveXml !== undefined) {
    const info = readDomain(after.liveXml);
    if (networksUsedBy(info, defs).length === 0) await ops.releaseDomain(info.key);
  }
}

/** Change the running guest; a failure says that only the persistent definition changed. */
async function liveStep(domain: string, fn: () => Promise<void>): Promise<void> {
  try {
    await fn();
  } catch (err) {
    throw new LibvirtError(
      `domain ${domain}: the persistent definition is changed, but the running guest is not (${(err as Error).message}); it applies when the domain next starts`,
      { cause: err },
    );
  }
}

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
    await attachDomain({ domain: String(argv.domain), ...choice, live: argv.live });
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
    await detachDomain({ domain: String(argv.domain), live: argv.live, ...(network !== undefined ? { network } : {}) });
  },
};
