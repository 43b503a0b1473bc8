import { formatCidr } from "../lib/ip/ip.js";
import type { LeaseKeepAlive } from "../lib/etcd/client.js";
import { chooseSubnet, formatLeaseValue, subnetKey, type Lease, type LeaseAttrs, type LeaseSubnets } from "./lease.js";
import type { Logger } from "./log.js";
import type { NetworkConfig } from "./network-config.js";
import type { StoredLease, SubnetRegistry } from "./subnet-registry.js";

/** flanneld's lease TTL: 24 hours. */
export const LEASE_TTL_SECONDS = 24 * 60 * 60;
/** How often a failed renewal is tried again (flanneld: every minute). */
const RENEW_RETRY_MS = 60_000;
/** How often a creation lost to another node is tried again before the agent says it keeps losing. */
const RACE_ATTEMPTS = 10;

export function describeSubnets(subnets: LeaseSubnets): string {
  return [subnets.ipv4, subnets.ipv6]
    .filter((s) => s !== undefined)
    .map((s) => formatCidr(s))
    .join(" and ");
}

export interface AcquiredLease {
  key: string;
  subnets: LeaseSubnets;
  /** How it was chosen: took over this node's lease, the previous subnet.env's subnet, a free one. */
  reason: "own-lease" | "previous" | "free" | "same-subnet";
}

export interface LeaseKeeperOptions {
  registry: SubnetRegistry;
  config: NetworkConfig;
  log: Logger;
  /** The subnets of the subnet.env the previous run left. */
  previous?: LeaseSubnets;
  renewMarginMinutes: number;
  /**
   * Whether a lease on the previous subnet is this node's although it names another address: the
   * node was renumbered while the agent was stopped (vxlan: the lease names the VTEP MAC of a device
   * this node kept). Such a lease is taken over, as one with this node's address is.
   */
  ownsLease?: (stored: StoredLease) => boolean;
  /** The etcd lease's TTL (default flanneld's 24 h; tests make it short to see renewals). */
  ttlSeconds?: number;
  random?: (n: number) => number;
}

/**
 * This node's lease: acquired in flanneld's order, kept alive on ONE etcd lease (renewed over a
 * keep-alive stream, not re-granted), and acquired again when it is deleted, the same subnet first.
 */
export class LeaseKeeper {
  private etcdLease?: string;
  private keepAlive?: LeaseKeepAlive;
  private renewTimer?: NodeJS.Timeout;
  private stopped = false;
  own?: AcquiredLease;
  /** This node's key is a reservation (an operator put it without an etcd lease): it stays one. */
  private reservation = false;
  attrs?: LeaseAttrs;

  constructor(private readonly o: LeaseKeeperOptions) {}

  /** The etcd lease this node's key lives on: granted once, granted again only when etcd lost it. */
  private async ensureEtcdLease(): Promise<string> {
    if (this.etcdLease) {
      const { ttl } = await this.o.registry.timeToLive(this.etcdLease);
      if (ttl > 0) return this.etcdLease;
      this.o.log.warn(`etcd lease ${this.etcdLease} is gone (expired or revoked): granting a new one`);
      this.keepAlive?.close();
      this.keepAlive = undefined;
    }
    const { id, ttl } = await this.o.registry.grant(this.o.ttlSeconds ?? LEASE_TTL_SECONDS);
    this.etcdLease = id;
    this.scheduleRenewal(ttl);
    return id;
  }

  /** Acquires the lease with `attrs`: flanneld's order, an atomic creation, a lost race tried again. */
  async acquire(attrs: LeaseAttrs, known?: readonly StoredLease[]): Promise<AcquiredLease> {
    this.attrs = attrs;
    const value = formatLeaseValue(attrs);
    for (let attempt = 1; ; attempt++) {
      const leases = known && attempt === 1 ? known : (await this.o.registry.list()).leases;
      const seen = leases.map((l) => this.asSeen(l, attrs));
      const choice = chooseSubnet({
        config: this.o.config,
        leases: seen.map((l) => l.lease),
        publicIP: attrs.publicIP === "0.0.0.0" ? undefined : attrs.publicIP,
        publicIPv6: attrs.publicIPv6 ?? undefined,
        previous: this.o.previous,
        random: this.o.random,
      });
      const stored = (lease: Lease | undefined) => leases[seen.findIndex((l) => l.lease === lease)];
      if (choice.reason !== "own-lease" && choice.staleOwnLease) {
        const stale = stored(choice.staleOwnLease)!;
        this.o.log.info(`deleting this node's lease ${stale.key}: it does not fit the network config any more`);
        await this.o.registry.deleteIfUnchanged(stale.key, stale.modRevision);
      }
      const key = subnetKey(this.o.registry.prefix, choice.subnets);
      if (choice.reason === "own-lease") {
        const mine = stored(choice.lease)!;
        // A reservation (a key an operator put without an etcd lease) stays one: it never expires.
        this.reservation = mine.etcdLease === "0";
        const etcdLease = this.reservation ? "0" : await this.ensureEtcdLease();
        await this.o.registry.put(key, value, etcdLease);
        if (mine.etcdLease !== "0" && mine.etcdLease !== etcdLease) await this.revokeQuietly(mine.etcdLease);
        return this.acquired({ key, subnets: choice.subnets, reason: "own-lease" });
      }
      const etcdLease = await this.ensureEtcdLease();
      const { created } = await this.o.registry.create(key, value, etcdLease);
      if (created) this.reservation = false;
      if (created) return this.acquired({ key, subnets: choice.subnets, reason: choice.reason });
      this.o.log.warn(`another node created ${key} first (attempt ${attempt}): choosing again`);
      if (attempt >= RACE_ATTEMPTS) this.o.log.warn(`lost ${attempt} races for a subnet in a row: many nodes are starting at once, still trying`);
      await new Promise((r) => setTimeout(r, Math.min(50 * attempt, 1000) * Math.random()));
    }
  }

