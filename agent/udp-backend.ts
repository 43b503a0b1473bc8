import { readFileSync } from "node:fs";
import { formatCidr, formatIp, type ParsedCidr } from "../lib/ip/ip.js";
import { addAddress, delAddress, listAddresses } from "../lib/netlink/addr.js";
import { linkByIndex, linkByName, setLinkMtu, setLinkUp } from "../lib/netlink/link.js";
import { listRoutes, replaceRoute, RT_SCOPE_UNIVERSE } from "../lib/netlink/route.js";
import type { Rtnl } from "../lib/netlink/rtnl.js";
import type { Netns } from "../lib/netns/netns.js";
import type { Backend, KernelChangeCounter, KernelNotice, Repair } from "./backend.js";
import type { ExternalInterface } from "./external-interface.js";
import type { Lease, LeaseSubnets } from "./lease.js";
import type { BackendConfig } from "./network-config.js";
import { UdpCarrier, UdpCounters } from "./udp-carrier.js";
import { ipv4ToInt, PeerTable, prefixMask } from "./udp-packets.js";

/** An IPv4 subnet's network address as an integer. */
const networkInt = (subnet: ParsedCidr): number => (ipv4ToInt(formatIp(subnet.ip))! & prefixMask(subnet.prefixLength)) >>> 0;

type UdpConfig = Extract<BackendConfig, { type: "udp" }>;

/** The carrier's headers on the underlay: IPv4 (20) and UDP (8). */
const OVERHEAD = 28;
/** flanneld's device name: the kernel numbers it, flannel0 on a node without one. */
const DEVICE_PATTERN = "flannel%d";

export interface UdpBackendOptions {
  nl: Rtnl;
  config: UdpConfig;
  external: ExternalInterface;
  /** The cluster network (IPv4): routed to the device as a whole. */
  network: ParsedCidr;
  counter: KernelChangeCounter;
  warn: (message: string) => void;
  /** Where the device and the socket are made (tests); the agent's own namespace when absent. */
  netns?: Netns;
}

/**
 * flanneld's udp backend: a TUN device (flannel0, bare IP packets) holding the node's subnet's
 * network address alone (/32), the whole cluster network routed to it, and the carrier moving each
 * packet to the node owning its destination inside a UDP datagram (port 8285 unless the config's
 * Port says otherwise). Other nodes' leases are only entries of the carrier's table: nothing per
 * peer is in the kernel. The device lives as long as the agent holds its fd, as flanneld's does.
 * IPv4 only, as flanneld's.
 */
export class UdpBackend implements Backend {
  readonly type = "udp" as const;
  readonly refused = new Map<string, string>();
  readonly counters = new UdpCounters();
  private readonly table = new PeerTable();
  private readonly carrier: UdpCarrier;
  private index = 0;
  private own?: ParsedCidr;

  constructor(private readonly o: UdpBackendOptions) {
    const netns = o.netns;
    this.carrier = new UdpCarrier({
      table: this.table,
      counters: this.counters,
      inNamespace: (fn) => (netns ? netns.run(fn) : fn()),
      warn: o.warn,
    });
    this.counters.deviceQueueDrops = () => {
      const name = this.carrier.device;
      // The agent runs in the node's namespace, whose sysfs this is; a backend made for another
      // namespace (tests) reads nothing.
      if (!name || o.netns) return 0;
      try {
        return Number(readFileSync(`/sys/class/net/${name}/statistics/tx_dropped`, "utf8").trim()) || 0;
      } catch {
        return 0;
      }
    };
  }

  get mtu(): number {
    return this.o.external.mtu - OVERHEAD;
  }

  /** The device's name and index while it is open. */
  get device(): { name: string; index: number } | undefined {
    const name = this.carrier.device;
    return name ? { name, index: this.index } : undefined;
  }

  async setUp(): Promise<void> {
    await this.ensureDevice();
    await this.ensureSocket();
  }

  backendData(): { v4?: unknown; v6?: unknown } {
    // flanneld's udp lease has neither BackendType nor BackendData.
    return {};
  }

  async configure(own: LeaseSubnets): Promise<void> {
    if (!own.ipv4) throw new Error("the udp backend carries IPv4 only: the lease has no IPv4 subnet");
    this.own = own.ipv4;
    const network = networkInt(own.ipv4);
    this.carrier.own = { network, mask: prefixMask(own.ipv4.prefixLength) };
    await this.ensureAddressAndRoute();
  }

