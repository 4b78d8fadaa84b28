// `vxvirt check`: facts gathered from this host (doctor-facts.ts) in,
// findings out. Pure, so every verdict and hint is tested without root.
import { DEFAULT_HOOKS_DIR, hookLabel, hookPaths, type Entry, type HooksDir } from './hook-install.ts';
import { groupLimitHint, IGMP_MAX_MEMBERSHIPS, ipv4GroupBudgets, NEAR_LIMIT } from './host-limits.ts';
import type { UnrecordedGuest } from './drift.ts';
import { evpnPeers, zebraVnis } from './frr.ts';
import { OVERHEAD, overlayMtu, underlayFamily, vxlanName, type NetworkDefinition } from './network-definition.ts';

export type Level = 'OK' | 'WARN' | 'FAIL';

export interface Finding {
  level: Level;
  subject: string;
  message: string;
  /** What to do about a WARN or FAIL. */
  hint?: string;
}

type Failed = { error: string };
const failed = (x: object): x is Failed => 'error' in x;

export interface Route {
  dev?: string;
  error?: string;
}

export interface NetworkFacts {
  def: NetworkDefinition;
  /** The underlay device; absent if it does not exist. */
  underlay?: { up: boolean; lowerUp: boolean; multicast: boolean; mtu: number };
  /** Where the definition's --local address is assigned (empty: nowhere); only with --local. */
  local?: Array<{ dev: string; tentative: boolean; dadfailed: boolean }>;
  /**
   * Without --local (and with the underlay here): the address this host sends
   * from, as the hook finds it (host-address.ts), and where it is assigned;
   * or why there is none.
   */
  auto?: { address: string; where: Array<{ dev: string; tentative: boolean; dadfailed: boolean }> } | { error: string };
  /** Multicast only: the group's route as the VXLAN device sends (bound to the underlay), and in the routing table. */
  groupRoute?: { bound: Route; table: Route };
  /** Devices with this network's bridge or VXLAN name that vxvirt did not create. */
  foreignDevices: string[];
}

export interface HookFacts {
  state: HooksDir;
  /** The checkout this vxvirt runs from. */
  checkout: string;
  /** Whether what the installed hook resolves to is executable (for root). */
  executable: boolean;
  /** `node` as libvirt's hook PATH finds it. */
  node: { path: string; version: string } | Failed;
  /** dist/hook.js of the checkout the installed hook runs (this one if none is installed). */
  bundle: { checkout: string; path: string; exists: boolean };
  /** The network hook (hot-plug, NICs on libvirt networks): where it is, and its bundle dist/network-hook.js. */
  network?: { state: HooksDir; executable: boolean; bundle: { checkout: string; path: string; exists: boolean } };
}

/** Who may change a file that decides what root does. */
export interface FileFacts {
  path: string;
  /** config: definitions; state: the state directory; hook: what libvirt runs as root, and the directories above it. */
  role: 'config' | 'state' | 'hook';
  isDir: boolean;
  uid: number;
  /** Permission bits, with the sticky bit. */
  mode: number;
}

/** How vxvirt reaches libvirt (src/libvirt/): the backend for domains, and virsh (networks, hot-plug, or everything). */
export interface LibvirtAccessFacts {
  /** The backend chosen, as src/libvirt/choice.ts describes it; or why none could be (bad VXVIRT_LIBVIRT, bindings required but missing). */
  access: { backend: 'bindings' | 'virsh'; setting: 'auto' | 'bindings' | 'virsh'; bindingsError?: string; description: string } | Failed;
  /** `virsh` on PATH. */
  virsh: { path: string } | Failed;
}

export interface Facts {
  /** `ip -V`'s line and whether `ip -j` works. */
  iproute: { version: string; json: boolean } | Failed;
  /** flock(1) as libvirt's hook PATH finds it. */
  flock: { version: string; conflictExitCode: boolean } | Failed;
  /** Whether a VXLAN device (enslaved to a bridge) could be made in a private network namespace. */
  vxlan: { ok: true } | Failed;
  networksDir: string;
  /** Definition files that cannot be read. */
  broken: Array<{ name: string; error: string }>;
  networks: NetworkFacts[];
  /** net.ipv4.igmp_max_memberships of this network namespace; read only when a definition has an IPv4 group. */
  igmpMaxMemberships?: { value: number } | Failed;
  hook: HookFacts;
  files: FileFacts[];
  libvirt: LibvirtAccessFacts;
  /** Running domains on vxvirt networks that are not recorded as users (unset: libvirt was not asked). */
  unrecorded?: UnrecordedGuest[] | Failed;
  /** What FRR says; only asked when evpn networks are defined. */
  frr?: FrrFacts;
}

