// The libvirt daemons a lab host runs, and their configuration files.
//
//   monolithic  virtlogd + libvirtd (all drivers in one daemon; what Debian 12
//               ships and starts)
//   modular     virtlogd + virtnetworkd + virtqemud (one daemon per driver; the
//               default on RHEL, Fedora and newer Debian). virsh and vxvirt
//               talk to virtqemud (/run/libvirt/virtqemud-sock), which passes
//               network calls on to virtnetworkd (virtnetworkd-sock). Debian 12
//               has no virtqemud/virtnetworkd: modular-daemons.sh builds them
//               once from Debian's own libvirt source (cached).
//
// Either way the QEMU driver runs /etc/libvirt/hooks/qemu and the network
// driver /etc/libvirt/hooks/network, reads /etc/libvirt/qemu.conf, and keeps
// guests under /run/libvirt/qemu, so the rest of the lab does not care which.
//
// Every host gets its own host UUID (libvirt refuses to migrate a guest to a
// host with the UUID of the source, and all lab hosts share one SMBIOS UUID),
// and the monolithic libvirtd listens on the host's underlay address without
// TLS or authentication (qemu+tcp://192.168.8.10N/system), the transport of
// live migration between lab hosts.
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { run } from './exec.ts';

export type DaemonMode = 'monolithic' | 'modular';
export type DaemonName = 'virtlogd' | 'libvirtd' | 'virtqemud' | 'virtnetworkd';

export interface DaemonSpec {
  name: DaemonName;
  /** The command that starts it, daemonized (-d: pid file /run/NAME.pid). */
  command: string[];
  /** A URI it answers on (`virsh -c URI uri`) once ready; none for virtlogd. */
  uri?: string;
  /** Its log file under /var/log/libvirt (hook calls are logged there). */
  log?: string;
}

export interface DaemonSet {
  mode: DaemonMode;
  /** All daemons, in start order. */
  all: DaemonSpec[];
  /** The one with the QEMU driver: it runs the qemu hook and owns the guests. */
  hypervisor: DaemonSpec;
  /** Its binary: libvirt's QEMU capability cache is only valid for that binary. */
  hypervisorBinary: string;
}

/** What a host's daemon configuration depends on. */
export interface HostIdentity {
  /** The host's underlay address. */
  ip: string;
  /** libvirt's host UUID (`host_uuid`). */
  uuid: string;
}

const SCRIPT = join(dirname(fileURLToPath(import.meta.url)), 'modular-daemons.sh');
/** libvirtd is pinned to one CPU: stops libvirt from re-probing QEMU on every call. */
const PIN = ['taskset', '-c', '0'];

/** The daemons of `mode`; `binDir` holds virtqemud and virtnetworkd (modular only). */
export function daemonSet(mode: DaemonMode, binDir?: string): DaemonSet {
  const virtlogd: DaemonSpec = { name: 'virtlogd', command: ['virtlogd', '-d'] };
  if (mode === 'monolithic') {
    const libvirtd: DaemonSpec = { name: 'libvirtd', command: [...PIN, 'libvirtd', '-d', '--listen'], uri: 'qemu:///system', log: 'libvirtd.log' };
    return { mode, all: [virtlogd, libvirtd], hypervisor: libvirtd, hypervisorBinary: '/usr/sbin/libvirtd' };
  }
  if (!binDir) throw new Error('modular daemons: no directory with virtqemud and virtnetworkd (ensureDaemonBinaries)');
  const virtqemud: DaemonSpec = { name: 'virtqemud', command: [...PIN, join(binDir, 'virtqemud'), '-d'], uri: 'qemu:///system', log: 'virtqemud.log' };
  const virtnetworkd: DaemonSpec = { name: 'virtnetworkd', command: [join(binDir, 'virtnetworkd'), '-d'], uri: 'network:///system', log: 'virtnetworkd.log' };
  return { mode, all: [virtlogd, virtnetworkd, virtqemud], hypervisor: virtqemud, hypervisorBinary: join(binDir, 'virtqemud') };
}

/**
 * The binaries `mode` needs beyond Debian's packages: for modular, the
 * directory modular-daemons.sh built virtqemud and virtnetworkd in (built on
 * first use, ~25 s of compiling plus the source download; cached afterwards).
 */
export async function ensureDaemonBinaries(mode: DaemonMode, log: (line: string) => void = () => {}): Promise<string | undefined> {
  if (mode === 'monolithic') return undefined;
  const t = Date.now();
  const r = await run([SCRIPT], { timeoutMs: 900_000 });
  const dir = r.stdout.trim().split('\n').pop();
  if (r.code !== 0 || !dir) throw new Error(`${SCRIPT} failed (exit ${r.code}):\n${r.stderr.trim()}`);
  const built = r.stderr.split('\n').find((l) => l.includes(' built '));
  log(built ? `${built.trim()} (${Date.now() - t} ms)` : `modular daemons cached in ${dir} (${Date.now() - t} ms)`);
  return dir;
}

// ---------------------------------------------------------------------------
// Configuration files, written to the host's /etc/libvirt

/** Hook debug messages plus warnings/errors of everything else, to the daemon's own file. */
const logging = (file: string) => `log_filters="1:util.hook"
log_outputs="1:file:/var/log/libvirt/${file}"
`;

/** Settings of the daemon that owns the guests (libvirtd or virtqemud). */
const hypervisorConf = (host: HostIdentity) => `# One UUID per lab host: libvirt refuses to migrate to a host with the source's.
host_uuid = "${host.uuid}"
`;

/** Migration transport: qemu+tcp://<underlay address>/system, no TLS, no authentication (a test network). */
const listenConf = (host: HostIdentity) => `listen_tls = 0
listen_tcp = 1
listen_addr = "${host.ip}"
auth_tcp = "none"
`;

/**
 * The files `set` reads in /etc/libvirt (name -> content). qemu.conf is the
 * lab's own (the QEMU driver's, the same for both); `qemuConfExtra` is added to it.
 */
export function daemonConfigFiles(set: DaemonSet, host: HostIdentity): Record<string, string> {
  const head = (name: string) => `# vxvirt lab host: ${name}\n`;
  const files: Record<string, string> = { 'virtlogd.conf': '' };
  if (set.mode === 'monolithic') {
    files['libvirtd.conf'] = head('libvirtd.conf') + logging('libvirtd.log') + hypervisorConf(host) + listenConf(host);
    files['libvirt.conf'] = '';
  } else {
    files['virtqemud.conf'] = head('virtqemud.conf') + logging('virtqemud.log') + hypervisorConf(host) + 'auth_unix_rw = "none"\n';
    files['virtnetworkd.conf'] = head('virtnetworkd.conf') + logging('virtnetworkd.log') + 'auth_unix_rw = "none"\n';
    // Debian's libvirt.so is built with remote_default_mode=legacy: without
    // this, virsh (and virtqemud, for network calls) would look for libvirtd's socket.
    files['libvirt.conf'] = head('libvirt.conf') + 'remote_mode = "direct"\n';
  }
  return files;
}

/** qemu.conf lines that differ per host: where a migration source sends this host's incoming guest. */
export function qemuConfExtra(host: HostIdentity): string {
  return `# Incoming migrations: the source connects here (the machine's hostname is not the host's).
migration_host = "${host.ip}"
`;
}