  /** A TUN device of its own, open and readable, with the MTU, up; counts what it changed. */
  private async ensureDevice(): Promise<number> {
    let changes = 0;
    if (this.carrier.device === undefined || !(await this.deviceStillThere())) {
      if (this.index !== 0) this.o.warn(`the device ${DEVICE_PATTERN} (ifindex ${this.index}) went: making it again`);
      const name = await this.carrier.openTun(DEVICE_PATTERN);
      const link = await this.linkNamed(name);
      this.index = link.index;
      changes++;
    }
    const link = await linkByIndex(this.o.nl, this.index);
    if (!link) throw new Error(`the device ${this.carrier.device} (ifindex ${this.index}) vanished while being set up`);
    this.carrier.mtu = this.mtu;
    if (link.mtu !== this.mtu) {
      await setLinkMtu(this.o.nl, this.index, this.mtu);
      changes++;
    }
    if (!link.up) {
      await setLinkUp(this.o.nl, this.index);
      changes++;
    }
    this.o.counter.kernelChanges += changes;
    return changes;
  }

  private async deviceStillThere(): Promise<boolean> {
    const link = await linkByIndex(this.o.nl, this.index);
    return link !== undefined && link.name === this.carrier.device;
  }

  private async linkNamed(name: string): Promise<{ index: number }> {
    const link = await linkByName(this.o.nl, name);
    if (!link) throw new Error(`the TUN device ${name} is not in the kernel's list of links`);
    return link;
  }

  /** The carrier's socket on the external interface's address (flanneld's IfaceAddr), bound again when that changed. */
  private async ensureSocket(): Promise<void> {
    const address = this.o.external.ifaceAddr;
    if (!address) throw new Error("the udp backend needs an IPv4 address on the external interface");
    if (this.carrier.boundAddress !== `${address}:${this.o.config.port}`) await this.carrier.bind(address, this.o.config.port);
  }

  /** flannel0's address (the subnet's network address, /32) and the route of the whole network to it. */
  private async ensureAddressAndRoute(): Promise<number> {
    const own = this.own;
    if (!own) return 0;
    const { nl } = this.o;
    let changes = 0;
    const want = formatCidr({ ip: own.ip, prefixLength: 32 });
    const have = (await listAddresses(nl, { index: this.index, family: 4 })).filter((a) => a.scope === "global");
    for (const a of have) {
      if (a.cidr !== want) {
        await delAddress(nl, this.index, a.cidr);
        changes++;
      }
    }
    if (!have.some((a) => a.cidr === want)) {
      await addAddress(nl, this.index, want);
      changes++;
    }
    const network = formatCidr(this.o.network);
    const routes = await listRoutes(nl, { family: 4, index: this.index });
    if (!routes.some((r) => r.dst === network && r.gw === undefined && r.scope === RT_SCOPE_UNIVERSE)) {
      await replaceRoute(nl, { dst: network, index: this.index, scope: RT_SCOPE_UNIVERSE });
      changes++;
    }
    this.o.counter.kernelChanges += changes;
    return changes;
  }

  async applyPeer(key: string, lease: Lease | undefined): Promise<void> {
    const subnet = lease?.subnets.ipv4;
    const publicIP = lease?.attrs.publicIP;
    const type = lease?.attrs.backendType;
    const address = publicIP === undefined ? undefined : ipv4ToInt(publicIP);
    if (!lease || !subnet || !address || (type !== undefined && type !== "" && type !== "udp")) {
      this.table.set(key, undefined);
      return;
    }
    this.table.set(key, {
      network: networkInt(subnet),
      length: subnet.prefixLength,
      endpoint: { address, port: this.o.config.port },
    });
  }

  /** Nothing of a peer is in the kernel. */
  async repair(): Promise<void> {}

  async resync(): Promise<number> {
    const changes = (await this.ensureDevice()) + (await this.ensureAddressAndRoute());
    await this.ensureSocket();
    return changes;
  }

  repairFor(notice: KernelNotice): Repair {
    switch (notice.kind) {
      case "route":
        return notice.deleted && notice.index === this.index && notice.dst === formatCidr(this.o.network) ? "resync" : undefined;
      case "address":
        return notice.deleted && notice.index === this.index ? "resync" : undefined;
      case "link":
        return notice.index === this.index && (notice.deleted || !notice.up) ? "resync" : undefined;
      default:
        return undefined;
    }
  }

  get peerCount(): number {
    return this.table.size;
  }

  /** Whether the carrier's table holds a lease's key (tests, the log). */
  carries(key: string): boolean {
    return this.table.has(key);
  }

  /** Closes the socket and the device (which goes with its fd). */
  async close(): Promise<void> {
    await this.carrier.close();
  }

  describe(): string {
    return `${this.carrier.device ?? "no device"} (mtu ${this.mtu}, ifindex ${this.index}), carrier on ${this.carrier.boundAddress ?? "no socket"}`;
  }
}
