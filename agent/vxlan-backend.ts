import { randomBytes } from "node:crypto";
import { formatCidr, type IpFamily, type ParsedCidr } from "../lib/ip/ip.js";
import { addAddress, delAddress, listAddresses } from "../lib/netlink/addr.js";
import { ensureVxlan, linkByName, type Link } from "../lib/netlink/link.js";
import { delFdbEntry, delNeighbour, setFdbEntry, setNeighbour } from "../lib/netlink/neigh.js";
import { delRoute, replaceRoute, routeTo } from "../lib/netlink/route.js";
import type { Rtnl } from "../lib/netlink/rtnl.js";
import type { Backend, KernelChangeCounter, KernelNotice, Repair } from "./backend.js";
import type { ExternalInterface } from "./external-interface.js";
import { reconcileHostGw, type HostGwRoute } from "./hostgw-routes.js";
import { parseVxlanBackendData, vxlanBackendData, type Lease, type LeaseSubnets } from "./lease.js";
import type { BackendConfig } from "./network-config.js";
import { desiredEntries, reconcileVxlan, type VxlanEntries, type VxlanPeer } from "./vxlan-routes.js";

type VxlanConfig = Extract<BackendConfig, { type: "vxlan" }>;

/** VXLAN's overhead on the underlay: outer IPv4 (20) or IPv6 (40), UDP (8), VXLAN (8) and the inner Ethernet header (14). */
const OVERHEAD = { 4: 50, 6: 70 } as const;

/** A locally administered unicast MAC, as the kernel picks for a new device. */
export function randomVtepMac(): string {
  const bytes = randomBytes(6);
  bytes[0] = (bytes[0]! & 0xfe) | 0x02;
  return [...bytes].map((b) => b.toString(16).padStart(2, "0")).join(":");
}

/** The entries one peer's lease wants: on the VTEP, or (DirectRouting, the peer on-link) one route on the external interface. */
interface Programmed {
  peer: VxlanPeer;
  entries: VxlanEntries;
  direct?: HostGwRoute;
}

const NO_ENTRIES: VxlanEntries = { routes: [], neighbours: [], fdb: [] };

/**
 * One VTEP (flannel.<VNI> for IPv4, flannel-v6.<VNI> for IPv6) and what it holds for the other
 * nodes. Per lease event it changes only that lease's route, neighbour and fdb entry (replacing
 * them in place, so a moved node's fdb entry is moved, not duplicated); a full pass compares all of
 * them with the kernel.
 */
export class VxlanDevice {
  index = 0;
  mac = "";
  private ownSubnet?: ParsedCidr;
  private readonly programmed = new Map<string, Programmed>();
  private readonly keyByRoute = new Map<string, string>();
  private readonly keyByNeighbour = new Map<string, string>();
  private readonly keyByDirectRoute = new Map<string, string>();
  /** Several leases may name one VTEP MAC (a node's old lease beside its new one): its fdb entry stays while one does. */
  private readonly keysByMac = new Map<string, Set<string>>();

  constructor(
    private readonly nl: Rtnl,
    readonly family: IpFamily,
    readonly name: string,
    /** The cluster network of this family: direct routes are the external interface's routes into it. */
    private readonly network: string,
    private readonly config: VxlanConfig,
    private readonly external: ExternalInterface,
    private readonly counter: KernelChangeCounter,
    /** The MAC a new device gets: the one the node's lease already announces, so others' entries stay right. */
    private preferredMac: string | undefined,
  ) {}

  private get local(): string | undefined {
    return this.family === 4 ? this.external.ifaceAddr : this.external.ifaceV6Addr;
  }

  get mtu(): number {
    return this.config.mtu ?? this.external.mtu - OVERHEAD[this.family];
  }

  /** The MAC of the device this node had before the agent started (a restart keeps the device). */
  keptMac?: string;

  /** The device as flanneld makes it; an existing one with the same parameters is kept, with its MAC. */
  async ensure(): Promise<Link> {
    if (this.index === 0) {
      // The first time: a device left by the previous run keeps its MAC even if it must be made
      // anew (a new local address), so the node's lease and the other nodes' entries stay right.
      const existing = await linkByName(this.nl, this.name);
      if (existing?.kind === "vxlan") {
        this.keptMac = existing.mac;
        this.preferredMac ??= existing.mac;
      }
    }
    const { link, created } = await ensureVxlan(this.nl, {
      name: this.name,
      vni: this.config.vni,
      port: this.config.port,
      local: this.local,
      dev: this.external.index,
      learning: this.config.learning,
      gbp: this.config.gbp,
      mtu: this.mtu,
      mac: this.preferredMac ?? (this.mac || undefined),
    });
    if (created) this.counter.kernelChanges++;
    this.index = link.index;
    this.mac = link.mac;
    this.preferredMac = link.mac;
    return link;
  }