/** One vtysh command's output, or why it gave none (`missing`: no vtysh at all). */
export type VtyshAnswer = { output: string } | { error: string; missing?: boolean };

export interface FrrFacts {
  /** The FRR pathspace asked (vtysh -N NAME), if not the default. */
  pathspace?: string;
  /** `show bgp l2vpn evpn summary json`. */
  summary: VtyshAnswer;
  /** `show evpn vni json`. */
  vnis: VtyshAnswer;
  /** evpn networks whose pair exists here (guests use them), with their vxlan's local address. */
  active: Array<{ name: string; vni: number; local?: string }>;
}

/**
 * iproute2 4.14 (snapshot 171112) is the first with `ip -json`, and with
 * VXLAN attributes in `ip -d -j link show`, which is how vxvirt reads its
 * devices back. Before 5.8 `ip -V` prints the snapshot date, after it the release.
 */
export const IPROUTE_MIN = { release: [4, 14] as const, snapshot: 171112 };
/** The hook's bundle is built for Node.js 20 (package.json engines, esbuild --target=node20). */
export const NODE_MIN_MAJOR = 20;
/** The smallest MTU IPv6 works with (RFC 8200). */
const IPV6_MIN_MTU = 1280;
/** Below this a guest MTU is smaller than a VXLAN overlay on a standard 1500-byte underlay gives. */
const SMALL_MTU = 1450;
const ETHERNET_MTU = 1500;

export function iprouteVersion(line: string): { release: [number, number] } | { snapshot: number } | undefined {
  const snap = /iproute2-ss(\d{6})\b/.exec(line);
  if (snap) return { snapshot: Number(snap[1]) };
  const rel = /iproute2-v?(\d+)\.(\d+)/.exec(line);
  if (rel) return { release: [Number(rel[1]), Number(rel[2])] };
  return undefined;
}

function checkIproute(f: Facts['iproute']): Finding {
  const subject = 'iproute2';
  if (failed(f)) return { level: 'FAIL', subject, message: f.error, hint: 'install iproute2 (Debian/Ubuntu: apt-get install iproute2; RHEL/Rocky/Alma: dnf install iproute)' };
  const v = iprouteVersion(f.version);
  const tooOld =
    v !== undefined &&
    ('snapshot' in v ? v.snapshot < IPROUTE_MIN.snapshot : v.release[0] * 1000 + v.release[1] < IPROUTE_MIN.release[0] * 1000 + IPROUTE_MIN.release[1]);
  const min = `${IPROUTE_MIN.release.join('.')} (ss${IPROUTE_MIN.snapshot})`;
  if (tooOld || !f.json) {
    return {
      level: 'FAIL',
      subject,
      message: `${f.version}: ${tooOld ? `older than ${min}` : "'ip -j' prints no JSON"}; vxvirt reads its devices back with 'ip -d -j link show'`,
      hint: `install iproute2 ${IPROUTE_MIN.release.join('.')} or newer`,
    };
  }
  return { level: 'OK', subject, message: `${f.version}${v === undefined ? ' (version not recognised; JSON output works)' : ''}` };
}

function checkFlock(f: Facts['flock']): Finding {
  const subject = 'flock';
  if (failed(f)) return { level: 'FAIL', subject, message: f.error, hint: 'install util-linux (it has flock(1)); vxvirt serialises hooks with it' };
  if (!f.conflictExitCode) {
    return { level: 'FAIL', subject, message: `${f.version}: has no --conflict-exit-code, which vxvirt's host lock needs`, hint: 'upgrade util-linux' };
  }
  return { level: 'OK', subject, message: f.version };
}

function checkVxlan(f: Facts['vxlan']): Finding {
  const subject = 'kernel';
  if (!failed(f)) return { level: 'OK', subject, message: 'can create a VXLAN device and enslave it to a bridge (tried in a private network namespace)' };
  if (/Operation not permitted|Permission denied/.test(f.error)) {
    return { level: 'WARN', subject, message: `could not try to create a VXLAN device: ${f.error}`, hint: 'run vxvirt check as root' };
  }
  return {
    level: 'FAIL',
    subject,
    message: `cannot create a VXLAN device and a bridge: ${f.error}`,
    hint: 'load the drivers (modprobe vxlan; modprobe bridge); if modprobe finds no vxlan module, install the kernel modules package for $(uname -r)',
  };
}

