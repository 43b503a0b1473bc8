import { performance } from "node:perf_hooks";
import { setTimeout as sleep } from "node:timers/promises";
import { formatLeaseValue, subnetKey, vxlanBackendData } from "../../agent/lease.js";
import type { EtcdClient } from "../../lib/etcd/client.js";
import { parseCidr } from "../../lib/ip/ip.js";

/**
 * Other nodes' leases as their flanneld would write them, for the node agent's scale benchmark: each
 * fake peer has its own /24 of 10.0.0.0/8 (from 10.1.0.0 on, clear of the first subnets the agent
 * under test picks its own from), its own public address of 198.18.0.0/15 (RFC 2544's benchmark
 * range: the hosts need not exist, the agent's vxlan entries are static and its routes onlink) and
 * its own VTEP MAC, and its key is attached to an etcd lease of its own (24 h, as flanneld's). A lease
 * goes away as a node's does, by its etcd lease ending (revoked here rather than left to expire).
 */

export const NETWORK = "10.0.0.0/8";
export const LEASE_TTL_SECONDS = 24 * 3600;
const FIRST_PEER_SUBNET = 256; // 10.1.0.0/24
const PUBLIC_BASE = 198 * 2 ** 24 + 18 * 2 ** 16; // 198.18.0.0/15
const PUBLIC_ADDRESSES = 2 ** 17 - 2;

export interface PeerState {
  /** The peer's /24, e.g. 10.1.2.0/24: its route's destination. */
  subnet: string;
  /** The /24's .0: the route's onlink gateway and the neighbour entry's address. */
  gateway: string;
  publicIP: string;
  vtepMAC: string;
}

export interface FakePeer extends PeerState {
  index: number;
  key: string;
  present: boolean;
  /** The etcd lease (decimal id) the key is attached to while present. */
  etcdLease: string;
}

export type ChangeKind = "create" | "delete" | "recreate" | "public-ip" | "vtep-mac";

/** One write to etcd that the agent must turn into kernel changes. */
export interface LeaseChange {
  seq: number;
  kind: ChangeKind;
  peer: number;
  key: string;
  /** The peer's entries after the change; undefined when its lease is gone. */
  after: PeerState | undefined;
  /** Those it had before (to tell which stale ones must go). */
  before: PeerState | undefined;
  /** performance.now() when the request carrying the change was sent. */
  issuedMs: number;
  /** When etcd answered. */
  ackedMs?: number;
  /** The etcd revision of the change: a put's answer, or (a revoke answers none) the watch's event. */
  revision?: number;
  /** performance.now() when the benchmark's own watch saw the event (the etcd-to-watcher floor). */
  watchedMs?: number;
  error?: string;
}

function ipv4(value: number): string {
  return [value >>> 24, (value >>> 16) & 255, (value >>> 8) & 255, value & 255].join(".");
}

function mac(value: number): string {
  // 0e: locally administered, unicast.
  const bytes = [0x0e, (value / 2 ** 32) & 255, (value >>> 24) & 255, (value >>> 16) & 255, (value >>> 8) & 255, value & 255];
  return bytes.map((b) => b.toString(16).padStart(2, "0")).join(":");
}

export function peerSubnet(index: number): { subnet: string; gateway: string } {
  const n = FIRST_PEER_SUBNET + index;
  if (n >= 2 ** 16) throw new Error(`lease writer: peer ${index} is past 10.255.255.0/24`);
  const gateway = `10.${n >>> 8}.${n & 255}.0`;
  return { subnet: `${gateway}/24`, gateway };
}

export class LeaseWriter {
  readonly peers: FakePeer[] = [];
  readonly changes: LeaseChange[] = [];
  private publicCounter = 0;
  private macCounter = 0;

  constructor(
    private readonly client: EtcdClient,
    private readonly etcdPrefix: string,
    /** Told of every change as it is sent, before etcd answers. */
    private readonly onChange: (change: LeaseChange) => void = () => undefined,
  ) {}

  private nextPublicIP(): string {
    if (this.publicCounter >= PUBLIC_ADDRESSES) throw new Error("lease writer: 198.18.0.0/15 is used up");
    return ipv4(PUBLIC_BASE + 1 + this.publicCounter++);
  }

