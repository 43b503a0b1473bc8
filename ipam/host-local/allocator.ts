import { formatIp, ipFromBigInt, type IpFamily } from "../../lib/ip/ip.js";

/** An address as a number, so the allocator can count, compare and step through ranges. */
export interface Address {
  family: IpFamily;
  value: bigint;
}

/** One range of a range set, canonicalized (config.ts fills the defaults and checks the bounds). */
export interface Range {
  family: IpFamily;
  /** The subnet's network address and prefix length. */
  network: bigint;
  prefixLength: number;
  /** First and last address handed out, inclusive. */
  rangeStart: bigint;
  rangeEnd: bigint;
  gateway: bigint;
}

/** Ranges of one family; a container gets one address per range set. */
export type RangeSet = readonly Range[];

export interface Candidate {
  address: Address;
  range: Range;
}

export function bitsOf(family: IpFamily): number {
  return family === 4 ? 32 : 128;
}

/** The all-ones host part of a subnet: the IPv4 broadcast address, the last IPv6 address. */
export function lastAddressOf(family: IpFamily, network: bigint, prefixLength: number): bigint {
  return network | ((1n << BigInt(bitsOf(family) - prefixLength)) - 1n);
}

export function inSubnet(range: Range, address: Address): boolean {
  return (
    address.family === range.family &&
    address.value >= range.network &&
    address.value <= lastAddressOf(range.family, range.network, range.prefixLength)
  );
}

/** Inside rangeStart..rangeEnd (the Go Range.Contains). */
export function inRange(range: Range, address: Address): boolean {
  return address.family === range.family && address.value >= range.rangeStart && address.value <= range.rangeEnd;
}

export function rangeFor(set: RangeSet, address: Address): Range | undefined {
  return set.find((range) => inRange(range, address));
}

/**
 * Whether an address of the range may be handed out. The reference skips only the gateway; an
 * explicit rangeStart at the network address or rangeEnd at the IPv4 broadcast address would make
 * it hand those out too, which no pod can use, so weft skips them as well.
 */
export function isAllocatable(range: Range, value: bigint): boolean {
  if (value === range.gateway || value === range.network) return false;
  return !(range.family === 4 && value === lastAddressOf(4, range.network, range.prefixLength));
}

/**
 * Every allocatable address of the set once, in the reference's order (its RangeIter): start just
 * after the last reserved address when the set still contains it, else at the first range's
 * start; step through each range up to its end, go on at the next range's start, wrap from the
 * last range to the first, and stop on coming back to the first address visited.
 */
export function* candidates(set: RangeSet, lastReserved?: Address): Generator<Candidate> {
  if (set.length === 0) return;
  const resumeAt = lastReserved === undefined ? -1 : set.findIndex((range) => inRange(range, lastReserved));
  let index = resumeAt >= 0 ? resumeAt : 0;
  let current: bigint | undefined = resumeAt >= 0 ? lastReserved!.value : undefined;
  let first: bigint | undefined;
  for (;;) {
    let range = set[index]!;
    if (current === undefined) {
      current = range.rangeStart;
      first = current;
    } else {
      if (current === range.rangeEnd) {
        index = (index + 1) % set.length;
        range = set[index]!;
        current = range.rangeStart;
      } else {
        current += 1n;
      }
      if (first === undefined) first = current;
      else if (current === first) return;
    }
    if (isAllocatable(range, current)) yield { address: { family: range.family, value: current }, range };
  }
}

/** The first candidate that is not taken, or undefined when the set is full. */
export function nextFree(set: RangeSet, lastReserved: Address | undefined, isTaken: (a: Address) => boolean): Candidate | undefined {
  for (const candidate of candidates(set, lastReserved)) {
    if (!isTaken(candidate.address)) return candidate;
  }
  return undefined;
}

/** How many addresses of the set can still be handed out, given the taken ones. */
export function freeCount(set: RangeSet, taken: Iterable<Address>): bigint {
  let free = 0n;
  for (const range of set) {
    free += range.rangeEnd - range.rangeStart + 1n;
    const specials = new Set([range.gateway, range.network]);
    if (range.family === 4) specials.add(lastAddressOf(4, range.network, range.prefixLength));
    for (const value of specials) if (value >= range.rangeStart && value <= range.rangeEnd) free -= 1n;
  }
  const counted = new Set<bigint>();
  for (const address of taken) {
    const range = rangeFor(set, address);
    if (range && isAllocatable(range, address.value) && !counted.has(address.value)) {
      counted.add(address.value);
      free -= 1n;
    }
  }
  return free;
}

/** Whether two ranges share an address (ranges of different families never do). */
export function rangesOverlap(a: Range, b: Range): boolean {
  return a.family === b.family && a.rangeStart <= b.rangeEnd && b.rangeStart <= a.rangeEnd;
}

export function formatAddress(address: Address): string {
  return formatIp(ipFromBigInt(address.value, address.family));
}

export function formatValue(family: IpFamily, value: bigint): string {
  return formatIp(ipFromBigInt(value, family));
}

/** "10.244.1.1-10.244.1.254", as the reference prints a range in its errors. */
export function formatRange(range: Range): string {
  return `${formatValue(range.family, range.rangeStart)}-${formatValue(range.family, range.rangeEnd)}`;
}

export function formatRangeSet(set: RangeSet): string {
  return set.map(formatRange).join(",");
}

/** The address as the result prints it: with its subnet's prefix length. */
export function formatWithPrefix(address: Address, range: Range): string {
  return `${formatAddress(address)}/${range.prefixLength}`;
}
