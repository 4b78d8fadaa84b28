// A vxvirt network: what `define-network` records and what the hook builds.
// Pure: validation, device names and MTU rules, no I/O.
//
// Validation is written out rather than declared in a schema library: most of
// it is rules across fields (one flooding mode, one address family, local not
// among the remotes) that a JSON schema cannot say and zod-like libraries say
// only in callbacks, the type and range checks are already one line each, and
// the error text is the one-line message the CLI prints. A schema library
// would also load on every hook start (BENCHMARKS.md, "Libraries weighed for
// the hook").
import { isIP } from 'node:net';
import { DefinitionError } from './errors.ts';

export interface NetworkDefinition {
  name: string;
  vni: number;
  /** Underlay device the VXLAN packets leave through (`dev` of the vxlan link). */
  dev: string;
  /**
   * Source address of the VXLAN packets. Absent ("auto"): this host's own
   * address on `dev`, found when the pair is made (host-address.ts), so one
   * definition is right on every host.
   */
  local?: string;
  /** One entry: point-to-point (`remote`). Several: unicast head-end replication via fdb. */
  remotes: string[];
  /** Multicast group (`group`); exclusive with remotes. */
  group?: string;
  dstport: number;
  /** Overlay MTU; absent = underlay MTU minus the encapsulation overhead. */
  mtu?: number;
  ttl?: number;
  learning: boolean;
  /**
   * BGP EVPN flooding: FRR (zebra + bgpd) installs the flood entries of the
   * other VTEPs and the MACs of their guests; the vxlan has no remote, no
   * group, never learns, and its bridge port answers ARP/ND locally
   * (neigh_suppress). Stored only when true, so other definitions keep their form.
   */
  evpn?: boolean;
  /**
   * Whether vxvirt keeps a libvirt network NAME for it (define-network, false
   * with --no-libvirt): `vxvirt reconcile` makes a missing one. Absent in
   * definitions written before this was recorded: then reconcile makes none.
   */
  libvirt?: boolean;
  /**
   * Only in a definition resolved for this host (host-address.ts), never
   * stored: this host's own addresses, taken out of `remotes`. They still
   * count toward the flooding mode, which is the definition's, not the host's:
   * a peer list of two stays unicast on each of the two hosts.
   */
  ownRemotes?: string[];
}

export type FloodingMode = 'point-to-point' | 'unicast' | 'multicast' | 'evpn';

