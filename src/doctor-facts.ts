// What `vxvirt check` judges (doctor.ts), read from this host: tools as
// libvirt's hooks find them, the kernel, how libvirt is reached (bindings or
// virsh), the hook, each network's underlay,
// and who may change the files that decide what root does. It only reads;
// the one thing it creates — a VXLAN device, to see that the kernel can —
// lives and dies in a network namespace of its own.
import { spawnSync } from 'node:child_process';
import { accessSync, constants, existsSync, lstatSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { Facts, FileFacts, FrrFacts, HookFacts, LibvirtAccessFacts, NetworkFacts, VtyshAnswer } from './doctor.ts';
import { vtyshError } from './frr.ts';
import { unrecordedGuests } from './drift.ts';
import { oneLine } from './errors.ts';
import { IGMP_MAX_MEMBERSHIPS, ipv4GroupBudgets, sysctlPath } from './host-limits.ts';
import { hookPaths, inspectHooksDir, LIBVIRT_HOOK_PATH, thisCheckout, vxvirtHook, type HooksDir } from './hook-install.ts';
import { addressesNeeded, resolveForHost } from './host-address.ts';
import * as iproute from './iproute.ts';
import { describeAccess, libvirtAccess, listActiveDomains } from './libvirt/index.ts';
import { bridgeName, floodingMode, vxlanName, type NetworkDefinition } from './network-definition.ts';
import { isOwned } from './plan.ts';
import { activeDomainFacts } from './reconcile.ts';
import * as store from './store.ts';
import { readSysctl } from './sysctl.ts';

/** The first executable file `cmd` in the directories of `path` (a PATH-style list). */
function findOnPath(cmd: string, path: string): string | undefined {
  for (const dir of path.split(':').filter(Boolean)) {
    const file = join(dir, cmd);
    try {
      accessSync(file, constants.X_OK);
      if (statSync(file).isFile()) return file;
    } catch {
      // not in this directory
    }
  }
  return undefined;
}

/** A command as libvirt's hooks find it: on libvirt's fixed PATH, not the caller's. */
const onHookPath = (cmd: string): string | undefined => findOnPath(cmd, LIBVIRT_HOOK_PATH);

const firstLine = (s: string | null | undefined): string => (s ?? '').trim().split('\n')[0] ?? '';

async function iprouteFacts(): Promise<Facts['iproute']> {
  try {
    return await iproute.ipCapabilities();
  } catch (err) {
    return { error: oneLine(err) };
  }
}

function flockFacts(): Facts['flock'] {
  const path = onHookPath('flock');
  if (!path) return { error: `flock(1) not found on libvirt's hook PATH (${LIBVIRT_HOOK_PATH})` };
  const version = firstLine(spawnSync(path, ['--version'], { encoding: 'utf8' }).stdout) || path;
  // The options store.ts's host lock uses, on a file anyone can lock.
  const probe = spawnSync(path, ['--exclusive', '--nonblock', '--conflict-exit-code', '75', '/dev/null', 'true']);
  return { version, conflictExitCode: probe.status === 0 };
}

function nodeFacts(): HookFacts['node'] {
  const path = onHookPath('node');
  if (!path) return { error: `node not found on libvirt's hook PATH (${LIBVIRT_HOOK_PATH})` };
  const r = spawnSync(path, ['--version'], { encoding: 'utf8' });
  if (r.status !== 0) return { error: `${path} --version failed: ${firstLine(r.stderr) || `exit status ${r.status}`}` };
  return { path, version: firstLine(r.stdout) };
}

/** The checkout whose hook is installed (the first vxvirt link found), else this one. */
function installedCheckout(state: HooksDir, own: string): { checkout: string; target?: string } {
  for (const e of [state.main, state.dropIn]) {
    if (e.kind === 'vxvirt' && e.link) return { checkout: dirname(dirname(e.link)), target: e.link };
  }
  return { checkout: own };
}

function isExecutable(target: string | undefined): boolean {
  if (!target) return false;
  try {
    accessSync(target, constants.X_OK);
    return true;
  } catch {
    return false; // reported as not executable
  }
}

function hookFacts(hooksDir: string): { hook: HookFacts; files: string[] } {
  const own = thisCheckout();
  const state = inspectHooksDir(hooksDir, vxvirtHook(own));
  const { checkout, target } = installedCheckout(state, own);
  const executable = isExecutable(target);
  const netState = inspectHooksDir(hooksDir, vxvirtHook(own, 'network'), 'network');
  const net = installedCheckout(netState, own);
  const netBundle = join(net.checkout, 'dist', 'network-hook.js');
  const network = { state: netState, executable: isExecutable(net.target), bundle: { checkout: net.checkout, path: netBundle, exists: existsSync(netBundle) } };
  const bundle = join(checkout, 'dist', 'hook.js');
  // What libvirt runs as root, and every directory above the checkout: whoever
  // can rename one of them can put other code in the hook's place.
  const ancestors: string[] = [];
  for (let d = dirname(checkout); ; d = dirname(d)) {
    ancestors.push(d);
    if (d === dirname(d)) break;
  }
  const p = hookPaths(state.dir);
  const files = [
    state.dir,
    p.dropInDir,
    hookPaths(state.dir, 'network').dropInDir,
    checkout,
    ...ancestors,
    join(checkout, 'hooks'),
    join(checkout, 'hooks', 'qemu'),
    join(checkout, 'hooks', 'network'),
    join(checkout, 'dist'),
    bundle,
    join(checkout, 'dist', 'network-hook.js'),
  ];
  return {
    hook: { state, checkout: own, executable, node: nodeFacts(), bundle: { checkout, path: bundle, exists: existsSync(bundle) }, network },
    files,
  };
}

function fileFacts(path: string, role: FileFacts['role']): FileFacts | undefined {
  try {
    const st = lstatSync(path);
    return { path, role, isDir: st.isDirectory(), uid: st.uid, mode: st.mode & 0o7777 };
  } catch {
    return undefined; // absent: nothing anyone can change
  }
}

async function networkFacts(defs: readonly NetworkDefinition[]): Promise<NetworkFacts[]> {
  if (defs.length === 0) return [];
  const { links, flags } = await iproute.readLinksWithFlags();
  const addresses = defs.some((d) => addressesNeeded(d) !== undefined || d.local !== undefined) ? await iproute.readAddresses() : [];
  const out: NetworkFacts[] = [];
  for (const def of defs) {
    const n: NetworkFacts = { def, foreignDevices: [] };
    const dev = links.get(def.dev);
    if (dev) {
      const f = flags.get(def.dev)?.flags ?? [];
      n.underlay = { up: dev.up, lowerUp: f.includes('LOWER_UP'), multicast: f.includes('MULTICAST'), mtu: dev.mtu };
    }
    if (def.local === undefined && dev) {
      // The same resolution the hook makes: check expects the device prepare makes.
      try {
        const address = resolveForHost(def, addresses).local!;
        n.auto = { address, where: addresses.filter((a) => a.address === address).map(({ dev: d, tentative, dadfailed }) => ({ dev: d, tentative, dadfailed })) };
      } catch (err) {
        n.auto = { error: oneLine(err) };
      }
    }
    if (def.local !== undefined) {
      n.local = addresses.filter((a) => a.address === def.local).map(({ dev: d, tentative, dadfailed }) => ({ dev: d, tentative, dadfailed }));
    }
    if (def.group !== undefined && dev) {
      n.groupRoute = { bound: await iproute.routeGet(def.group, def.dev), table: await iproute.routeGet(def.group) };
    }
    for (const name of [bridgeName(def.vni), vxlanName(def.vni)]) {
      const l = links.get(name);
      if (l && !isOwned(l, def.vni)) n.foreignDevices.push(name);
    }
    out.push(n);
  }
  return out;
}

/** How long a vtysh command may take: FRR answers in milliseconds, a wedged daemon never. */
const VTYSH_TIMEOUT_MS = 10_000;

/** One `vtysh [-N pathspace] -c COMMAND`: read-only show commands, never configuration. */
function vtysh(command: string, pathspace: string | undefined): VtyshAnswer {
  const r = spawnSync('vtysh', [...(pathspace ? ['-N', pathspace] : []), '-c', command], { encoding: 'utf8', timeout: VTYSH_TIMEOUT_MS });
  if (r.error) {
    const code = (r.error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return { error: `vtysh not found on PATH (${process.env.PATH ?? ''})`, missing: true };
    return { error: code === 'ETIMEDOUT' ? `vtysh -c '${command}' did not answer within ${VTYSH_TIMEOUT_MS / 1000} s` : oneLine(r.error) };
  }
  if (r.status !== 0) return { error: vtyshError(`${r.stdout}\n${r.stderr}`) || `vtysh exited with status ${r.status}` };
  return { output: r.stdout };
}

/**
 * What FRR says about EVPN on this host, when evpn networks are defined: its
 * sessions, the VNIs zebra knows, and which evpn networks have their pair
 * here (guests). `pathspace`: an FRR started with -N NAME.
 */
async function frrFacts(defs: readonly NetworkDefinition[], pathspace: string | undefined): Promise<FrrFacts | undefined> {
  const evpn = defs.filter((d) => floodingMode(d) === 'evpn');
  if (evpn.length === 0) return undefined;
  const observed = await iproute.observe({ devices: evpn.flatMap((d) => [bridgeName(d.vni), vxlanName(d.vni)]) });
  const active = evpn.flatMap((d) => {
    const vx = observed.links.get(vxlanName(d.vni));
    if (!isOwned(vx, d.vni) || !isOwned(observed.links.get(bridgeName(d.vni)), d.vni)) return [];
    const local = vx?.vxlan?.local;
    return [{ name: d.name, vni: d.vni, ...(local ? { local } : {}) }];
  });
  const facts: FrrFacts = {
    summary: vtysh('show bgp l2vpn evpn summary json', pathspace),
    vnis: active.length > 0 ? vtysh('show evpn vni json', pathspace) : { output: '{}' },
    active,
  };
  if (pathspace) facts.pathspace = pathspace;
  return facts;
}

/** The IPv4 group limit of this network namespace, if a definition has an IPv4 group. */
function igmpFacts(defs: readonly NetworkDefinition[]): Facts['igmpMaxMemberships'] {
  if (ipv4GroupBudgets(defs).length === 0) return undefined;
  const value = readSysctl(IGMP_MAX_MEMBERSHIPS);
  return value === undefined ? { error: `${sysctlPath(IGMP_MAX_MEMBERSHIPS)} cannot be read` } : { value };
}

/** A command on the caller's PATH (vxvirt's CLI runs virsh from there, not from the hook's PATH). */
const onPath = (cmd: string): string | undefined => findOnPath(cmd, process.env.PATH ?? '');

async function libvirtFacts(): Promise<LibvirtAccessFacts> {
  let access: LibvirtAccessFacts['access'];
  try {
    const a = await libvirtAccess();
    access = { ...a, description: describeAccess(a) };
  } catch (err) {
    access = { error: oneLine(err) };
  }
  const virsh = onPath('virsh');
  return { access, virsh: virsh ? { path: virsh } : { error: `virsh not found on PATH (${process.env.PATH ?? ''})` } };
}

/** Running domains on vxvirt networks that are not recorded as users, as libvirt sees them. */
async function unrecordedFacts(defs: readonly NetworkDefinition[]): Promise<NonNullable<Facts['unrecorded']>> {
  try {
    const active = (await listActiveDomains()).flatMap((d) => {
      try {
        return [activeDomainFacts(d.uuid, d.name, d.liveXml)];
      } catch {
        return [];
      }
    });
    return unrecordedGuests(defs, store.readUsers, active);
  } catch (err) {
    return { error: oneLine(err) };
  }
}

export async function gatherFacts(hooksDir: string, frrPathspace?: string): Promise<Facts> {
  const { defs, broken } = store.loadDefinitions();
  const networksDir = store.networksDir();
  const { hook, files: hookFiles } = hookFacts(hooksDir);
  const [ip, vxlan, networks, libvirt, unrecorded, frr] = await Promise.all([
    iprouteFacts(),
    iproute.tryVxlanDevice(),
    networkFacts(defs),
    libvirtFacts(),
    unrecordedFacts(defs),
    frrFacts(defs, frrPathspace),
  ]);
  const igmp = igmpFacts(defs);
  const configFiles = [dirname(networksDir), networksDir, ...[...defs.map((d) => d.name), ...broken.map((b) => b.name)].sort().map((n) => join(networksDir, `${n}.json`))];
  const files = [
    ...configFiles.map((p) => fileFacts(p, 'config')),
    fileFacts(store.stateDir(), 'state'),
    ...hookFiles.map((p) => fileFacts(p, 'hook')),
  ].filter((f): f is FileFacts => f !== undefined);
  return {
    iproute: ip,
    flock: flockFacts(),
    vxlan,
    networksDir,
    broken: broken.map((b) => ({ name: b.name, error: oneLine(b.error) })),
    networks,
    ...(igmp ? { igmpMaxMemberships: igmp } : {}),
    hook,
    files,
    libvirt,
    unrecorded,
    ...(frr ? { frr } : {}),
  };
}