  /** The VTEP's address: its own subnet's network address, alone (/32 or /128), as flanneld sets it. */
  async address(subnet: ParsedCidr): Promise<void> {
    this.ownSubnet = subnet;
    const want = formatCidr({ ip: subnet.ip, prefixLength: this.family === 4 ? 32 : 128 });
    const have = (await listAddresses(this.nl, { index: this.index, family: this.family })).filter((a) => a.scope === "global");
    for (const a of have) {
      if (a.cidr !== want) {
        await delAddress(this.nl, this.index, a.cidr);
        this.counter.kernelChanges++;
      }
    }
    if (!have.some((a) => a.cidr === want)) {
      await addAddress(this.nl, this.index, want, { noDad: true });
      this.counter.kernelChanges++;
    }
  }

  private forget(key: string, old: Programmed): void {
    this.programmed.delete(key);
    for (const r of old.entries.routes) if (this.keyByRoute.get(r.dst) === key) this.keyByRoute.delete(r.dst);
    for (const n of old.entries.neighbours) if (this.keyByNeighbour.get(n.ip) === key) this.keyByNeighbour.delete(n.ip);
    if (old.direct && this.keyByDirectRoute.get(old.direct.dst) === key) this.keyByDirectRoute.delete(old.direct.dst);
    for (const f of old.entries.fdb) this.keysByMac.get(f.mac)?.delete(key);
  }

  /** One peer: its entries replaced in place, or removed when `peer` is undefined (or no longer usable). */
  async set(key: string, peer: VxlanPeer | undefined, kernel = true): Promise<void> {
    const old = this.programmed.get(key);
    const entries = peer && this.ownSubnet ? desiredEntries([peer], formatCidr(this.ownSubnet)) : undefined;
    let next: Programmed | undefined = entries && entries.routes.length > 0 ? { peer: peer!, entries } : undefined;
    if (next && this.config.directRouting && (await this.onLink(next.peer.publicIP))) {
      // flanneld's DirectRouting: a peer on this node's L2 segment is reached without encapsulation.
      next = { peer: next.peer, entries: NO_ENTRIES, direct: { dst: next.entries.routes[0]!.dst, gw: next.peer.publicIP } };
    }
    if (old) this.forget(key, old);
    if (next) {
      this.programmed.set(key, next);
      if (next.direct) this.keyByDirectRoute.set(next.direct.dst, key);
      for (const r of next.entries.routes) this.keyByRoute.set(r.dst, key);
      for (const n of next.entries.neighbours) this.keyByNeighbour.set(n.ip, key);
      for (const f of next.entries.fdb) {
        let keys = this.keysByMac.get(f.mac);
        if (!keys) this.keysByMac.set(f.mac, (keys = new Set()));
        // The lease written last owns the MAC's fdb entry: at the end of the set.
        keys.delete(key);
        keys.add(key);
      }
    }
    if (!kernel) return;
    if (old) await this.removeStale(old, next);
    if (next) await this.program(next, key);
  }

  /** The lease whose endpoint a VTEP MAC's fdb entry points to: of those naming the MAC, the one written last. */
  private macOwner(mac: string): string | undefined {
    let owner: string | undefined;
    for (const key of this.keysByMac.get(mac) ?? []) owner = key;
    return owner;
  }

  /** Whether the kernel reaches `address` directly on the external interface (no gateway). */
  private async onLink(address: string): Promise<boolean> {
    const route = await routeTo(this.nl, address);
    return route !== undefined && route.index === this.external.index && route.gw === undefined;
  }

