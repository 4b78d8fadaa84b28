// FRR, the control plane of evpn networks: the BGP EVPN configuration
// `vxvirt frr-config` prints (from templates/frr-bgp-evpn.conf), and what
// `vxvirt check` makes of FRR's answers (`vtysh -c '… json'`). Pure except
// for reading the template once (like generator.ts): the host's addresses
// and vtysh's output come in as values (read by cli/frr-config.ts and
// doctor-facts.ts).
//
// vxvirt never configures a running FRR itself: an operator puts the printed
// part in frr.conf and reloads FRR when they choose.
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { DefinitionError, UsageError } from './errors.ts';
import { shown, type NetworkDefinition } from './network-definition.ts';

/** How long bgpd waits before trying an unreachable neighbor again (FRR's default, 120 s, delays a fabric's start). */
export const CONNECT_RETRY_SECONDS = 10;
const ASN_MAX = 4294967295;

/** The options of `vxvirt frr-config`, as given. */
export interface FrrConfigInput {
  asn?: unknown;
  routerId?: unknown;
  local?: unknown;
  neighbors: readonly unknown[];
  routeReflectors: readonly unknown[];
  reflectorFor: readonly unknown[];
}

/** What the configuration says, validated. */
export interface FrrConfig {
  asn: number;
  routerId: string;
  /** The underlay address BGP sessions start from (this host's VTEP address); absent: the kernel chooses. */
  updateSource?: string;
  /** Full mesh: every other host. On a route reflector: explicit clients. On a client: the reflectors. */
  neighbors: string[];
  /** On a route reflector: the prefixes its clients connect from (`bgp listen range`). */
  listenRanges: string[];
  /** This host reflects routes to its neighbors (and to those in listenRanges). */
  reflector: boolean;
  /** This host's neighbors are its route reflectors. */
  client: boolean;
  /** Neighbors left out because they are this host's own addresses. */
  skipped: string[];
}

function fail(option: string, value: unknown, allowed: string): never {
  throw new DefinitionError(`--${option} ${shown(value)}: ${allowed}`);
}

function ipAddress(option: string, value: unknown): string {
  if (typeof value !== 'string' || isIP(value) === 0) fail(option, value, 'must be an IPv4 or IPv6 address');
  return isIP(value) === 6 ? new URL(`http://[${value}]`).hostname.slice(1, -1) : value;
}

function prefix(option: string, value: unknown): string {
  const m = typeof value === 'string' ? /^([^/]+)\/(\d{1,3})$/.exec(value) : null;
  const family = m ? isIP(m[1]!) : 0;
  if (!m || family === 0 || Number(m[2]) > (family === 4 ? 32 : 128)) fail(option, value, 'must be a prefix, e.g. 192.168.8.0/24 or fd00::/64');
  return value as string;
}

/**
 * For evpn networks defined without --local (the device then sends from the
 * underlay's own address): that address, when their underlay devices have
 * exactly one IPv4 address (else exactly one IPv6 address that is not
 * link-local) between them; undefined when there is no such single choice.
 */
function underlayAddress(evpnDefs: readonly NetworkDefinition[], own: ReadonlyArray<{ dev: string; address: string }>): string | undefined {
  const devs = new Set(evpnDefs.map((d) => d.dev));
  const on = own.filter((a) => devs.has(a.dev) && !/^fe80:/i.test(a.address));
  const v4 = [...new Set(on.filter((a) => isIP(a.address) === 4).map((a) => a.address))];
  const v6 = [...new Set(on.filter((a) => isIP(a.address) === 6).map((a) => a.address))];
  if (v4.length > 0) return v4.length === 1 ? v4[0] : undefined;
  return v6.length === 1 ? v6[0] : undefined;
}

/**
 * Validate frr-config's options against this host's evpn networks and
 * addresses. The underlay address (update-source, and router-id over IPv4)
 * is --local, else the one --local the evpn networks share, else the one
 * address of their underlay devices. A --neighbor or
 * --route-reflector that is one of this host's own addresses is skipped, so
 * the same list serves every host.
 */
