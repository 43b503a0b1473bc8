import { formatCidr, type IpFamily } from "../lib/ip/ip.js";
import { delRoute, replaceRoute } from "../lib/netlink/route.js";
import type { Rtnl } from "../lib/netlink/rtnl.js";
import type { Backend, KernelChangeCounter, KernelNotice, Repair } from "./backend.js";
import type { ExternalInterface } from "./external-interface.js";
import { desiredRoutes, peersNotOnLink, reconcileHostGw, type HostGwRoute } from "./hostgw-routes.js";
import type { Lease, LeaseSubnets } from "./lease.js";
import type { NetworkConfig } from "./network-config.js";

/**
 * flanneld's host-gw backend: each other node's subnet routed via that node's public address on the
 * external interface. A peer the kernel does not reach directly there is refused with a message
 * (its route could only black-hole traffic). Per lease event one route is replaced or deleted.
 */
export class HostGwBackend implements Backend {
  readonly type = "host-gw" as const;
  readonly refused = new Map<string, string>();
  private readonly routes = { 4: new Map<string, HostGwRoute>(), 6: new Map<string, HostGwRoute>() };
  private readonly keyByDst = new Map<string, string>();
  private own: LeaseSubnets = {};

  constructor(
    private readonly nl: Rtnl,
    private readonly config: NetworkConfig,
    private readonly external: ExternalInterface,
    private readonly counter: KernelChangeCounter,
    private readonly warn: (message: string) => void,
  ) {}

  get mtu(): number {
    return this.external.mtu;
  }

  async setUp(): Promise<void> {}

  backendData(): { v4?: unknown; v6?: unknown } {
    return { ...(this.config.ipv4 ? { v4: null } : {}), ...(this.config.ipv6 ? { v6: null } : {}) };
  }

  async configure(own: LeaseSubnets): Promise<void> {
    this.own = own;
  }

  private wanted(lease: Lease, family: IpFamily): HostGwRoute | undefined {
    const subnet = family === 4 ? lease.subnets.ipv4 : lease.subnets.ipv6;
    const publicIP = family === 4 ? lease.attrs.publicIP : lease.attrs.publicIPv6;
    const own = family === 4 ? this.own.ipv4 : this.own.ipv6;
    if (!subnet || !own || !publicIP || publicIP === "0.0.0.0" || lease.attrs.backendType !== "host-gw") return undefined;
    return desiredRoutes([{ subnet: formatCidr(subnet), publicIP }], formatCidr(own))[0];
  }

  async applyPeer(key: string, lease: Lease | undefined, options = { kernel: true }): Promise<void> {
    this.refused.delete(key);
    for (const family of [4, 6] as const) {
      const table = this.routes[family];
      const old = table.get(key);
      let next = lease && this.wanted(lease, family);
      if (next) {
        const problems = await peersNotOnLink(this.nl, this.external.index, [next]);
        if (problems.length > 0) {
          this.refused.set(key, problems[0]!);
          this.warn(`refusing lease ${key}: ${problems[0]}`);
          next = undefined;
        }
      }
      if (old && (!next || old.dst !== next.dst)) {
        table.delete(key);
        if (this.keyByDst.get(old.dst) === key) this.keyByDst.delete(old.dst);
        if (options.kernel) {
          await delRoute(this.nl, { dst: old.dst, gw: old.gw, index: this.external.index });
          this.counter.kernelChanges++;
        }
      }
      if (next) {
        table.set(key, next);
        this.keyByDst.set(next.dst, key);
        if (options.kernel) {
          await replaceRoute(this.nl, { dst: next.dst, gw: next.gw, index: this.external.index });
          this.counter.kernelChanges++;
        }
      }
    }
  }

  async repair(key: string): Promise<void> {
    for (const family of [4, 6] as const) {
      const r = this.routes[family].get(key);
      if (r) {
        await replaceRoute(this.nl, { dst: r.dst, gw: r.gw, index: this.external.index });
        this.counter.kernelChanges++;
      }
    }
  }

  async resync(): Promise<number> {
    let repairs = 0;
    for (const [family, pool] of [
      [4, this.config.ipv4],
      [6, this.config.ipv6],
    ] as const) {
      if (!pool) continue;
      const changes = await reconcileHostGw(this.nl, this.external.index, formatCidr(pool.network), [...this.routes[family].values()]);
      repairs += changes.add.length + changes.remove.length;
    }
    this.counter.kernelChanges += repairs;
    return repairs;
  }

  repairFor(notice: KernelNotice): Repair {
    if (notice.kind === "route" && notice.deleted && notice.index === this.external.index) {
      const key = this.keyByDst.get(notice.dst);
      return key ? { peer: key } : undefined;
    }
    if (notice.kind === "link" && notice.index === this.external.index && notice.up) return "resync";
    return undefined;
  }

  get peerCount(): number {
    return Math.max(this.routes[4].size, this.routes[6].size);
  }
}
