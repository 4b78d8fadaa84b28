// An in-memory stand-in for the kernel's links and the users store, for unit
// tests of lifecycle and hook logic without root. It interprets plan.ts's
// steps the way `ip`/`bridge` would, including "File exists" failures.
import { ToolError } from '../../src/errors.ts';
import type { Change, Effects, SurveyEffects } from '../../src/lifecycle.ts';
import type { NetworkDefinition } from '../../src/network-definition.ts';
import type { DomainRecord, LoadedDefinitions } from '../../src/store.ts';
import type { HostAddress } from '../../src/host-address.ts';
import type { Link, Observed, Step } from '../../src/plan.ts';
import type { Users } from '../../src/users.ts';

export class FakeHost {
  links = new Map<string, Link>();
  /** The host's addresses (an underlay gets one): what a definition without --local sends from. */
  addresses: HostAddress[] = [];
  fdb = new Map<string, string[]>();
  users = new Map<string, Users>();
  domains = new Map<string, DomainRecord>();
  releasing = new Map<string, DomainRecord>();
  /** The definitions `vxvirt reconcile` reads (the hook is handed its own). */
  defs: NetworkDefinition[] = [];
  broken: LoadedDefinitions['broken'] = [];
  changes: Change[] = [];
  /** Every observe query's device names, to check that reads stay scoped. */
  queried: string[][] = [];
  warnings: string[] = [];
  /** Kernel settings readSysctl answers from, and the names it was asked for. */
  sysctls = new Map<string, number>();
  sysctlReads: string[] = [];
  /** How often every device was read (observeAll). */
  surveyed = 0;
  applied: Step[][] = [];
  lockHeld = false;
  private lockQueue: Promise<void> = Promise.resolve();
  /** Runs before each apply; lets a test play another actor. */
  beforeApply: ((steps: readonly Step[]) => void) | undefined;
  failOn: ((step: Step) => string | undefined) | undefined;

  addUnderlay(name: string, mtu = 1500, address = '192.168.8.100'): this {
    this.links.set(name, { name, kind: 'veth', group: 0, mtu, up: true });
    this.addresses.push({ dev: name, address, scope: 'global' });
    return this;
  }

  names(): string[] {
    return [...this.links.keys()].sort();
  }

  private apply(steps: readonly Step[]): void {
    this.beforeApply?.(steps);
    this.applied.push([...steps]);
    for (const s of steps) {
      const fail = this.failOn?.(s);
      if (fail) throw new ToolError(fail);
      const need = (name: string): Link => {
        const l = this.links.get(name);
        if (!l) throw new ToolError(`Cannot find device "${name}"`);
        return l;
      };
      switch (s.op) {
        case 'add-bridge':
          if (this.links.has(s.name)) throw new ToolError('RTNETLINK answers: File exists');
          this.links.set(s.name, { name: s.name, kind: 'bridge', group: s.group, mtu: s.mtu, up: false });
          break;
        case 'add-vxlan':
          if (this.links.has(s.name)) throw new ToolError('RTNETLINK answers: File exists');
          if (s.attrs.dev) need(s.attrs.dev);
          this.links.set(s.name, { name: s.name, kind: 'vxlan', group: s.group, mtu: s.mtu, up: false, vxlan: { ...s.attrs } });
          this.fdb.delete(s.name);
          break;
        case 'delete':
          need(s.name);
          this.links.delete(s.name);
          break;
        case 'delete-group':
          for (const [name, l] of this.links) if (l.group === s.group) this.links.delete(name);
          break;
        case 'set-mtu':
          need(s.name).mtu = s.mtu;
          break;
        case 'set-master':
          need(s.master);
          need(s.name).master = s.master;
          break;
        case 'prepare-port':
          need(s.name).alias = s.alias;
          break;
        case 'up':
          need(s.name).up = true;
          break;
        case 'flood-add':
          this.fdb.set(s.dev, [...(this.fdb.get(s.dev) ?? []), s.dst]);
          break;
        case 'flood-del':
          this.fdb.set(s.dev, (this.fdb.get(s.dev) ?? []).filter((d) => d !== s.dst));
          break;
      }
    }
    // A deleted master releases its ports, as the kernel does.
    for (const l of this.links.values()) if (l.master && !this.links.has(l.master)) delete l.master;
  }

