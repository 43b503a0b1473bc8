import { asCniError, CniError, ErrorCode } from "../../lib/errors/cni.js";
import { ipToBigInt, parseCidr, type IpFamily } from "../../lib/ip/ip.js";
import type { IPConfig, Result } from "../../lib/cni/result.js";
import type { Attachment as GcAttachment } from "../../lib/cni/skel.js";
import {
  candidates,
  formatAddress,
  formatRangeSet,
  formatValue,
  formatWithPrefix,
  freeCount,
  isAllocatable,
  rangeFor,
  type Address,
  type Candidate,
  type RangeSet,
} from "./allocator.js";
import type { IpamConfig } from "./config.js";
import { crashPoint } from "../../lib/crash/crash.js";
import { heldBy, isOwnerOf, ownerKey, parseOwner, type Attachment, type PreparedReservation, type Reservation, type Store } from "./store.js";

// What the verbs do to the store. Reading who holds what is O(reservations), so it happens before
// the lock is taken: the runtime never runs two operations for one attachment at once (SPEC
// "Lifecycle & ordering"), so an attachment's own reservations cannot change meanwhile. Under the
// lock each change is checked again against the file it changes.

export type { Attachment } from "./store.js";

// The reference's failures are plain Go errors, which its skel prints as code 999; weft's messages
// are the reference's, its codes say what failed.
function failure(message: string, details?: string): CniError {
  return new CniError(ErrorCode.NoAddress, message, details);
}

function checkFailure(message: string, details?: string): CniError {
  return new CniError(ErrorCode.CheckFailed, message, details);
}

function describeOwner(owner: string): string {
  const parsed = parseOwner(owner);
  if (!parsed) return `an unreadable reservation (${JSON.stringify(owner)})`;
  return parsed.ifName === undefined ? `container ${parsed.containerId}` : `container ${parsed.containerId} interface ${parsed.ifName}`;
}

class TakenAddresses {
  private readonly byFamily = new Map<IpFamily, Set<bigint>>([
    [4, new Set()],
    [6, new Set()],
  ]);

  constructor(addresses: Iterable<Address>) {
    for (const a of addresses) this.add(a);
  }

  add(a: Address): void {
    this.byFamily.get(a.family)!.add(a.value);
  }

  has(a: Address): boolean {
    return this.byFamily.get(a.family)!.has(a.value);
  }
}

/**
 * ADD: one address per range set, all or none. The lock is held only to choose the addresses and
 * link the files: they are written and synced before, and the directory is synced after.
 */
export async function allocate(store: Store, ipam: IpamConfig, attachment: Attachment): Promise<IPConfig[]> {
  const held = store.reservations().filter((r) => isOwnerOf(r.owner, attachment));
  const prepared: PreparedReservation[] = [];
  try {
    while (prepared.length < ipam.rangeSets.length) prepared.push(store.prepare(attachment));
    const lock = await store.lock(ipam.lockTimeoutMs);
    let ips: IPConfig[];
    try {
      ips = reserveAll(store, ipam, attachment, { requested: [...ipam.requestedIps], held, taken: new TakenAddresses(store.addresses()), prepared });
    } finally {
      lock.release();
    }
    store.sync();
    crashPoint("host-local:allocated");
    return ips;
  } finally {
    for (const p of prepared) store.discard(p);
  }
}

function reserveAll(store: Store, ipam: IpamConfig, attachment: Attachment, state: AllocationState): IPConfig[] {
  const reserved: string[] = [];
  // Only what this ADD reserved: the reference releases everything the attachment holds.
  const rollBack = () => {
    const key = ownerKey(attachment.containerId, attachment.ifName);
    for (const name of reserved) store.release(name, (owner) => owner === key);
  };
  const ips: IPConfig[] = [];
  for (const [index, set] of ipam.rangeSets.entries()) {
    let chosen: Candidate;
    try {
      chosen = reserveInSet(store, set, index, attachment, state, state.prepared[index]!);
    } catch (err) {
      rollBack();
      throw asCniError(err).withContext(`failed to allocate for range ${index}`);
    }
    reserved.push(formatAddress(chosen.address));
    ips.push({ address: formatWithPrefix(chosen.address, chosen.range), gateway: formatValue(chosen.range.family, chosen.range.gateway) });
  }
  if (state.requested.length > 0) {
    rollBack();
    throw failure(
      `failed to allocate all requested IPs: ${state.requested.map(formatAddress).join(" ")}`,
      `every requested address must lie in a range of one of the range sets: ${ipam.rangeSets.map(formatRangeSet).join("; ")}`,
    );
  }
  return ips;
}

interface AllocationState {
  requested: Address[];
  held: Reservation[];
  taken: TakenAddresses;
  /** One prepared reservation per range set. */
  prepared: PreparedReservation[];
}