const BINDINGS_HINT = 'install libvirt-dev, python3, g++ and make, then `npm rebuild @unraid/libvirt` where vxvirt is installed; or unset VXVIRT_LIBVIRT to use virsh';

function checkLibvirtAccess(f: LibvirtAccessFacts): Finding[] {
  const subject = 'libvirt access';
  const out: Finding[] = [];
  if (failed(f.access)) {
    out.push({
      level: 'FAIL',
      subject,
      message: f.access.error,
      hint: /VXVIRT_LIBVIRT=bindings/.test(f.access.error) ? BINDINGS_HINT : 'set VXVIRT_LIBVIRT to auto, bindings or virsh, or unset it',
    });
  } else {
    out.push({ level: 'OK', subject, message: f.access.description });
  }
  if (failed(f.virsh)) {
    const needs = !failed(f.access) && f.access.backend === 'bindings' ? 'libvirt networks and hot-plug' : 'everything vxvirt asks libvirt (no bindings are in use)';
    out.push({ level: 'FAIL', subject: 'virsh', message: `${f.virsh.error}: vxvirt needs it for ${needs}`, hint: 'install libvirt-clients (RHEL/Rocky/Alma: libvirt-client)' });
  }
  return out;
}

const redefine = (def: NetworkDefinition, option: string): string =>
  `vxvirt define-network ${def.name} --vni ${def.vni} --dev ${option === 'dev' ? 'IFACE' : def.dev} … --replace`;

function checkUnderlay(n: NetworkFacts, subject: string): Finding {
  const { def, underlay } = n;
  if (!underlay) {
    return {
      level: 'FAIL',
      subject,
      message: `underlay device ${def.dev} does not exist: guests on ${def.name} cannot start`,
      hint: `check the name with 'ip link'; a different device on this host: ${redefine(def, 'dev')}`,
    };
  }
  if (!underlay.up) {
    return { level: 'FAIL', subject, message: `underlay device ${def.dev} is down`, hint: `ip link set ${def.dev} up (and make it persistent in the host's network configuration)` };
  }
  if (!underlay.lowerUp) {
    return {
      level: 'WARN',
      subject,
      message: `underlay device ${def.dev} is up but has no carrier: nothing reaches the other hosts`,
      hint: `check the cable, the switch port or the peer of ${def.dev}`,
    };
  }
  return { level: 'OK', subject, message: `underlay device ${def.dev} is up (MTU ${underlay.mtu})` };
}

function checkLocal(n: NetworkFacts, subject: string): Finding | undefined {
  const { def } = n;
  if (def.local === undefined && n.auto !== undefined) {
    if ('error' in n.auto) return { level: 'FAIL', subject, message: n.auto.error, hint: `guests on ${def.name} cannot start here until ${def.dev} has an address of the peers' family` };
    const finding = checkLocal({ ...n, def: { ...def, local: n.auto.address }, local: n.auto.where, auto: undefined }, subject);
    return finding && { ...finding, message: `${finding.message} (this host's own: the network has no --local)` };
  }
  const { local } = n;
  if (def.local === undefined || local === undefined) return undefined;
  const where = local[0];
  if (!where) {
    return {
      level: 'FAIL',
      subject,
      message: `local address ${def.local} is not assigned on this host: the kernel cannot send from it`,
      hint: `assign it (ip addr add ${def.local}/PREFIX dev ${def.dev}) or give this host's own address: ${redefine(def, 'local')} --local ADDRESS`,
    };
  }
  if (where.dadfailed) {
    return { level: 'FAIL', subject, message: `local address ${def.local} on ${where.dev} failed duplicate address detection`, hint: `another host on the link uses ${def.local}` };
  }
  if (where.tentative) {
    return { level: 'WARN', subject, message: `local address ${def.local} on ${where.dev} is still tentative (duplicate address detection)`, hint: 'check again in a few seconds' };
  }
  return { level: 'OK', subject, message: `local address ${def.local} is assigned on ${where.dev}` };
}

