import type { Lease, LeaseSubnets } from "./lease.js";

/** What a kernel notification was about, decoded: the backends decide whether it concerns them. */
export type KernelNotice =
  | { kind: "route"; deleted: boolean; dst: string; gw?: string; index?: number }
  | { kind: "neighbour"; deleted: boolean; ip: string; mac: string; index: number }
  | { kind: "fdb"; deleted: boolean; mac: string; dst?: string; index: number }
  | { kind: "link"; deleted: boolean; index: number; name: string; up: boolean }
  | { kind: "address"; deleted: boolean; index: number; cidr: string }
  /** The notification socket overflowed: anything may have been missed. */
  | { kind: "lost" };

/** What a backend makes of a notice: nothing, one peer's entries to program again, or a full pass. */
export type Repair = { peer: string } | "resync" | undefined;

/**
 * A backend (vxlan, host-gw) keeps the kernel programmed for the other nodes' leases. Its per-event
 * work is for one lease (O(1)); a full pass compares every entry with the kernel.
 */
export interface Backend {
  readonly type: "vxlan" | "host-gw" | "udp";
  /** FLANNEL_MTU. */
  readonly mtu: number;
  /** Before the lease: the device, if any, so its MAC can go into the lease. */
  setUp(): Promise<void>;
  /** The lease's BackendData and BackendV6Data. */
  backendData(): { v4?: unknown; v6?: unknown };
  /** After the lease: what the backend needs of the node's own subnets (the VTEP's address). */
  configure(own: LeaseSubnets): Promise<void>;
  /**
   * One other node's lease, created or changed (`lease`) or gone (undefined). With `kernel: false`
   * only the backend's table changes, for a full pass to bring the kernel in line afterwards (the
   * start-up: a restarted agent changes nothing that is already right).
   */
  applyPeer(key: string, lease: Lease | undefined, options?: { kernel: boolean }): Promise<void>;
  /** Programs one peer's entries again, after a notification said one went or changed. */
  repair(key: string): Promise<void>;
  /** Leases programmed now. */
  readonly peerCount: number;
  /** A full pass: the device set up again if it went, then every entry compared with the kernel; returns the repairs made. */
  resync(): Promise<number>;
  /** What to do about a kernel notification. */
  repairFor(notice: KernelNotice): Repair;
  /** Problems with peers the backend refuses (host-gw: a peer not on-link), for the log. */
  readonly refused: ReadonlyMap<string, string>;
}

/** Counts every kernel change a backend makes. */
export interface KernelChangeCounter {
  kernelChanges: number;
}
