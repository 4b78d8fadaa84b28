// The transactions of `vxvirt attach` and `vxvirt detach`: put a libvirt
// domain's NICs on a vxvirt network (or take them off again) by rewriting its
// persistent definition, and with --live also the running guest. They take
// the host's Effects (the pair and the users, through lifecycle, as the hook
// does) and the Libvirt record, so tests run them on a fake host and a fake
// libvirt; src/cli/attach.ts only parses options. `say` prints a line of
// progress as each step is done: a later step that fails leaves those said.
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
import { readDomain, networksUsedBy } from './domain-xml.ts';
import { LibvirtError, UsageError } from './errors.ts';
import { detach, generate, interfaceXml, listInterfaces, liveInterfaceXml, selectInterfaces } from './generator.ts';
import type { Libvirt } from './libvirt/index.ts';
import { ensureForDomain, releaseDomain, type Effects } from './lifecycle.ts';
import { bridgeName, OVERHEAD, overlayMtu, underlayFamily, type NetworkDefinition } from './network-definition.ts';

/** A line for the person running the command (stdout). */
export type Say = (line: string) => void;

/**
 * The MTU a guest NIC on `def` gets on this host: the definition's --mtu if
 * set (checked against the underlay when it is here), else the underlay
 * device's MTU minus the VXLAN overhead. Without the underlay device on this
 * host: the definition's --mtu, else 1500 minus the overhead, with a warning.
 */
export async function networkMtu(def: NetworkDefinition, deviceMtu: (dev: string) => Promise<number | undefined>, warning: (line: string) => void): Promise<number> {
  const underlay = await deviceMtu(def.dev);
  if (underlay !== undefined) return overlayMtu(def, underlay);
  const family = underlayFamily(def);
  const mtu = def.mtu ?? 1500 - OVERHEAD[family];
  warning(
    `underlay device ${def.dev} of network ${def.name} is not on this host: using MTU ${mtu} (${
      def.mtu !== undefined ? "the definition's --mtu" : `1500 minus ${OVERHEAD[family]} for VXLAN over IPv${family}`
    })`,
  );
  return mtu;
}

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

export async function attachDomain(o: AttachOptions, fx: Effects, lv: Libvirt, say: Say): Promise<void> {
  const mtu = await networkMtu(o.network, fx.linkMtu, fx.warn);
  const state = await lv.readDomainState(o.domain);
  const genOpts = { network: o.network, mtu, add: o.add, ...(o.interfaces ? { interfaces: o.interfaces } : {}), ...(o.mac ? { mac: o.mac } : {}) };
  const rewritten = generate(state.persistentXml, genOpts);
  const bridge = bridgeName(o.network.vni);

  // Which NICs are ours now: converting keeps a NIC's index, --add appends one.
  const chosen = o.add ? [listInterfaces(state.persistentXml).length] : selectInterfaces(state.persistentXml, o.interfaces);

  let defined = state.persistentXml;
  if (rewritten !== state.persistentXml) {
    defined = await lv.defineDomain(rewritten);
    // libvirt assigned MACs to NICs that had none: key their metadata by MAC.
    if (chosen.length > 0) {
      const rekeyed = generate(defined, { network: o.network, mtu, interfaces: chosen.map(String) });
      if (rekeyed !== defined) defined = await lv.defineDomain(rekeyed);
    }
  }
  const nics = listInterfaces(defined).filter((n) => chosen.includes(n.index));
  const names = nics.map(describe).join(', ');
  if (rewritten === state.persistentXml) say(`domain ${o.domain}: ${names} already on network ${o.network.name} (${bridge}, MTU ${mtu})`);
  else say(`domain ${o.domain}: ${o.add ? 'added' : 'moved'} ${names} ${o.add ? 'on' : 'to'} network ${o.network.name} (${bridge}, MTU ${mtu})`);

  if (!o.live) {
    if (state.running) fx.warn(`domain ${o.domain} is running: the change applies when it next starts (or use --live)`);
    return;
  }
  if (!state.running || state.liveXml === undefined) {
    fx.warn(`domain ${o.domain} is not running: --live had nothing to change`);
    return;
  }
  // No hook runs for a type='bridge' hot-plug: make the pair and record the domain as its user first
  // (its NICs there unknown to vxvirt: it stays a user until it stops).
  const info = readDomain(defined);
  await ensureForDomain({ key: info.key, name: info.name }, [o.network], fx);
  const live = listInterfaces(state.liveXml);
  for (const nic of nics) {
    const running = nic.mac ? live.find((l) => l.mac === nic.mac) : undefined;
    if (running) {
      if (running.bridge === bridge && running.type === 'bridge') continue;
      // A running NIC keeps its MTU (libvirt cannot change it live).
      await liveStep(o.domain, () => lv.updateDeviceLive(o.domain, liveInterfaceXml(interfaceXml(defined, nic.index), { keepMtu: running.mtu ?? null })));
      say(`domain ${o.domain}: running NIC ${describe(nic)} moved to ${bridge}`);
      if (running.mtu !== mtu) {
        fx.warn(`domain ${o.domain}: NIC ${describe(nic)} keeps its MTU (${running.mtu ?? 'default'}) until the domain restarts: set MTU ${mtu} in the guest meanwhile`);
      }
    } else {
      await liveStep(o.domain, () => lv.attachDeviceLive(o.domain, liveInterfaceXml(interfaceXml(defined, nic.index))));
      say(`domain ${o.domain}: NIC ${describe(nic)} hot-plugged on ${bridge}`);
    }
  }
}