function checkGroup(n: NetworkFacts, subject: string): Finding[] {
  const { def, underlay, groupRoute } = n;
  if (def.group === undefined || !underlay) return [];
  const group = def.group;
  const out: Finding[] = [];
  if (!underlay.multicast) {
    out.push({
      level: 'FAIL',
      subject,
      message: `underlay device ${def.dev} has multicast switched off: the group ${group} cannot be joined`,
      hint: `ip link set ${def.dev} multicast on`,
    });
  }
  if (!groupRoute) return out;
  const { bound, table } = groupRoute;
  const prefix = group.includes(':') ? 128 : 32;
  const ipFamily = group.includes(':') ? 'ip -6' : 'ip';
  if (bound.error !== undefined || bound.dev !== def.dev) {
    out.push({
      level: 'FAIL',
      subject,
      message: `the kernel does not send to multicast group ${group} through ${def.dev}: ${bound.error ?? `'ip route get ${group} oif ${def.dev}' goes through ${bound.dev ?? 'no device'}`}`,
      hint: `check policy routing and VRFs for ${def.dev} ('ip rule', 'ip route get ${group} oif ${def.dev}')`,
    });
  } else if (table.error !== undefined || table.dev !== def.dev) {
    // vxvirt's VXLAN device is bound to the underlay (dev), so the kernel
    // sends to the group through it and joins it there without any route:
    // test/integration/traffic.test.ts runs its multicast network on hosts
    // with no route for the group. The table only matters to what is not bound.
    out.push({
      level: 'WARN',
      subject,
      message: `no route for multicast group ${group} through ${def.dev} (${
        table.error !== undefined ? table.error : `the routing table sends it through ${table.dev ?? 'no device'}`
      }): vxvirt's VXLAN device is bound to ${def.dev} and does not need one, but multicast tests that follow the routing table (omping, iperf) take another path`,
      hint: `${ipFamily} route add ${group}/${prefix} dev ${def.dev}, and make it persistent in the host's network configuration`,
    });
  } else {
    out.push({ level: 'OK', subject, message: `multicast group ${group} is routed through ${def.dev}` });
  }
  return out;
}

function checkMtu(n: NetworkFacts, subject: string): Finding | undefined {
  const { def, underlay } = n;
  if (!underlay) return undefined;
  const family = underlayFamily(def);
  const overhead = OVERHEAD[family];
  let mtu: number;
  try {
    mtu = overlayMtu(def, underlay.mtu);
  } catch (err) {
    return {
      level: 'FAIL',
      subject,
      message: `${(err as Error).message.replace(/^network [^:]+: /, '')}: guests on ${def.name} cannot start`,
      hint: `raise ${def.dev}'s MTU to at least ${(def.mtu ?? 0) + overhead}, or lower --mtu: ${redefine(def, 'mtu')} --mtu ${underlay.mtu - overhead}`,
    };
  }
  const jumbo = `give ${def.dev} and every switch between the hosts an MTU of at least ${ETHERNET_MTU + overhead} (jumbo frames) and guests can keep ${ETHERNET_MTU}`;
  const origin = def.mtu !== undefined ? '--mtu' : `${def.dev}'s MTU ${underlay.mtu} minus ${overhead} for VXLAN over IPv${family}`;
  if (mtu < IPV6_MIN_MTU) {
    return { level: 'WARN', subject, message: `guests get MTU ${mtu} (${origin}): below ${IPV6_MIN_MTU}, IPv6 does not work in the guests`, hint: jumbo };
  }
  if (mtu < SMALL_MTU || (def.mtu === undefined && mtu < ETHERNET_MTU)) {
    return {
      level: 'WARN',
      subject,
      message: `guests get MTU ${mtu} (${origin}): a guest that does not use it (no virtio <mtu>, no DHCP option 26) and sends ${ETHERNET_MTU}-byte packets loses them`,
      hint: jumbo,
    };
  }
  return { level: 'OK', subject, message: `guests get MTU ${mtu}` };
}

function checkNetwork(n: NetworkFacts): Finding[] {
  const subject = `network ${n.def.name}`;
  const out: Finding[] = [checkUnderlay(n, subject)];
  const local = checkLocal(n, subject);
  if (local) out.push(local);
  out.push(...checkGroup(n, subject));
  const mtu = checkMtu(n, subject);
  if (mtu) out.push(mtu);
  for (const dev of n.foreignDevices) {
    out.push({
      level: 'FAIL',
      subject,
      message: `device ${dev} exists but was not created by vxvirt: guests on ${n.def.name} cannot start`,
      hint: `if it is a leftover: ip link del ${dev}; otherwise give the network another VNI`,
    });
  }
  return out;
}