function reserveInSet(
  store: Store,
  set: RangeSet,
  index: number,
  attachment: Attachment,
  state: AllocationState,
  prepared: PreparedReservation,
): Candidate {
  const { containerId, ifName } = attachment;
  const wanted = state.requested.findIndex((a) => rangeFor(set, a) !== undefined);
  if (wanted >= 0) {
    const address = state.requested.splice(wanted, 1)[0]!;
    const range = rangeFor(set, address)!;
    const name = formatAddress(address);
    if (address.value === range.gateway) throw failure(`requested ip ${name} is subnet's gateway`);
    if (!isAllocatable(range, address.value)) throw failure(`requested ip ${name} is the network or broadcast address of its subnet`);
    if (!store.reserve(address, prepared)) {
      const owner = store.ownerOf(name);
      throw failure(
        `requested IP address ${name} is not available in range set ${formatRangeSet(set)}`,
        owner === undefined ? undefined : `it is reserved by ${describeOwner(owner)}`,
      );
    }
    state.taken.add(address);
    store.setLastReserved(index, address);
    return { address, range };
  }

  // SPEC: a runtime must not ADD an attachment twice without a DEL in between.
  const duplicate = state.held.find((r) => rangeFor(set, r.address) !== undefined);
  if (duplicate) {
    throw failure(
      `${duplicate.name} has been allocated to ${containerId}, duplicate allocation is not allowed`,
      `DEL container ${containerId} interface ${ifName} before adding it again`,
    );
  }
  for (const candidate of candidates(set, store.lastReserved(index))) {
    if (state.taken.has(candidate.address)) continue;
    state.taken.add(candidate.address);
    // false only if something wrote the file without the lock; go on to the next address.
    if (store.reserve(candidate.address, prepared)) {
      crashPoint("host-local:reserved");
      store.setLastReserved(index, candidate.address);
      return candidate;
    }
  }
  throw failure(
    `no IP addresses available in range set: ${formatRangeSet(set)}`,
    "reservations of containers that are gone are released by DEL or GC; or widen the range",
  );
}

function joinErrors(errors: string[]): CniError {
  return new CniError(ErrorCode.IOFailure, errors.join(";"));
}

/**
 * DEL: releases what the attachment holds; when it holds nothing, what its container holds in
 * files written before plugins v0.8.0, which name no interface. Nothing held is success.
 */
export async function release(store: Store, timeoutMs: number, attachment: Attachment): Promise<string[]> {
  const { held, owned } = heldBy(store.reservations(), attachment);
  if (held.length === 0) return [];
  return removeUnderLock(store, timeoutMs, held, owned);
}

async function removeUnderLock(store: Store, timeoutMs: number, found: Reservation[], owned: (owner: string) => boolean): Promise<string[]> {
  const lock = await store.lock(timeoutMs);
  const released: string[] = [];
  const errors: string[] = [];
  try {
    for (const r of found) {
      try {
        if (store.release(r.name, owned)) released.push(r.name);
      } catch (err) {
        errors.push(asCniError(err).message);
      }
    }
  } finally {
    lock.release();
  }
  store.sync();
  if (errors.length > 0) throw joinErrors(errors);
  return released;
}

/**
 * CHECK: the attachment holds an address in every range set, and every address of prevResult
 * that lies in a range set is one it holds. The reference is content with any one address.
 */
export function checkAllocation(store: Store | undefined, ipam: IpamConfig, attachment: Attachment, prevResult?: Result): void {
  const { containerId, ifName } = attachment;
  const { held: mine } = heldBy(store?.reservations() ?? [], attachment);
  if (mine.length === 0) {
    throw checkFailure(
      `host-local: Failed to find address added by container ${containerId}`,
      `no reservation for interface ${ifName} in ${store?.location ?? ipam.dataDir}`,
    );
  }
  ipam.rangeSets.forEach((set, index) => {
    if (!mine.some((r) => rangeFor(set, r.address))) {
      throw checkFailure(`host-local: container ${containerId} interface ${ifName} holds no address in range set ${index} (${formatRangeSet(set)})`);
    }
  });
  for (const ip of prevResult?.ips ?? []) {
    const cidr = parseCidr(ip.address);
    if (!cidr) continue;
    const address = { family: cidr.ip.family, value: ipToBigInt(cidr.ip) };
    if (!ipam.rangeSets.some((set) => rangeFor(set, address))) continue;
    if (!mine.some((r) => r.address.family === address.family && r.address.value === address.value)) {
      const name = formatAddress(address);
      const owner = store?.ownerOf(name);
      throw checkFailure(
        `host-local: prevResult address ${name} is not reserved for container ${containerId} interface ${ifName}`,
        owner === undefined ? "it is not reserved at all" : `it is reserved by ${describeOwner(owner)}`,
      );
    }
  }
}

/**
 * GC (CNI 1.1): releases every reservation whose holder is not among the valid attachments. A
 * file naming no interface is kept while its container has any valid attachment; an empty or
 * unreadable one (a crash inside the reference's write) has no holder and goes, and so do the
 * temporary files of weft processes that died.
 */
export async function collectGarbage(store: Store, timeoutMs: number, valid: readonly GcAttachment[]): Promise<string[]> {
  const keys = new Set(valid.map((a) => ownerKey(a.containerID, a.ifname)));
  const containers = new Set(valid.map((a) => a.containerID));
  const garbage = (owner: string) => {
    const parsed = parseOwner(owner);
    if (!parsed) return true;
    return parsed.ifName === undefined ? !containers.has(parsed.containerId) : !keys.has(owner);
  };
  const released = await removeUnderLock(
    store,
    timeoutMs,
    store.reservations().filter((r) => garbage(r.owner)),
    garbage,
  );
  store.removeLeftovers();
  return released;
}

/** STATUS: the range sets with no address left, by index (ADD needs one address from each). */
export function exhaustedRangeSets(store: Store | undefined, ipam: IpamConfig): number[] {
  const taken = store?.addresses() ?? [];
  return ipam.rangeSets.flatMap((set, index) => (freeCount(set, taken) > 0n ? [] : [index]));
}
