import type { EtcdClient, KeyValue, LeaseKeepAlive, Watch, WatchEvent } from "../lib/etcd/client.js";
import { configKey, parseLeaseValue, parseSubnetKey, subnetsKeyPrefix, type Lease } from "./lease.js";
import type { AgentMetrics } from "./metrics.js";

/** A lease as etcd holds it: its key, what it says, and which etcd lease keeps it alive. */
export interface StoredLease {
  key: string;
  lease: Lease;
  /** The etcd lease id, decimal; "0" for a reservation an operator put without one. */
  etcdLease: string;
  modRevision: number;
}

/** A key under subnets/ that is not a lease flanneld could read, and why. */
export interface UnreadableLease {
  key: string;
  problem: string;
}

export type LeaseEvent =
  | { type: "put"; stored: StoredLease; revision: number }
  | { type: "delete"; key: string; revision: number }
  | { type: "unreadable"; unreadable: UnreadableLease; revision: number }
  | { type: "compacted" }
  | { type: "reconnecting"; error: Error }
  | { type: "watching" };

/**
 * flanneld's etcd registry (pkg/subnet/etcd/registry.go) on weft's client: the config key, the
 * lease keys under `<prefix>/subnets/`, and every request counted. Unlike flanneld, listing asks
 * etcd once, whatever the number of leases: the lease's TTL is not needed to program a route.
 */
export class SubnetRegistry {
  constructor(
    public client: EtcdClient,
    readonly prefix: string,
    private readonly metrics: AgentMetrics,
  ) {}

  private counted<T>(request: Promise<T>): Promise<T> {
    this.metrics.etcdRequests++;
    return request;
  }

  /** The config's text, or undefined when the key is absent. */
  async config(): Promise<string | undefined> {
    const { kvs } = await this.counted(this.client.range(configKey(this.prefix)));
    return kvs[0]?.value;
  }

  read(kv: KeyValue): StoredLease | UnreadableLease {
    const subnets = parseSubnetKey(this.prefix, kv.key);
    if (!subnets) return { key: kv.key, problem: "the key does not name a subnet (<ip>-<length>)" };
    try {
      return { key: kv.key, lease: { subnets, attrs: parseLeaseValue(kv.value, kv.key) }, etcdLease: kv.lease, modRevision: kv.modRevision };
    } catch (err) {
      return { key: kv.key, problem: (err as Error).message };
    }
  }

  /** Every lease, at one revision, and the keys that could not be read. */
  async list(): Promise<{ leases: StoredLease[]; unreadable: UnreadableLease[]; revision: number }> {
    const { kvs, revision } = await this.counted(this.client.range(subnetsKeyPrefix(this.prefix), { prefix: true }));
    const leases: StoredLease[] = [];
    const unreadable: UnreadableLease[] = [];
    for (const kv of kvs) {
      const read = this.read(kv);
      if ("lease" in read) leases.push(read);
      else unreadable.push(read);
    }
    return { leases, unreadable, revision };
  }

  create(key: string, value: string, etcdLease: string): Promise<{ created: boolean; revision: number }> {
    return this.counted(this.client.createIfAbsent(key, value, { lease: etcdLease }));
  }

  put(key: string, value: string, etcdLease: string): Promise<number> {
    return this.counted(this.client.put(key, value, { lease: etcdLease }));
  }

  deleteIfUnchanged(key: string, modRevision: number): Promise<boolean> {
    return this.counted(this.client.deleteIfUnchanged(key, modRevision));
  }

  grant(ttlSeconds: number): Promise<{ id: string; ttl: number }> {
    return this.counted(this.client.leaseGrant(ttlSeconds));
  }

  revoke(id: string): Promise<void> {
    return this.counted(this.client.leaseRevoke(id));
  }

  timeToLive(id: string): Promise<{ ttl: number; grantedTtl: number }> {
    return this.counted(this.client.leaseTimeToLive(id));
  }

  keepAliveRenew(keepAlive: LeaseKeepAlive): Promise<number> {
    return this.counted(keepAlive.renew());
  }

  /** Watches the lease keys from a revision on; one watch request, whatever the number of events. */
  watch(fromRevision: number, onEvent: (event: LeaseEvent) => void): Watch {
    this.metrics.etcdRequests++;
    return this.client.watchPrefix(subnetsKeyPrefix(this.prefix), fromRevision, (event: WatchEvent) => {
      if (event.type === "compacted") onEvent({ type: "compacted" });
      else if (event.type === "reconnecting") onEvent({ type: "reconnecting", error: event.error });
      else if (event.type === "watching") onEvent({ type: "watching" });
      else if (event.type === "delete") onEvent({ type: "delete", key: event.kv.key, revision: event.kv.modRevision });
      else {
        const read = this.read(event.kv);
        if ("lease" in read) onEvent({ type: "put", stored: read, revision: event.kv.modRevision });
        else onEvent({ type: "unreadable", unreadable: read, revision: event.kv.modRevision });
      }
    });
  }
}