/**
 * Whether the IPv4 groups the definitions need fit under the kernel's limit
 * (host-limits.ts says how the kernel counts): one finding per VXLAN port.
 * With every network in use, the networks past the limit cannot start.
 */
function checkGroupLimit(f: Facts): Finding[] {
  const budgets = ipv4GroupBudgets(f.networks.map((n) => n.def));
  const limit = f.igmpMaxMemberships;
  if (budgets.length === 0 || limit === undefined) return [];
  const subject = 'multicast groups';
  if (failed(limit)) {
    return [{ level: 'WARN', subject, message: `cannot read ${IGMP_MAX_MEMBERSHIPS}: ${limit.error}`, hint: `sysctl ${IGMP_MAX_MEMBERSHIPS}` }];
  }
  const max = limit.value;
  return budgets.map(({ port, memberships }) => {
    const need = memberships.length;
    const devs = [...new Set(memberships.map((m) => m.dev))];
    const perDev = devs.length > 1 ? ` (${devs.map((d) => `${d}: ${memberships.filter((m) => m.dev === d).length}`).join(', ')})` : ` on ${devs[0]}`;
    const needs = `the networks' IPv4 multicast groups need ${need} membership${need === 1 ? '' : 's'} of the VXLAN socket of UDP port ${port}${perDev}`;
    const allowed = `${IGMP_MAX_MEMBERSHIPS} = ${max}`;
    const hint = groupLimitHint(IGMP_MAX_MEMBERSHIPS, Math.max(2 * max, Math.ceil(need / NEAR_LIMIT) + 1));
    if (need > max) {
      return {
        level: 'FAIL' as const,
        subject,
        message: `${needs}, more than ${allowed} allows: with all of them in use, guests of the networks past ${max} groups cannot start (No buffer space available)`,
        hint,
      };
    }
    if (need >= NEAR_LIMIT * max) {
      return { level: 'WARN' as const, subject, message: `${needs}, close to ${allowed}: a network with a new group past ${max} cannot start`, hint };
    }
    return { level: 'OK' as const, subject, message: `${needs}, within ${allowed}` };
  });
}

function checkDefinitions(f: Facts): Finding[] {
  const out: Finding[] = f.broken.map((b) => ({
    level: 'FAIL' as const,
    subject: `network ${b.name}`,
    message: `definition cannot be read: ${b.error}`,
    hint: `fix or remove the file; or define it again: vxvirt define-network ${b.name} … --replace`,
  }));
  if (f.networks.length === 0 && f.broken.length === 0) {
    out.push({ level: 'OK', subject: 'networks', message: `none defined (in ${f.networksDir})` });
  }
  return out;
}

const installHint = (dir: string, daemon = 'virtqemud') => `vxvirt install-hook${dir === DEFAULT_HOOKS_DIR ? '' : ` --hooks-dir ${dir}`}, then restart libvirtd (or ${daemon})`;

/**
 * The network hook: without it, a NIC hot-plugged with plain virsh onto a
 * vxvirt network is not recorded (starts and stops still work: the qemu hook
 * sees every NIC then), so its absence is a warning.
 */
function checkNetworkHook(n: NonNullable<HookFacts['network']>, own: string): Finding[] {
  const subject = 'network hook';
  const { state } = n;
  const p = hookPaths(state.dir, 'network');
  const label = hookLabel('network');
  const installed = (
    [
      [p.main, state.main],
      [p.dropIn, state.dropIn],
    ] as Array<[string, Entry]>
  ).filter((x): x is [string, Extract<Entry, { kind: 'vxvirt' }>] => x[1].kind === 'vxvirt');
  const out: Finding[] = [];
  const first = installed[0];
  const hint = installHint(state.dir, 'virtnetworkd');
  if (!first) {
    const other = state.main.kind === 'other' ? ` (${p.main} is another hook: ${state.main.what}; vxvirt's goes to ${p.dropIn})` : '';
    out.push({ level: 'WARN', subject, message: `${label} is not installed in ${state.dir}${other}: NICs hot-plugged with virsh onto a vxvirt network are not recorded, and their pair may be missing`, hint });
    return out;
  }
  const [path, entry] = first;
  if (installed.length > 1) out.push({ level: 'WARN', subject, message: `installed twice (${installed.map(([q]) => q).join(' and ')}): libvirt runs it twice per operation`, hint: 'vxvirt install-hook keeps one and removes the other' });
  if (entry.link === undefined) out.push({ level: 'FAIL', subject, message: `${path} is a copy of ${label}: from there it cannot find dist/network-hook.js`, hint: `${hint} (it replaces the copy by a link)` });
  else if (!n.executable) out.push({ level: 'FAIL', subject, message: `${path} -> ${entry.link} is not executable: libvirt skips it`, hint: `chmod 755 ${entry.link}` });
  else if (!entry.current) out.push({ level: 'WARN', subject, message: `${path} runs the vxvirt at ${entry.link}, not this one (${own})`, hint: `${hint}, to run this one` });
  else out.push({ level: 'OK', subject, message: `${path} -> ${entry.link}` });
  if (!n.bundle.exists) out.push({ level: 'FAIL', subject: 'network hook bundle', message: `${n.bundle.path} is missing: NICs on vxvirt networks fail to plug`, hint: `cd ${n.bundle.checkout} && npm ci && npm run build` });
  return out;
}

