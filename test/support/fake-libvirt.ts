// A fake libvirt for the commands' transactions (src/libvirt/index.ts's
// Libvirt record): networks and running domains held in memory, every call
// logged, and each call failing at will (`down` for an unreachable libvirtd).
import { LibvirtUnreachableError } from '../../src/errors.ts';
import type { ActiveDomain, Libvirt, LibvirtNetworkInfo } from '../../src/libvirt/index.ts';

export class FakeLibvirt {
  networks: LibvirtNetworkInfo[] = [];
  running: ActiveDomain[] = [];
  calls: string[] = [];
  /** Set: every call fails as when libvirtd cannot be reached. */
  down: string | undefined;

  private reach(call: string): void {
    this.calls.push(call);
    if (this.down !== undefined) throw new LibvirtUnreachableError(this.down);
  }

  record(): Libvirt {
    const none = async (): Promise<never> => {
      throw new Error('no domain definition in this fake');
    };
    return {
      readDomainState: none,
      defineDomain: none,
      attachDeviceLive: none,
      detachDeviceLive: none,
      updateDeviceLive: none,
      listActiveDomains: async () => (this.reach('list domains'), structuredClone(this.running)),
      listNetworks: async () => (this.reach('list networks'), structuredClone(this.networks)),
      defineNetwork: async (def) => {
        this.reach(`define network ${def.name}`);
        const had = this.networks.find((n) => n.name === def.name);
        this.networks = [...this.networks.filter((n) => n.name !== def.name), { name: def.name, ours: true, vni: def.vni, active: true, autostart: true, connections: 0, xml: '' }];
        return { action: had ? 'updated' : 'created', active: true };
      },
      undefineNetwork: async (name) => {
        this.reach(`undefine network ${name}`);
        const had = this.networks.some((n) => n.name === name);
        this.networks = this.networks.filter((n) => n.name !== name);
        return { action: had ? 'removed' : 'absent' };
      },
    };
  }
}
