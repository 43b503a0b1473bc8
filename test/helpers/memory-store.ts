import type { HeldLock } from "../../lib/lock/lock.js";
import { parseIp, ipToBigInt } from "../../lib/ip/ip.js";
import { formatAddress, type Address } from "../../ipam/host-local/allocator.js";
import { ownerKey, type Attachment, type PreparedReservation, type Reservation, type Store } from "../../ipam/host-local/store.js";

/**
 * host-local's store in memory, for unit tests of what the verbs decide: reservations by address
 * name as the disk store names them, the cursors, and a lock that fails the test when a change is
 * made without it or it is taken twice.
 */
export class MemoryStore implements Store {
  readonly location = "<memory>";
  /** Address name -> owner, in insertion order. */
  readonly owners = new Map<string, string>();
  readonly cursors = new Map<number, Address>();
  /** Prepared reservations not yet discarded. */
  readonly outstanding = new Set<PreparedReservation>();
  locked = false;
  syncs = 0;

  constructor(owners: Record<string, string> = {}) {
    for (const [name, owner] of Object.entries(owners)) this.owners.set(name, owner);
  }

  async lock(): Promise<HeldLock> {
    if (this.locked) throw new Error("MemoryStore: lock taken twice");
    this.locked = true;
    return {
      path: "<memory>/lock",
      release: () => {
        this.locked = false;
      },
    };
  }

  addresses(): Address[] {
    return this.reservations().map((r) => r.address);
  }

  reservations(): Reservation[] {
    const out: Reservation[] = [];
    for (const [name, owner] of this.owners) {
      const ip = parseIp(name);
      if (ip) out.push({ name, address: { family: ip.family, value: ipToBigInt(ip) }, owner });
    }
    return out;
  }

  ownerOf(name: string): string | undefined {
    return this.owners.get(name);
  }

  prepare(attachment: Attachment): PreparedReservation {
    const prepared = { owner: ownerKey(attachment.containerId, attachment.ifName) };
    this.outstanding.add(prepared);
    return prepared;
  }

  discard(prepared: PreparedReservation): void {
    this.outstanding.delete(prepared);
  }

  reserve(address: Address, prepared: PreparedReservation): boolean {
    this.mustHoldLock("reserve");
    const name = formatAddress(address);
    if (this.owners.has(name)) return false;
    this.owners.set(name, prepared.owner);
    return true;
  }

  release(name: string, owned: (owner: string) => boolean): boolean {
    this.mustHoldLock("release");
    const owner = this.owners.get(name);
    if (owner === undefined || !owned(owner)) return false;
    this.owners.delete(name);
    return true;
  }

  lastReserved(index: number): Address | undefined {
    return this.cursors.get(index);
  }

  setLastReserved(index: number, address: Address): void {
    this.mustHoldLock("setLastReserved");
    this.cursors.set(index, address);
  }

  sync(): void {
    this.syncs++;
  }

  removeLeftovers(): string[] {
    return [];
  }

  private mustHoldLock(what: string): void {
    if (!this.locked) throw new Error(`MemoryStore: ${what} without the lock`);
  }
}