function checkHook(h: HookFacts): Finding[] {
  const subject = 'hook';
  const { state } = h;
  const p = hookPaths(state.dir);
  type Ours = Extract<Entry, { kind: 'vxvirt' }>;
  const installed = (
    [
      [p.main, state.main],
      [p.dropIn, state.dropIn],
    ] as Array<[string, Entry]>
  ).filter((x): x is [string, Ours] => x[1].kind === 'vxvirt');
  const out: Finding[] = [];
  const first = installed[0];
  if (!first) {
    const other = state.main.kind === 'other' ? ` (${p.main} is another hook: ${state.main.what}; vxvirt's goes to ${p.dropIn})` : '';
    out.push({ level: 'FAIL', subject, message: `vxvirt's hook is not installed in ${state.dir}${other}: guests on vxvirt networks get no bridge`, hint: installHint(state.dir) });
  } else {
    const [path, entry] = first;
    if (installed.length > 1) {
      out.push({
        level: 'WARN',
        subject,
        message: `installed twice (${installed.map(([q]) => q).join(' and ')}): libvirt runs it twice per operation`,
        hint: `vxvirt install-hook keeps one and removes the other`,
      });
    }
    if (entry.link === undefined) {
      out.push({ level: 'FAIL', subject, message: `${path} is a copy of vxvirt's hook: from there it cannot find dist/hook.js`, hint: `${installHint(state.dir)} (it replaces the copy by a link)` });
    } else if (!h.executable) {
      out.push({ level: 'FAIL', subject, message: `${path} -> ${entry.link} is not executable: libvirt skips it`, hint: `chmod 755 ${entry.link}` });
    } else if (!entry.current) {
      out.push({
        level: 'WARN',
        subject,
        message: `${path} runs the vxvirt at ${entry.link}, not this one (${h.checkout})`,
        hint: `${installHint(state.dir)}, to run this one`,
      });
    } else {
      const order = path === p.dropIn && state.main.kind === 'other' ? ` (libvirt >= 6.5 runs it after ${p.main})` : '';
      out.push({ level: 'OK', subject, message: `${path} -> ${entry.link}${order}` });
    }
  }
  if (failed(h.node)) {
    out.push({ level: 'FAIL', subject: 'node', message: h.node.error, hint: 'install Node.js 20 or link it into /usr/local/bin: ln -s "$(command -v node)" /usr/local/bin/node' });
  } else {
    const major = Number(/^v?(\d+)/.exec(h.node.version)?.[1]);
    if (!(major >= NODE_MIN_MAJOR)) {
      out.push({ level: 'FAIL', subject: 'node', message: `${h.node.path} is ${h.node.version}; the hook needs Node.js ${NODE_MIN_MAJOR} or newer`, hint: `install Node.js ${NODE_MIN_MAJOR} where libvirt's hook PATH finds it first` });
    } else {
      out.push({ level: 'OK', subject: 'node', message: `${h.node.path} ${h.node.version} (on libvirt's hook PATH)` });
    }
  }
  if (!h.bundle.exists) {
    out.push({ level: 'FAIL', subject: 'hook bundle', message: `${h.bundle.path} is missing: the hook fails guests' starts`, hint: `cd ${h.bundle.checkout} && npm ci && npm run build` });
  } else {
    out.push({ level: 'OK', subject: 'hook bundle', message: `${h.bundle.path} exists` });
  }
  if (h.network) out.push(...checkNetworkHook(h.network, h.checkout));
  return out;
}