  private nextMac(): string {
    return mac(++this.macCounter);
  }

  private value(peer: PeerState): string {
    return formatLeaseValue({
      publicIP: peer.publicIP,
      publicIPv6: null,
      backendType: "vxlan",
      backendData: vxlanBackendData({ vni: 1, vtepMAC: peer.vtepMAC }),
    });
  }

  private static state(peer: FakePeer): PeerState {
    return { subnet: peer.subnet, gateway: peer.gateway, publicIP: peer.publicIP, vtepMAC: peer.vtepMAC };
  }

  private record(kind: ChangeKind, peer: FakePeer, before: PeerState | undefined): LeaseChange {
    const change: LeaseChange = {
      seq: this.changes.length,
      kind,
      peer: peer.index,
      key: peer.key,
      after: peer.present ? LeaseWriter.state(peer) : undefined,
      before,
      issuedMs: performance.now(),
    };
    this.changes.push(change);
    this.onChange(change);
    return change;
  }

  private async settle(change: LeaseChange, request: Promise<number | undefined>): Promise<LeaseChange> {
    try {
      const revision = await request;
      change.ackedMs = performance.now();
      if (revision !== undefined) change.revision = revision;
    } catch (err) {
      change.error = err instanceof Error ? err.message : String(err);
    }
    return change;
  }

  /** A new peer's lease, written as flanneld first writes its own (create if absent, on a fresh etcd lease). */
  private async create(kind: "create" | "recreate", peer: FakePeer): Promise<LeaseChange> {
    peer.etcdLease = (await this.client.leaseGrant(LEASE_TTL_SECONDS)).id;
    peer.present = true;
    const change = this.record(kind, peer, undefined);
    return await this.settle(
      change,
      this.client.createIfAbsent(peer.key, this.value(peer), { lease: peer.etcdLease }).then(({ created, revision }) => {
        if (!created) throw new Error(`${peer.key} exists already`);
        return revision;
      }),
    );
  }

  /** Peers `from` to `to - 1`, `concurrency` writes at a time. Resolves once etcd has answered all. */
  async writePeers(from: number, to: number, concurrency: number): Promise<LeaseChange[]> {
    for (let index = this.peers.length; index < to; index++) {
      const { subnet, gateway } = peerSubnet(index);
      const cidr = parseCidr(subnet)!;
      this.peers.push({
        index,
        key: subnetKey(this.etcdPrefix, { ipv4: cidr }),
        subnet,
        gateway,
        publicIP: this.nextPublicIP(),
        vtepMAC: this.nextMac(),
        present: false,
        etcdLease: "0",
      });
    }
    let next = from;
    const written: LeaseChange[] = [];
    const worker = async () => {
      while (next < to) {
        const peer = this.peers[next++]!;
        written.push(await this.create("create", peer));
      }
    };
    await Promise.all(Array.from({ length: Math.max(1, concurrency) }, worker));
    const failed = written.filter((c) => c.error);
    if (failed.length) throw new Error(`lease writer: ${failed.length} of ${written.length} writes failed, first: ${failed[0]!.error}`);
    return written;
  }

  /** The lease goes as a node's does when its etcd lease ends. */
  delete(peer: FakePeer): Promise<LeaseChange> {
    const before = LeaseWriter.state(peer);
    peer.present = false;
    const change = this.record("delete", peer, before);
    const lease = peer.etcdLease;
    peer.etcdLease = "0";
    return this.settle(
      change,
      this.client.leaseRevoke(lease).then(() => undefined),
    );
  }

  recreate(peer: FakePeer): Promise<LeaseChange> {
    return this.create("recreate", peer);
  }

  /** The node came back with another public address (its lease value rewritten in place, as flanneld renews it). */
  changePublicIP(peer: FakePeer): Promise<LeaseChange> {
    const before = LeaseWriter.state(peer);
    peer.publicIP = this.nextPublicIP();
    const change = this.record("public-ip", peer, before);
    return this.settle(change, this.client.put(peer.key, this.value(peer), { lease: peer.etcdLease }));
  }