  /** Entries of the old lease the new one does not have (or all of them): an fdb entry only when no other lease names its MAC. */
  private async removeStale(old: Programmed, next: Programmed | undefined): Promise<void> {
    if (old.direct && next?.direct?.dst !== old.direct.dst && !this.keyByDirectRoute.has(old.direct.dst)) {
      await delRoute(this.nl, { dst: old.direct.dst, gw: old.direct.gw, index: this.external.index });
      this.counter.kernelChanges++;
    }
    const keep = new Set(next ? [...next.entries.routes.map((r) => `r ${r.dst}`), ...next.entries.neighbours.map((n) => `n ${n.ip}`)] : []);
    for (const r of old.entries.routes) {
      if (!keep.has(`r ${r.dst}`) && !this.keyByRoute.has(r.dst)) {
        await delRoute(this.nl, { dst: r.dst, gw: r.gw, index: this.index, onlink: true });
        this.counter.kernelChanges++;
      }
    }
    for (const n of old.entries.neighbours) {
      if (!keep.has(`n ${n.ip}`) && !this.keyByNeighbour.has(n.ip)) {
        await delNeighbour(this.nl, { index: this.index, ip: n.ip });
        this.counter.kernelChanges++;
      }
    }
    for (const f of old.entries.fdb) {
      const owner = this.macOwner(f.mac);
      if (owner !== undefined) {
        // Another lease names this MAC: its endpoint is the one to keep.
        const other = this.programmed.get(owner);
        if (other && !next?.entries.fdb.some((x) => x.mac === f.mac)) {
          await this.program({ peer: other.peer, entries: { ...NO_ENTRIES, fdb: other.entries.fdb } }, owner);
        }
        continue;
      }
      this.keysByMac.delete(f.mac);
      await delFdbEntry(this.nl, { index: this.index, mac: f.mac, dst: f.dst });
      this.counter.kernelChanges++;
    }
  }

  /** Neighbour and fdb entry before the route that needs them; each replaced in place. */
  private async program({ entries, direct }: Programmed, key: string): Promise<void> {
    if (direct) {
      await replaceRoute(this.nl, { dst: direct.dst, gw: direct.gw, index: this.external.index });
      this.counter.kernelChanges++;
    }
    for (const n of entries.neighbours) await setNeighbour(this.nl, { index: this.index, ip: n.ip, mac: n.mac });
    const fdb = entries.fdb.filter((f) => this.macOwner(f.mac) === key);
    for (const f of fdb) await setFdbEntry(this.nl, { index: this.index, mac: f.mac, dst: f.dst });
    for (const r of entries.routes) await replaceRoute(this.nl, { dst: r.dst, gw: r.gw, index: this.index, onlink: true });
    this.counter.kernelChanges += entries.neighbours.length + fdb.length + entries.routes.length;
  }

  /** Programs one peer's entries again (a notification said one went or changed). */
  async repair(key: string): Promise<void> {
    const p = this.programmed.get(key);
    if (p) await this.program(p, key);
  }

  /** The device ensured (recreated if it went), its address, then every entry compared with the kernel. */
  async resync(): Promise<number> {
    await this.ensure();
    if (this.ownSubnet) await this.address(this.ownSubnet);
    const want: VxlanEntries = { routes: [], neighbours: [], fdb: [] };
    for (const p of this.programmed.values()) {
      want.routes.push(...p.entries.routes);
      want.neighbours.push(...p.entries.neighbours);
    }
    for (const mac of this.keysByMac.keys()) {
      const owner = this.macOwner(mac);
      const entry = owner === undefined ? undefined : this.programmed.get(owner)?.entries.fdb.find((f) => f.mac === mac);
      if (entry) want.fdb.push(entry);
    }
    const { add, remove } = await reconcileVxlan(this.nl, this.index, want, this.family);
    let count = [add, remove].reduce((n, e) => n + e.routes.length + e.neighbours.length + e.fdb.length, 0);
    if (this.config.directRouting) {
      const direct = [...this.programmed.values()].flatMap((p) => (p.direct ? [p.direct] : []));
      const changes = await reconcileHostGw(this.nl, this.external.index, this.network, direct);
      count += changes.add.length + changes.remove.length;
    }
    this.counter.kernelChanges += count;
    return count;
  }

  repairFor(notice: KernelNotice): Repair {
    switch (notice.kind) {
      case "route":
        if (!notice.deleted) return undefined;
        if (notice.index === this.index) return peerOf(this.keyByRoute.get(notice.dst));
        if (notice.index === this.external.index) return peerOf(this.keyByDirectRoute.get(notice.dst));
        return undefined;
      case "neighbour": {
        if (notice.index !== this.index) return undefined;
        const key = this.keyByNeighbour.get(notice.ip);
        if (!key) return undefined;
        const want = this.programmed.get(key)?.entries.neighbours.find((n) => n.ip === notice.ip);
        return notice.deleted || notice.mac !== want?.mac ? { peer: key } : undefined;
      }
      case "fdb": {
        if (notice.index !== this.index) return undefined;
        const key = this.macOwner(notice.mac);
        if (key === undefined) return undefined;
        const want = this.programmed.get(key)?.entries.fdb.find((f) => f.mac === notice.mac);
        return notice.deleted || (notice.dst !== undefined && notice.dst !== want?.dst) ? { peer: key } : undefined;
      }
      case "link":
        return notice.index === this.index && (notice.deleted || !notice.up) ? "resync" : undefined;
      default:
        return undefined;
    }
  }