const octal = (mode: number): string => `0${(mode & 0o7777).toString(8).padStart(3, '0')}`;
const GROUP_OTHER_WRITE = 0o022;
const GROUP_OTHER_ANY = 0o077;
const STICKY = 0o1000;

const ROLE: Record<FileFacts['role'], { subject: string; why: string }> = {
  config: { subject: 'definitions', why: 'the hook, running as root, creates devices from them' },
  state: { subject: 'state', why: 'the hook records guests and takes the host lock there' },
  hook: { subject: 'hook files', why: 'libvirt runs them as root' },
};

function checkFiles(files: readonly FileFacts[]): Finding[] {
  const out: Finding[] = [];
  for (const role of ['config', 'state', 'hook'] as const) {
    const mine = files.filter((f) => f.role === role);
    if (mine.length === 0) continue;
    const { subject, why } = ROLE[role];
    const before = out.length;
    for (const f of mine) {
      const kind = f.isDir ? 'directory' : 'file';
      if (f.uid !== 0) {
        out.push({ level: 'FAIL', subject, message: `${f.path} is owned by uid ${f.uid}, not root: its owner can change it, and ${why}`, hint: `chown root: ${f.path}` });
      } else if ((f.mode & GROUP_OTHER_WRITE) !== 0 && !(f.isDir && (f.mode & STICKY) !== 0)) {
        out.push({
          level: 'FAIL',
          subject,
          message: `${kind} ${f.path} is writable by ${f.mode & 0o002 ? 'everyone' : 'its group'} (${octal(f.mode)}), and ${why}`,
          hint: `chmod go-w ${f.path}`,
        });
      } else if (role === 'state' && (f.mode & GROUP_OTHER_ANY) !== 0) {
        out.push({
          level: 'WARN',
          subject,
          message: `${f.path} is ${octal(f.mode)}, not 0700: any local user can open the lock file in it and hold the host lock with flock(1), stalling every guest start`,
          hint: `chmod 700 ${f.path}`,
        });
      }
    }
    if (out.length === before) {
      const more = mine.length > 1 ? ` and ${mine.length - 1} more` : '';
      out.push({ level: 'OK', subject, message: `${mine[0]?.path}${more}: owned by root, ${role === 'state' ? 'accessible' : 'writable'} only by root` });
    }
  }
  return out;
}

/** Running guests on a vxvirt bridge that vxvirt does not count as users: one WARN each. */
function checkGuests(u: Facts['unrecorded']): Finding[] {
  if (u === undefined) return [];
  const subject = 'guests';
  if (failed(u)) return [{ level: 'OK', subject, message: `not checked: libvirt did not answer (${u.error})` }];
  if (u.length === 0) return [{ level: 'OK', subject, message: 'every running guest on a vxvirt network is recorded as its user' }];
  return u.map((g) => ({
    level: 'WARN' as const,
    subject,
    message: `${g.domain} runs on ${g.bridge} (network ${g.network}) but is not recorded as a user: vxvirt does not count it (after the last recorded user stops, the pair stays only for its unknown port), and its own stop releases nothing`,
    hint: `vxvirt reconcile records it; hot-plug NICs with \`virsh attach-interface DOMAIN network ${g.network}\` or \`vxvirt attach --live\` rather than type='bridge'`,
  }));
}

/** Every finding, in the order an operator fixes things: tools, kernel, libvirt access, hook, networks, guests, files. */
const FRR_START = 'start zebra and bgpd (Debian: zebra and bgpd=yes in /etc/frr/daemons, then systemctl restart frr)';
const FRR_CONFIG = 'put the output of `vxvirt frr-config` in /etc/frr/frr.conf and load it (systemctl reload frr)';

/** What FRR's answer to one command says, or the finding that it gave none. */
function vtyshOutput(a: VtyshAnswer, subject: string, where: string): { output: string } | Finding {
  if ('output' in a) return a;
  if (a.missing) return { level: 'FAIL', subject, message: `${a.error}: FRR is not installed`, hint: `install FRR (apt-get install frr); ${FRR_CONFIG}` };
  return { level: 'FAIL', subject, message: `FRR is not running${where} or does not answer: ${a.error}`, hint: FRR_START };
}

/**
 * FRR, asked only when evpn networks are defined: bgpd has an established
 * EVPN session, and zebra knows every VNI this host has guests on (its
 * vxlanN exists). Each problem says what is wrong and what to do.
 */