export function frrConfig(input: FrrConfigInput, evpnDefs: readonly NetworkDefinition[], ownAddresses: ReadonlyArray<{ dev: string; address: string }>): FrrConfig {
  const asnText = typeof input.asn === 'string' ? input.asn.trim() : input.asn;
  const asn = typeof asnText === 'string' && /^\d+$/.test(asnText) ? Number(asnText) : asnText;
  if (asn === undefined) throw new UsageError('--asn is required: the AS number every host of the fabric shares, e.g. --asn 65000');
  if (typeof asn !== 'number' || !Number.isInteger(asn) || asn < 1 || asn > ASN_MAX) fail('asn', input.asn, `must be an integer from 1 to ${ASN_MAX}`);

  const neighbors = input.neighbors.map((n) => ipAddress('neighbor', n));
  const reflectors = input.routeReflectors.map((n) => ipAddress('route-reflector', n));
  const listenRanges = input.reflectorFor.map((p) => prefix('reflector-for', p));
  if (reflectors.length > 0 && (neighbors.length > 0 || listenRanges.length > 0)) {
    throw new UsageError(
      `--route-reflector cannot be combined with ${neighbors.length > 0 ? '--neighbor' : '--reflector-for'}: a client talks only to its route reflectors`,
    );
  }
  if (neighbors.length + reflectors.length + listenRanges.length === 0) {
    throw new UsageError('no BGP neighbors: give --neighbor IP for each other host (full mesh), --route-reflector IP (a client), or --reflector-for PREFIX (the route reflector)');
  }

  let updateSource: string | undefined;
  if (input.local !== undefined) {
    updateSource = ipAddress('local', input.local);
  } else {
    const locals = [...new Set(evpnDefs.flatMap((d) => (d.local ? [d.local] : [])))];
    if (locals.length > 1) {
      throw new UsageError(`the evpn networks have different --local addresses (${locals.join(', ')}): give the one BGP should use with --local`);
    }
    updateSource = locals[0] ?? underlayAddress(evpnDefs, ownAddresses);
  }
  let routerId: string;
  if (input.routerId !== undefined) {
    if (typeof input.routerId !== 'string' || isIP(input.routerId) !== 4) fail('router-id', input.routerId, 'must be an IPv4 address (a BGP router ID is 32 bits, also over IPv6)');
    routerId = input.routerId;
  } else if (updateSource !== undefined && isIP(updateSource) === 4) {
    routerId = updateSource;
  } else {
    throw new UsageError(
      updateSource === undefined
        ? "no underlay address for BGP: give --local (this host's VTEP address); the evpn networks have no --local, and their underlay devices no single address"
        : `the underlay address ${updateSource} is IPv6: give --router-id, an IPv4 address unique in the fabric`,
    );
  }

  const own = new Set([...ownAddresses.map((a) => a.address), ...(updateSource ? [updateSource] : [])]);
  const peers = [...neighbors, ...reflectors];
  const dup = peers.find((p, i) => peers.indexOf(p) !== i);
  if (dup !== undefined) fail(neighbors.includes(dup) ? 'neighbor' : 'route-reflector', dup, 'is given more than once');
  const kept = peers.filter((p) => !own.has(p));
  const skipped = peers.filter((p) => own.has(p));
  if (kept.length === 0 && listenRanges.length === 0) {
    throw new UsageError(`every neighbor given (${skipped.join(', ')}) is an address of this host: give the other hosts`);
  }
  const config: FrrConfig = { asn, routerId, neighbors: kept, listenRanges, reflector: listenRanges.length > 0, client: reflectors.length > 0, skipped };
  if (updateSource !== undefined) config.updateSource = updateSource;
  return config;
}

/** templates/frr-bgp-evpn.conf, from the package's templates/ directory (next to src/ and dist/). */
export function readFrrTemplate(): string {
  return readFileSync(new URL('../templates/frr-bgp-evpn.conf', import.meta.url), 'utf8');
}

/**
 * The configuration text from the template: fields filled in, a line whose
 * field is undefined left out, a line whose field is a list repeated per
 * element; the template's own leading comment (up to a line "!") dropped.
 */