/** How a definition (a file, `--local`) says "this host's own address on the underlay". */
export const AUTO_LOCAL = 'auto';
const VNI_MAX = 16777215;
const DEFAULT_DSTPORT = 4789;
/** A network name: also a file name (NAME.json) and the libvirt network's name. */
export const NAME_RULE = '[A-Za-z0-9][A-Za-z0-9_.-]{0,63}';
export const NAME_PATTERN = new RegExp(`^${NAME_RULE}$`);
// The kernel refuses '/', ':' and whitespace in a device name; '#' and quotes
// it allows, but `ip -batch` (how vxvirt creates the pair) reads '#' as the
// start of a comment and a leading quote as the start of a quoted word.
const IFNAME_PATTERN = /^[^\s/:#"']+$/;
/** Linux IFNAMSIZ is 16 bytes including the NUL. */
const IFNAME_MAX_BYTES = 15;
/** Longer values are cut short in messages: one line a person can read. */
const SHOWN_MAX = 64;
/** VXLAN encapsulation overhead: outer Ethernet 14 + IP 20/40 + UDP 8 + VXLAN 8. */
export const OVERHEAD = { 4: 50, 6: 70 } as const;
const MIN_MTU = 68;

export const bridgeName = (vni: number): string => `vxbr${vni}`;
/** Whether two records name the same network (a name redefined with another VNI is another network). */
export const sameNetwork = (a: Pick<NetworkDefinition, 'name' | 'vni'>, b: Pick<NetworkDefinition, 'name' | 'vni'>): boolean =>
  a.name === b.name && a.vni === b.vni;
export const vxlanName = (vni: number): string => `vxlan${vni}`;

export function floodingMode(def: Pick<NetworkDefinition, 'remotes' | 'group' | 'ownRemotes' | 'evpn'>): FloodingMode {
  if (def.evpn === true) return 'evpn';
  if (def.group) return 'multicast';
  return def.remotes.length + (def.ownRemotes?.length ?? 0) > 1 ? 'unicast' : 'point-to-point';
}

/** 4 or 6: the address family of the underlay, from the peer addresses. */
export function underlayFamily(def: Pick<NetworkDefinition, 'remotes' | 'group' | 'local'>): 4 | 6 {
  const addr = def.group ?? def.remotes[0] ?? def.local ?? '';
  return isIP(addr) === 6 ? 6 : 4;
}

/**
 * The overlay MTU on a host whose underlay device has `underlayMtu`.
 * An explicit MTU larger than the underlay allows is refused: the kernel would
 * refuse it too, but with a message that does not say why.
 */
export function overlayMtu(def: NetworkDefinition, underlayMtu: number): number {
  const overhead = OVERHEAD[underlayFamily(def)];
  const max = underlayMtu - overhead;
  if (def.mtu === undefined) return max;
  if (def.mtu > max) {
    throw new DefinitionError(
      `network ${def.name}: --mtu ${def.mtu} is larger than ${max} (underlay ${def.dev} MTU ${underlayMtu} minus ${overhead} for VXLAN over IPv${underlayFamily(def)})`,
    );
  }
  return def.mtu;
}

function isMulticast(addr: string): boolean {
  if (isIP(addr) === 4) {
    const first = Number(addr.split('.')[0]);
    return first >= 224 && first <= 239;
  }
  return /^ff/i.test(addr);
}

function isUnspecified(addr: string): boolean {
  return addr === '0.0.0.0' || /^[0:]+$/.test(addr) || addr === '255.255.255.255';
}

/** A value for a message: quoted (control characters escaped), long ones cut short with their length. */
export function shown(value: unknown): string {
  if (typeof value === 'string' && value.length > SHOWN_MAX) {
    return `${JSON.stringify(value.slice(0, SHOWN_MAX)).slice(0, -1)}…" (${value.length} characters)`;
  }
  return String(JSON.stringify(value));
}

function fail(option: string, value: unknown, allowed: string): never {
  throw new DefinitionError(`--${option} ${shown(value)}: ${allowed}`);
}

function integerIn(option: string, value: unknown, min: number, max: number): number {
  const n = typeof value === 'string' && /^\s*\d+\s*$/.test(value) ? Number(value) : value;
  if (typeof n !== 'number' || !Number.isInteger(n) || n < min || n > max) {
    fail(option, value, `must be an integer from ${min} to ${max}`);
  }
  return n;
}

/**
 * A valid address in the form the kernel reports it (IPv6 compressed and
 * lower-case), so that comparing the definition with `ip -d -j link show`
 * output is a string comparison.
 */
function address(option: string, value: unknown): string {
  if (typeof value !== 'string' || isIP(value) === 0) fail(option, value, 'must be an IPv4 or IPv6 address');
  if (isIP(value) === 4) return value;
  if (value.includes('%')) fail(option, value, 'must not carry a zone index (the underlay is given by --dev)');
  const spelled = new URL(`http://[${value}]`).hostname.slice(1, -1);
  // On the normalised form, so that 0:0:0:0:0:ffff:… is caught too: a stored
  // definition is validated again on every read, and must not fail there.
  if (spelled.startsWith('::ffff:')) fail(option, value, 'is an IPv4-mapped address: give the IPv4 address itself');
  // ::a.b.c.d (deprecated IPv4-compatible): the kernel prints it dotted, so it
  // would never compare equal to the stored form.
  if (/^::[0-9a-f]{1,4}:[0-9a-f]{1,4}$/.test(spelled)) fail(option, value, 'is an IPv4-compatible address (deprecated): give the IPv4 address itself');
  return spelled;
}

/** Input as it comes from the command line or from a stored file: loosely typed. */
export interface DefinitionInput {
  name?: unknown;
  vni?: unknown;
  dev?: unknown;
  local?: unknown;
  remotes?: unknown;
  group?: unknown;
  dstport?: unknown;
  mtu?: unknown;
  ttl?: unknown;
  learning?: unknown;
  evpn?: unknown;
  libvirt?: unknown;
}

/** Validate everything and return a normalised definition, or throw one DefinitionError naming the bad value. */
export function validateDefinition(input: DefinitionInput): NetworkDefinition {
  const { name } = input;
  if (typeof name !== 'string' || !NAME_PATTERN.test(name)) {
    throw new DefinitionError(`network name ${shown(name)}: must match ${NAME_RULE}`);
  }
  const vni = integerIn('vni', input.vni, 1, VNI_MAX);
  if (
    typeof input.dev !== 'string' ||
    !IFNAME_PATTERN.test(input.dev) ||
    Buffer.byteLength(input.dev) > IFNAME_MAX_BYTES ||
    input.dev === '.' ||
    input.dev === '..'
  ) {
    fail('dev', input.dev, `must be a network interface name of 1 to ${IFNAME_MAX_BYTES} bytes without "/", ":", "#", quotes or spaces`);
  }
  const dev = input.dev;
  const dstport = input.dstport === undefined ? DEFAULT_DSTPORT : integerIn('dstport', input.dstport, 1, 65535);

  const rawRemotes = input.remotes === undefined ? [] : Array.isArray(input.remotes) ? input.remotes : [input.remotes];
  const remotes = rawRemotes.map((r) => address('remote', r));
  for (const r of remotes) {
    if (isMulticast(r)) fail('remote', r, 'must be a unicast address (use --group for a multicast group)');
    if (isUnspecified(r)) fail('remote', r, 'must be a peer host address, not an unspecified or broadcast address');
  }
  const dup = remotes.find((r, i) => remotes.indexOf(r) !== i);
  if (dup !== undefined) fail('remote', dup, 'is given more than once');

  let group: string | undefined;
  if (input.group !== undefined) {
    group = address('group', input.group);
    if (!isMulticast(group)) fail('group', group, 'must be a multicast address (224.0.0.0/4 or ff00::/8)');
  }
  if (input.evpn !== undefined && typeof input.evpn !== 'boolean') fail('evpn', input.evpn, 'must be true or false');
  const evpn = input.evpn === true;
  if (evpn) {
    // The other VTEPs are announced by BGP: a list here would be a second, stale source.
    const why = 'cannot be combined with --evpn: the peers of an EVPN network come from BGP (FRR), not from vxvirt';
    if (remotes.length > 0) fail('remote', remotes.join(','), why);
    if (group !== undefined) fail('group', group, why);
    if (input.learning === true) fail('learning', true, 'an EVPN network never learns MACs from received packets (FRR installs the remote ones): leave --learning out');
  }
  if (group !== undefined && remotes.length > 0) {
    fail('group', group, 'cannot be combined with --remote: choose one flooding mode');
  }
  if (!evpn && group === undefined && remotes.length === 0) {
    throw new DefinitionError(
      'no flooding mode: give one --remote (point-to-point), several --remote (unicast peers), --group (multicast) or --evpn (BGP EVPN through FRR)',
    );
  }

  let local: string | undefined;
  // "auto" (or absent): this host's address on the underlay, found when the pair is made.
  if (input.local !== undefined && input.local !== AUTO_LOCAL) {
    local = address('local', input.local);
    if (isMulticast(local) || isUnspecified(local)) fail('local', local, 'must be a unicast address of this host');
    if (remotes.includes(local)) fail('remote', local, 'is the same as --local');
  }
  const families = new Set([...remotes, ...(group ? [group] : []), ...(local ? [local] : [])].map((a) => isIP(a)));
  if (families.size > 1) {
    const mixed = local ?? group ?? remotes[0];
    fail(local ? 'local' : 'remote', mixed, 'all addresses must be of one family (IPv4 or IPv6)');
  }

  const mtu = input.mtu === undefined ? undefined : integerIn('mtu', input.mtu, MIN_MTU, 65535);
  const ttl = input.ttl === undefined ? undefined : integerIn('ttl', input.ttl, 1, 255);
  if (input.learning !== undefined && typeof input.learning !== 'boolean') {
    fail('learning', input.learning, 'must be true or false');
  }
  const learning = evpn ? false : (input.learning ?? true);
  if (input.libvirt !== undefined && typeof input.libvirt !== 'boolean') {
    fail('libvirt', input.libvirt, 'must be true or false');
  }

  const def: NetworkDefinition = { name, vni, dev, remotes, dstport, learning };
  if (evpn) def.evpn = true;
  if (local !== undefined) def.local = local;
  if (group !== undefined) def.group = group;
  if (mtu !== undefined) def.mtu = mtu;
  if (ttl !== undefined) def.ttl = ttl;
  if (input.libvirt !== undefined) def.libvirt = input.libvirt;
  return def;
}

/** Refuse a definition whose VNI (and so bridge and vxlan names) another network already has. */
export function checkNoConflict(def: NetworkDefinition, others: readonly NetworkDefinition[]): void {
  const clash = others.find((o) => o.name !== def.name && o.vni === def.vni);
  if (clash) {
    throw new DefinitionError(`--vni ${def.vni}: already used by network ${clash.name}`);
  }
}

/** The stored format this vxvirt writes and reads. */
const FORMAT_VERSION = 1;

/** The stored form: the definition with a format version, as pretty JSON. */
export function serializeDefinition(def: NetworkDefinition): string {
  // A definition resolved for this host is never what is stored.
  const { ownRemotes: _resolved, ...stored } = def;
  return `${JSON.stringify({ version: FORMAT_VERSION, ...stored }, null, 2)}\n`;
}

export function parseStoredDefinition(text: string, source: string): NetworkDefinition {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    // V8 quotes the file's text in its message: escape control characters
    // (a newline, a NUL) so the message stays one printable line.
    const why = (err as Error).message.replace(/[\x00-\x1f]/g, (c) => JSON.stringify(c).slice(1, -1));
    throw new DefinitionError(`${source}: not valid JSON (${why})`);
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    throw new DefinitionError(`${source}: must hold a JSON object`);
  }
  // A file without "version" is read as version 1 (a hand-written one); a later format is not guessed at.
  const version = (raw as { version?: unknown }).version;
  if (version !== undefined && version !== FORMAT_VERSION) {
    throw new DefinitionError(`${source}: format version ${shown(version)} is not one this vxvirt reads (${FORMAT_VERSION})`);
  }
  try {
    return validateDefinition(raw as DefinitionInput);
  } catch (err) {
    throw new DefinitionError(`${source}: ${(err as Error).message}`);
  }
}