function checkFrr(f: FrrFacts | undefined): Finding[] {
  if (!f) return [];
  const where = f.pathspace ? ` (pathspace ${f.pathspace})` : '';
  const bgp = `FRR bgpd${where}`;
  const zebra = `FRR zebra${where}`;
  const out: Finding[] = [];
  const summary = vtyshOutput(f.summary, bgp, where);
  if ('level' in summary) out.push(summary);
  else {
    const s = evpnPeers(summary.output);
    if (!s.configured) {
      out.push({ level: 'FAIL', subject: bgp, message: 'bgpd has no BGP instance with the l2vpn evpn address family', hint: FRR_CONFIG });
    } else {
      const up = s.peers.filter((p) => p.state === 'Established');
      const down = s.peers.filter((p) => p.state !== 'Established');
      const list = (ps: typeof s.peers): string => ps.map((p) => `${p.peer} ${p.state}`).join(', ');
      if (up.length === 0) {
        out.push({
          level: 'FAIL',
          subject: bgp,
          message: s.peers.length === 0 ? 'no EVPN neighbor configured or connected' : `no established EVPN session (${list(down)})`,
          hint: "check the neighbors' addresses and AS number (vxvirt frr-config on each host), that TCP port 179 is open between hosts, and `vtysh -c 'show bgp l2vpn evpn summary'`",
        });
      } else {
        out.push({ level: 'OK', subject: bgp, message: `EVPN session established with ${up.map((p) => p.peer).join(', ')}` });
        if (down.length > 0) out.push({ level: 'WARN', subject: bgp, message: `EVPN neighbors not established: ${list(down)}`, hint: 'a host that is down, or a neighbor address that is wrong' });
      }
    }
  }
  if (f.active.length === 0) return out;
  const vnis = vtyshOutput(f.vnis, zebra, where);
  // FRR down or absent: said once, by the bgpd finding.
  if ('level' in vnis) return 'error' in f.summary && 'error' in f.vnis && f.summary.error === f.vnis.error ? out : [...out, vnis];
  const z = zebraVnis(vnis.output);
  for (const n of f.active) {
    const subject = `network ${n.name}`;
    const vx = vxlanName(n.vni);
    if (n.local === undefined) {
      out.push({ level: 'FAIL', subject, message: `${vx} has no local address: zebra cannot announce this host as a VTEP of VNI ${n.vni}`, hint: `give the network --local (define-network ${n.name} --replace … --local IP)` });
      continue;
    }
    const known = z.enabled ? z.vnis.get(n.vni) : undefined;
    if (!known) {
      out.push({
        level: 'FAIL',
        subject,
        message: `VNI ${n.vni} has guests here but zebra does not know it${z.enabled ? '' : ' (EVPN is off in zebra: no bgpd with advertise-all-vni)'}`,
        hint: `${FRR_CONFIG}; zebra must see ${vx} (run in this host's network namespace)`,
      });
      continue;
    }
    const remotes = known.remoteVteps.length === 0 ? 'no remote VTEP yet' : `remote VTEPs ${known.remoteVteps.join(', ')}`;
    out.push({ level: 'OK', subject, message: `VNI ${n.vni} known to zebra (${known.vxlanIf ?? vx}, VTEP ${n.local}), ${remotes}` });
  }
  return out;
}

export function diagnose(f: Facts): Finding[] {
  return [
    checkIproute(f.iproute),
    checkFlock(f.flock),
    checkVxlan(f.vxlan),
    ...checkLibvirtAccess(f.libvirt),
    ...checkHook(f.hook),
    ...checkDefinitions(f),
    ...f.networks.flatMap(checkNetwork),
    ...checkGroupLimit(f),
    ...checkGuests(f.unrecorded),
    ...checkFrr(f.frr),
    ...checkFiles(f.files),
  ];
}

/** The findings for people: `LEVEL  subject: message`, a hint line under each WARN and FAIL. */
export function formatFindings(findings: readonly Finding[]): string {
  return findings
    .map((x) => `${x.level.padEnd(6)}${x.subject}: ${x.message}\n${x.hint ? `      hint: ${x.hint}\n` : ''}`)
    .join('');
}

export function summary(findings: readonly Finding[]): { fail: number; warn: number } {
  return { fail: findings.filter((x) => x.level === 'FAIL').length, warn: findings.filter((x) => x.level === 'WARN').length };
}