  /** The node's VTEP came back with another MAC. */
  changeVtepMAC(peer: FakePeer): Promise<LeaseChange> {
    const before = LeaseWriter.state(peer);
    peer.vtepMAC = this.nextMac();
    const change = this.record("vtep-mac", peer, before);
    return this.settle(change, this.client.put(peer.key, this.value(peer), { lease: peer.etcdLease }));
  }

  /** The peers whose lease exists. */
  present(): FakePeer[] {
    return this.peers.filter((p) => p.present);
  }
}

export interface ChurnOptions {
  /** Changes per second. */
  rate: number;
  seconds: number;
  /** A deleted lease is re-created after at least this long (default 1 s). */
  recreateAfterMs?: number;
  /** Whether a peer may be changed now (not while the agent has yet to apply its previous change). */
  idle: (peer: FakePeer) => boolean;
}

export interface ChurnResult {
  changes: LeaseChange[];
  /** Sending time less schedule, per change: how accurately the pace was kept. */
  scheduleSlipMs: number[];
  /** Deleted leases still missing when the window ended, re-created after it. */
  recreatedAfterWindow: number;
  skipped: number;
}

/**
 * `rate` changes a second for `seconds`, each sent at its scheduled time (not after the previous one's
 * answer), cycling through four kinds: a lease deleted, a deleted one re-created (the oldest, once
 * gone for `recreateAfterMs`; a public address change instead while none is), a public address
 * changed, a VTEP MAC changed. Peers are taken in turn from a shuffled order, skipping those the
 * caller says are busy; in the window's last second nothing more is deleted, so that the end state
 * holds every peer again.
 */
export async function churn(writer: LeaseWriter, options: ChurnOptions, random: () => number = Math.random): Promise<ChurnResult> {
  const intervalMs = 1000 / options.rate;
  const total = Math.round(options.rate * options.seconds);
  const recreateAfterMs = options.recreateAfterMs ?? 1000;
  const order = writer.present();
  for (let i = order.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [order[i], order[j]] = [order[j]!, order[i]!];
  }
  let cursor = 0;
  const pick = (): FakePeer | undefined => {
    for (let tries = 0; tries < order.length; tries++) {
      const peer = order[cursor++ % order.length]!;
      if (peer.present && options.idle(peer)) return peer;
    }
    return undefined;
  };
  const deleted: { peer: FakePeer; atMs: number }[] = [];
  const pending: Promise<LeaseChange>[] = [];
  const slip: number[] = [];
  let skipped = 0;
  const start = performance.now();
  for (let i = 0; i < total; i++) {
    const due = start + i * intervalMs;
    const wait = due - performance.now();
    if (wait > 1) await sleep(wait - 1);
    while (performance.now() < due) {
      // The last millisecond spun: timers fire up to a millisecond late.
    }
    const now = performance.now();
    const lastSecond = now - start > options.seconds * 1000 - 1000;
    let kind = (["delete", "recreate", "public-ip", "vtep-mac"] as const)[i % 4];
    if (kind === "delete" && lastSecond) kind = deleted.length ? "recreate" : "public-ip";
    if (kind === "recreate" && !(deleted.length && (now - deleted[0]!.atMs >= recreateAfterMs || lastSecond))) kind = "public-ip";
    if (kind === "recreate") {
      const { peer } = deleted.shift()!;
      pending.push(writer.recreate(peer));
    } else {
      const peer = pick();
      if (!peer) {
        skipped++;
        continue;
      }
      if (kind === "delete") {
        deleted.push({ peer, atMs: now });
        pending.push(writer.delete(peer));
      } else pending.push(kind === "public-ip" ? writer.changePublicIP(peer) : writer.changeVtepMAC(peer));
    }
    slip.push(now - due);
  }
  const recreatedAfterWindow = deleted.length;
  for (const { peer } of deleted.splice(0)) pending.push(writer.recreate(peer));
  const changes = await Promise.all(pending);
  return { changes, scheduleSlipMs: slip, recreatedAfterWindow, skipped };
}