  effects(): Effects {
    return {
      // Like `ip link show dev X` / `master B`: only what was asked for.
      observe: async (query): Promise<Observed> => {
        this.queried.push([...query.devices]);
        const wanted = [...this.links].filter(([name, l]) => query.devices.includes(name) || (l.master !== undefined && (query.portsOf ?? []).includes(l.master)));
        const observed: Observed = {
          links: new Map(wanted.map(([k, v]) => [k, structuredClone(v)])),
          floodDsts: new Map([...this.fdb].filter(([k]) => (query.fdbDevices ?? []).includes(k) && this.links.has(k)).map(([k, v]) => [k, [...v]])),
        };
        // Like `ip addr show to 0.0.0.0/0` (`::/0`): the addresses of that family only.
        if (query.addresses !== undefined) observed.addresses = this.addresses.filter((a) => a.address.includes(':') === (query.addresses === 6)).map((a) => ({ ...a }));
        return observed;
      },
      apply: async (steps) => this.apply(steps),
      observeAll: async (fdbDevices) => {
        this.surveyed++;
        return {
          links: new Map([...this.links].map(([k, v]) => [k, structuredClone(v)])),
          floodDsts: new Map([...this.fdb].filter(([k]) => fdbDevices.includes(k) && this.links.has(k)).map(([k, v]) => [k, [...v]])),
          addresses: this.addresses.map((a) => ({ ...a })),
        };
      },
      readSysctl: (name) => {
        this.sysctlReads.push(name);
        return this.sysctls.get(name);
      },
      readUsers: (network) => ({ ...(this.users.get(network) ?? {}) }),
      writeUsers: (network, users) => {
        if (!this.lockHeld) throw new Error('users written without the host lock');
        if (Object.keys(users).length === 0) this.users.delete(network);
        else this.users.set(network, users);
      },
      // What the store holds now (defs, when a test sets them), else the caller's own.
      rereadDefinition: (def) => this.defs.find((d) => d.name === def.name) ?? def,
      readDomainRecord: (key) => structuredClone(this.domains.get(key)),
      writeDomainRecord: (key, record) => {
        if (!this.lockHeld) throw new Error('domain record written without the host lock');
        if (record.networks.length === 0) this.domains.delete(key);
        else this.domains.set(key, structuredClone(record));
      },
      beginRelease: (key) => {
        const record = this.domains.get(key) ?? this.releasing.get(key);
        this.domains.delete(key);
        if (record) this.releasing.set(key, record);
        return structuredClone(record);
      },
      beginPartialRelease: (key, record) => {
        if (!this.lockHeld) throw new Error('release journaled without the host lock');
        this.releasing.set(key, structuredClone(record));
      },
      pendingReleases: () => [...this.releasing].map(([key, record]) => ({ key, record: structuredClone(record) })),
      endRelease: (key) => void this.releasing.delete(key),
      withHostLock: async (_holder, fn) => {
        // A FIFO mutex, like flock: concurrent callers wait their turn.
        const previous = this.lockQueue;
        let release!: () => void;
        this.lockQueue = new Promise<void>((r) => (release = r));
        await previous;
        this.lockHeld = true;
        try {
          return await fn();
        } finally {
          this.lockHeld = false;
          release();
        }
      },
      warn: (m) => this.warnings.push(m),
      log: (c) => this.changes.push(c),
      now: () => this.now,
    };
  }

  now = new Date('2026-01-01T00:00:00Z');

  /** What `vxvirt reconcile` reads on top: everything. */
  surveyEffects(): SurveyEffects {
    return {
      ...this.effects(),
      loadDefinitions: () => ({ defs: [...this.defs], broken: [...this.broken] }),
      listUserNetworks: () => [...this.users.keys()],
      listDomainRecords: () => [...this.domains].map(([key, record]) => ({ key, record: structuredClone(record) })),
    };
  }
}