export function renderFrrConfig(template: string, config: FrrConfig): string {
  const body = template.replace(/^(?:!.*\n)*?!\s*\n/, '');
  const fields: Record<string, string | number | string[] | undefined> = {
    asn: config.asn,
    routerId: config.routerId,
    updateSource: config.updateSource,
    connectRetry: CONNECT_RETRY_SECONDS,
    listenRange: config.listenRanges,
    neighbor: config.neighbors,
    reflectorClient: config.reflector ? 'route-reflector-client' : undefined,
  };
  const out: string[] = [];
  for (const line of body.split('\n')) {
    const names = [...line.matchAll(/\{\{(\w+)\}\}/g)].map((m) => m[1]!);
    if (names.length === 0) {
      out.push(line);
      continue;
    }
    for (const name of names) if (!(name in fields)) throw new Error(`template field {{${name}}} is not one frr-config fills`);
    const values = names.map((n) => fields[n]);
    if (values.some((v) => v === undefined)) continue;
    const list = values.find((v): v is string[] => Array.isArray(v));
    for (const item of list ?? [undefined]) {
      out.push(line.replace(/\{\{(\w+)\}\}/g, (_, n: string) => String(Array.isArray(fields[n]) ? item : fields[n])));
    }
  }
  const role = config.reflector
    ? `route reflector for ${[...config.listenRanges, ...config.neighbors].join(', ')}`
    : config.client
      ? `client of route reflector${config.neighbors.length === 1 ? '' : 's'} ${config.neighbors.join(', ')}`
      : `full mesh with ${config.neighbors.join(', ')}`;
  const header = [
    `! vxvirt frr-config: BGP EVPN for this host (AS ${config.asn}, router-id ${config.routerId}, ${role})`,
    ...(config.skipped.length > 0 ? [`! left out, addresses of this host: ${config.skipped.join(', ')}`] : []),
  ];
  return `${[...header, ...out].join('\n').replace(/\n*$/, '')}\n`;
}

// ---- what FRR says (vtysh JSON), for vxvirt check

/** A BGP neighbor of the l2vpn evpn address family and its state (Established, Active, Connect, …). */
export interface EvpnPeer {
  peer: string;
  state: string;
}

/**
 * `show bgp l2vpn evpn summary json` (FRR 8.4): `{}` when bgpd has no
 * instance with the address family; else `peers` by address, each with `state`.
 */
export function evpnPeers(json: string): { configured: false } | { configured: true; peers: EvpnPeer[] } {
  const summary = JSON.parse(json || '{}') as { peers?: Record<string, { state?: unknown }> };
  if (!summary.peers) return { configured: false };
  return {
    configured: true,
    peers: Object.entries(summary.peers)
      .map(([peer, p]) => ({ peer, state: typeof p.state === 'string' ? p.state : 'unknown' }))
      .sort((a, b) => a.peer.localeCompare(b.peer)),
  };
}

/** A VNI zebra knows, and the remote VTEPs it has flood entries for. */
export interface ZebraVni {
  vni: number;
  vxlanIf?: string;
  remoteVteps: string[];
}

/**
 * `show evpn vni json` (FRR 8.4): an object keyed by VNI; `{}` when zebra
 * knows none; empty output when EVPN is off in zebra (no bgpd with
 * advertise-all-vni has told it otherwise).
 */
export function zebraVnis(text: string): { enabled: false } | { enabled: true; vnis: Map<number, ZebraVni> } {
  if (text.trim() === '') return { enabled: false };
  const raw = JSON.parse(text) as Record<string, { vni?: unknown; vxlanIf?: unknown; remoteVteps?: unknown }>;
  const vnis = new Map<number, ZebraVni>();
  for (const [key, v] of Object.entries(raw)) {
    const vni = typeof v.vni === 'number' ? v.vni : Number(key);
    const entry: ZebraVni = { vni, remoteVteps: Array.isArray(v.remoteVteps) ? v.remoteVteps.filter((x): x is string => typeof x === 'string') : [] };
    if (typeof v.vxlanIf === 'string') entry.vxlanIf = v.vxlanIf;
    vnis.set(vni, entry);
  }
  return { enabled: true, vnis };
}

/**
 * vtysh's complaint, without its noise: with -N it always says it cannot open
 * /etc/frr/NAME/vtysh.conf, which does not matter for show commands.
 */
export function vtyshError(output: string): string {
  return output
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !/^% Can't open configuration file .*vtysh\.conf/.test(l))
    .join('; ');
}