  /** A lease as the choice sees it: one this node proves its own carries this node's addresses. */
  private asSeen(stored: StoredLease, attrs: LeaseAttrs): StoredLease {
    const { previous, ownsLease } = this.o;
    if (!previous || !ownsLease || stored.lease.attrs.publicIP === attrs.publicIP) return stored;
    if (describeSubnets(stored.lease.subnets) !== describeSubnets(previous) || !ownsLease(stored)) return stored;
    this.o.log.info(`${stored.key} names ${stored.lease.attrs.publicIP} but this node's VTEP: this node was renumbered, taking it over`);
    return { ...stored, lease: { ...stored.lease, attrs: { ...stored.lease.attrs, publicIP: attrs.publicIP, publicIPv6: attrs.publicIPv6 } } };
  }

  private acquired(lease: AcquiredLease): AcquiredLease {
    this.own = lease;
    this.o.log.info(`acquired lease ${lease.key} (${describeSubnets(lease.subnets)}; ${lease.reason})`);
    return lease;
  }

  /** The previous run's etcd lease (taken over with the key): revoked so etcd holds one per node. */
  private async revokeQuietly(id: string): Promise<void> {
    try {
      await this.o.registry.revoke(id);
    } catch (err) {
      this.o.log.warn(`could not revoke the previous etcd lease ${id}: ${(err as Error).message}`);
    }
  }

  /**
   * This node's key was deleted (or its etcd lease revoked): the same subnet is created again when
   * still free, else a new lease is acquired. Resolves to the lease now held.
   */
  async reacquire(): Promise<AcquiredLease> {
    const own = this.own!;
    const etcdLease = await this.ensureEtcdLease();
    const { created } = await this.o.registry.create(own.key, formatLeaseValue(this.attrs!), etcdLease);
    if (created) {
      this.reservation = false;
      return this.acquired({ ...own, reason: "same-subnet" });
    }
    this.o.log.warn(`${own.key} was taken by another node meanwhile: acquiring a new subnet`);
    return this.acquire(this.attrs!);
  }

  /** The lease's value changed (a new public address): written over the same key. */
  async update(attrs: LeaseAttrs): Promise<void> {
    this.attrs = attrs;
    const own = this.own!;
    await this.o.registry.put(own.key, formatLeaseValue(attrs), this.reservation ? "0" : await this.ensureEtcdLease());
  }

  /** Whether `value` is what this node wrote. */
  isOwnValue(value: LeaseAttrs): boolean {
    return this.attrs !== undefined && formatLeaseValue(value) === formatLeaseValue(this.attrs);
  }

  private scheduleRenewal(ttlSeconds: number): void {
    clearTimeout(this.renewTimer);
    if (this.stopped) return;
    const delayMs = Math.max(ttlSeconds - this.o.renewMarginMinutes * 60, 1) * 1000;
    this.renewTimer = setTimeout(() => void this.renew(), delayMs);
    this.renewTimer.unref();
  }

  /**
   * Renews the one etcd lease. A lease etcd no longer has took this node's key with it: the watch
   * sees the key deleted and the agent acquires it again (reacquire), on a new etcd lease.
   */
  private async renew(): Promise<void> {
    const id = this.etcdLease;
    if (!id || this.stopped) return;
    try {
      this.keepAlive ??= this.o.registry.client.leaseKeepAlive(id);
      const ttl = await this.o.registry.keepAliveRenew(this.keepAlive);
      this.o.log.info(`renewed etcd lease ${id} of ${this.own?.key ?? "this node"} for ${ttl} s`);
      this.scheduleRenewal(ttl);
    } catch (err) {
      if (/not found/.test((err as Error).message)) {
        this.o.log.warn(`etcd lease ${id} is gone: the lease will be acquired again`);
        return;
      }
      this.o.log.warn(`renewing etcd lease ${id} failed: ${(err as Error).message}; trying again in ${RENEW_RETRY_MS / 1000} s`);
      clearTimeout(this.renewTimer);
      if (!this.stopped) {
        this.renewTimer = setTimeout(() => void this.renew(), RENEW_RETRY_MS);
        this.renewTimer.unref();
      }
    }
  }

  /** The etcd client changed: the keep-alive stream is opened anew on the next renewal. */
  dropKeepAlive(): void {
    this.keepAlive?.close();
    this.keepAlive = undefined;
  }

  /** Stops renewing; the lease itself stays in etcd (a restart takes it over). */
  stop(): void {
    this.stopped = true;
    clearTimeout(this.renewTimer);
    this.keepAlive?.close();
  }
}