export interface DetachOptions {
  domain: string;
  network?: string;
  live: boolean;
}

export async function detachDomain(o: DetachOptions, fx: Effects, lv: Libvirt, say: Say): Promise<void> {
  const state = await lv.readDomainState(o.domain);
  const r = detach(state.persistentXml, o.network !== undefined ? { network: o.network } : {});
  if (r.removed.length + r.restored.length + r.stale.length === 0) {
    throw new UsageError(`domain ${o.domain} has no NIC that vxvirt attached (nothing in its vxvirt metadata)`);
  }
  if (r.xml !== state.persistentXml) await lv.defineDomain(r.xml);
  for (const n of r.removed) say(`domain ${o.domain}: removed ${describe(n)} (network ${n.network})`);
  for (const n of r.restored) say(`domain ${o.domain}: ${describe(n)} is back as it was before network ${n.network}`);
  for (const n of r.stale) fx.warn(`domain ${o.domain}: forgot ${describe(n)} (network ${n.network}): the domain has no such NIC any more`);

  if (!o.live) {
    if (state.running && r.removed.length + r.restored.length > 0) {
      fx.warn(`domain ${o.domain} is running: the change applies when it next starts (or use --live)`);
    }
    return;
  }
  if (!state.running || state.liveXml === undefined) {
    fx.warn(`domain ${o.domain} is not running: --live had nothing to change`);
    return;
  }
  const live = listInterfaces(state.liveXml);
  for (const n of r.removed) {
    const running = live.find((l) => l.mac === n.mac);
    if (!running) continue;
    await liveStep(o.domain, () => lv.detachDeviceLive(o.domain, liveInterfaceXml(interfaceXml(state.liveXml as string, running.index))));
    say(`domain ${o.domain}: NIC ${n.mac} unplugged from the running guest`);
  }
  for (const n of r.restored) {
    const running = live.find((l) => l.mac === n.mac);
    if (!running) continue;
    await liveStep(o.domain, () => lv.updateDeviceLive(o.domain, liveInterfaceXml(n.xml, { keepMtu: running.mtu ?? null })));
    say(`domain ${o.domain}: running NIC ${n.mac} moved back`);
    const wanted = listInterfaces(r.xml)[n.index]?.mtu;
    if (running.mtu !== undefined && running.mtu !== wanted) {
      fx.warn(`domain ${o.domain}: NIC ${n.mac} keeps MTU ${running.mtu} until the domain restarts (libvirt cannot change it live)`);
    }
  }
  // Stop being a user only when the running guest has no vxvirt NIC left.
  const defs = fx.listDefinitions();
  const after = await lv.readDomainState(o.domain);
  if (after.running && after.liveXml !== undefined) {
    const info = readDomain(after.liveXml);
    if (networksUsedBy(info, defs).length === 0) await releaseDomain(info.key, fx);
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