  get peerCount(): number {
    return this.programmed.size;
  }
}

const peerOf = (key: string | undefined): Repair => (key ? { peer: key } : undefined);

/** A lease's VTEP for one family, or undefined when it has none (another backend, or its data unreadable). */
function vxlanPeer(lease: Lease, family: IpFamily, warn: (m: string) => void, key: string): VxlanPeer | undefined {
  const subnet = family === 4 ? lease.subnets.ipv4 : lease.subnets.ipv6;
  const publicIP = family === 4 ? lease.attrs.publicIP : lease.attrs.publicIPv6;
  const data = family === 4 ? lease.attrs.backendData : lease.attrs.backendV6Data;
  if (!subnet || !publicIP || publicIP === "0.0.0.0" || lease.attrs.backendType !== "vxlan") return undefined;
  try {
    const { vtepMAC } = parseVxlanBackendData(data, key);
    return { subnet: formatCidr(subnet), publicIP, vtepMac: vtepMAC };
  } catch (err) {
    warn(`ignoring lease ${key}: ${(err as Error).message}`);
    return undefined;
  }
}

export interface VxlanBackendOptions {
  nl: Rtnl;
  config: VxlanConfig;
  external: ExternalInterface;
  /** The cluster network of each family the config enables. */
  ipv4?: string;
  ipv6?: string;
  counter: KernelChangeCounter;
  /** The VTEP MACs the node's lease announced before (a restart after the device went). */
  previousMac: { 4?: string; 6?: string };
  warn: (message: string) => void;
}

/** flanneld's vxlan backend: flannel.<VNI> (and flannel-v6.<VNI>), one route, neighbour and fdb entry per other node. */
export class VxlanBackend implements Backend {
  readonly type = "vxlan" as const;
  readonly refused = new Map<string, string>();
  private readonly devices: VxlanDevice[] = [];

  constructor(private readonly o: VxlanBackendOptions) {
    const { vni } = o.config;
    if (o.ipv4) this.devices.push(new VxlanDevice(o.nl, 4, `flannel.${vni}`, o.ipv4, o.config, o.external, o.counter, o.previousMac[4]));
    if (o.ipv6) this.devices.push(new VxlanDevice(o.nl, 6, `flannel-v6.${vni}`, o.ipv6, o.config, o.external, o.counter, o.previousMac[6]));
  }

  get mtu(): number {
    return Math.min(...this.devices.map((d) => d.mtu));
  }

  async setUp(): Promise<void> {
    for (const d of this.devices) await d.ensure();
  }

  backendData(): { v4?: unknown; v6?: unknown } {
    const out: { v4?: unknown; v6?: unknown } = {};
    for (const d of this.devices) out[d.family === 4 ? "v4" : "v6"] = vxlanBackendData({ vni: this.o.config.vni, vtepMAC: d.mac });
    return out;
  }

  async configure(own: LeaseSubnets): Promise<void> {
    for (const d of this.devices) {
      const subnet = d.family === 4 ? own.ipv4 : own.ipv6;
      if (subnet) await d.address(subnet);
    }
  }

  async applyPeer(key: string, lease: Lease | undefined, options = { kernel: true }): Promise<void> {
    for (const d of this.devices) await d.set(key, lease && vxlanPeer(lease, d.family, this.o.warn, key), options.kernel);
  }

  async repair(key: string): Promise<void> {
    for (const d of this.devices) await d.repair(key);
  }

  async resync(): Promise<number> {
    let repairs = 0;
    for (const d of this.devices) repairs += await d.resync();
    return repairs;
  }

  repairFor(notice: KernelNotice): Repair {
    for (const d of this.devices) {
      const r = d.repairFor(notice);
      if (r) return r;
    }
    return undefined;
  }

  get peerCount(): number {
    return Math.max(0, ...this.devices.map((d) => d.peerCount));
  }

  /** Whether `mac` is the MAC of a VTEP this node kept from before the agent started. */
  keptVtepMac(mac: string): boolean {
    return this.devices.some((d) => d.keptMac !== undefined && d.keptMac === mac.toLowerCase());
  }

  /** The devices' names and MACs, for the log. */
  describe(): string {
    return this.devices.map((d) => `${d.name} (mac ${d.mac}, mtu ${d.mtu}, ifindex ${d.index})`).join(", ");
  }
}
