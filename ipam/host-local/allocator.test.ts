import { describe, expect, it } from "vitest";
import { ipToBigInt, parseCidr, parseIp } from "../../lib/ip/ip.js";
import {
  candidates,
  formatAddress,
  formatRangeSet,
  formatWithPrefix,
  freeCount,
  inSubnet,
  lastAddressOf,
  nextFree,
  rangeFor,
  rangesOverlap,
  type Address,
  type Range,
  type RangeSet,
} from "./allocator.js";

function addr(text: string): Address {
  const ip = parseIp(text)!;
  return { family: ip.family, value: ipToBigInt(ip) };
}

/** A range with the reference's defaults: gateway and start at network + 1, end before the v4 broadcast. */
function range(subnet: string, opts: { start?: string; end?: string; gateway?: string } = {}): Range {
  const cidr = parseCidr(subnet)!;
  const family = cidr.ip.family;
  const network = ipToBigInt(cidr.ip);
  const last = lastAddressOf(family, network, cidr.prefixLength);
  return {
    family,
    network,
    prefixLength: cidr.prefixLength,
    rangeStart: opts.start ? addr(opts.start).value : network + 1n,
    rangeEnd: opts.end ? addr(opts.end).value : family === 4 ? last - 1n : last,
    gateway: opts.gateway ? addr(opts.gateway).value : network + 1n,
  };
}

function order(set: RangeSet, last?: string): string[] {
  return [...candidates(set, last === undefined ? undefined : addr(last))].map((c) => formatAddress(c.address));
}

function takenSet(...texts: string[]): (a: Address) => boolean {
  const values = new Set(texts.map((t) => addr(t).value));
  return (a) => values.has(a.value);
}

describe("candidates (the reference's RangeIter order)", () => {
  it("starts at rangeStart and skips the gateway, the network and the broadcast address", () => {
    expect(order([range("10.0.0.0/29")])).toEqual(["10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5", "10.0.0.6"]);
  });

  it("resumes after the last reserved address and wraps around to visit every address once", () => {
    expect(order([range("10.0.0.0/29")], "10.0.0.4")).toEqual(["10.0.0.5", "10.0.0.6", "10.0.0.2", "10.0.0.3", "10.0.0.4"]);
    expect(order([range("10.0.0.0/29")], "10.0.0.6")).toEqual(["10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5", "10.0.0.6"]);
  });

  it("starts over when the last reserved address is outside the set (the config changed)", () => {
    expect(order([range("10.0.0.0/29")], "192.168.0.9")).toEqual(order([range("10.0.0.0/29")]));
    expect(order([range("10.0.0.0/29")], "fd00::5")).toEqual(order([range("10.0.0.0/29")]));
  });

  it("goes from one range of the set to the next and from the last back to the first", () => {
    const set = [range("10.0.0.0/30"), range("10.0.1.0/29", { start: "10.0.1.4" })];
    expect(order(set)).toEqual(["10.0.0.2", "10.0.1.4", "10.0.1.5", "10.0.1.6"]);
    expect(order(set, "10.0.1.5")).toEqual(["10.0.1.6", "10.0.0.2", "10.0.1.4", "10.0.1.5"]);
  });

  it("skips a gateway inside the range wherever it is, and honours rangeStart/rangeEnd", () => {
    const set = [range("10.0.0.0/24", { start: "10.0.0.10", end: "10.0.0.14", gateway: "10.0.0.12" })];
    expect(order(set)).toEqual(["10.0.0.10", "10.0.0.11", "10.0.0.13", "10.0.0.14"]);
    expect(order(set, "10.0.0.11")).toEqual(["10.0.0.13", "10.0.0.14", "10.0.0.10", "10.0.0.11"]);
  });

  it("handles a gateway at rangeStart and a range holding only the gateway", () => {
    expect(order([range("10.0.0.0/24", { start: "10.0.0.1", end: "10.0.0.3" })])).toEqual(["10.0.0.2", "10.0.0.3"]);
    expect(order([range("10.0.0.0/24", { start: "10.0.0.1", end: "10.0.0.1" })])).toEqual([]);
  });

  it("walks IPv6 ranges, where the last address is allocatable and the prefix is wide", () => {
    expect(order([range("fd00::/126")])).toEqual(["fd00::2", "fd00::3"]);
    const wide = [range("fd00:10:244:1::/64")];
    const first: string[] = [];
    for (const c of candidates(wide, addr("fd00:10:244:1:ffff:ffff:ffff:fffe"))) {
      first.push(formatAddress(c.address));
      if (first.length === 3) break;
    }
    expect(first).toEqual(["fd00:10:244:1:ffff:ffff:ffff:ffff", "fd00:10:244:1::2", "fd00:10:244:1::3"]);
  });

  it("never hands out the network address or the IPv4 broadcast address, even inside an explicit range", () => {
    expect(order([range("10.0.0.0/29", { start: "10.0.0.0", end: "10.0.0.7" })])).toEqual([
      "10.0.0.2",
      "10.0.0.3",
      "10.0.0.4",
      "10.0.0.5",
      "10.0.0.6",
    ]);
    expect(order([range("10.0.0.0/29", { start: "10.0.0.0", end: "10.0.0.7", gateway: "10.0.0.3" })])).toEqual([
      "10.0.0.1",
      "10.0.0.2",
      "10.0.0.4",
      "10.0.0.5",
      "10.0.0.6",
    ]);
  });

  it("hands out an IPv6 address whose low 32 bits are all ones (only IPv4 has a broadcast address)", () => {
    expect(order([range("fd00::/16", { start: "fd00::fffe", end: "fd00::1:1" })])).toEqual(["fd00::fffe", "fd00::ffff", "fd00::1:0", "fd00::1:1"]);
  });

  it("yields nothing for an empty set", () => {
    expect(order([])).toEqual([]);
    expect(order([], "10.0.0.1")).toEqual([]);
    expect(nextFree([], undefined, () => false)).toBeUndefined();
  });

  it("reports the range each address belongs to", () => {
    const set = [range("10.0.0.0/30"), range("10.0.1.0/30", { gateway: "10.0.1.2" })];
    const got = [...candidates(set)].map((c) => [formatAddress(c.address), c.range === set[1]]);
    expect(got).toEqual([
      ["10.0.0.2", false],
      ["10.0.1.1", true],
    ]);
  });
});

describe("nextFree", () => {
  const set = [range("10.0.0.0/29")];

  it("skips reserved addresses", () => {
    expect(formatAddress(nextFree(set, undefined, takenSet("10.0.0.2", "10.0.0.3"))!.address)).toBe("10.0.0.4");
  });

  it("wraps around past the end to a free address before the cursor", () => {
    expect(formatAddress(nextFree(set, addr("10.0.0.5"), takenSet("10.0.0.6", "10.0.0.5"))!.address)).toBe("10.0.0.2");
  });

  it("returns undefined when the set is exhausted", () => {
    expect(nextFree(set, addr("10.0.0.3"), takenSet("10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5", "10.0.0.6"))).toBeUndefined();
  });

  it("finds the last free IPv6 address of a range", () => {
    const v6 = [range("fd00::/125")];
    const taken = takenSet("fd00::2", "fd00::3", "fd00::4", "fd00::5", "fd00::7");
    expect(formatAddress(nextFree(v6, addr("fd00::3"), taken)!.address)).toBe("fd00::6");
  });
});

describe("freeCount", () => {
  it("counts the allocatable addresses not taken, ignoring foreign and special ones", () => {
    const set = [range("10.0.0.0/29"), range("10.0.1.0/30")];
    expect(freeCount(set, [])).toBe(6n);
    expect(freeCount(set, [addr("10.0.0.2"), addr("10.0.0.2"), addr("10.0.1.2"), addr("10.9.9.9"), addr("10.0.0.1")])).toBe(4n);
    expect(freeCount(set, ["10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5", "10.0.0.6", "10.0.1.2"].map(addr))).toBe(0n);
  });

  it("subtracts the gateway, network and broadcast addresses only when they lie inside rangeStart..rangeEnd", () => {
    // Gateway and network below rangeStart, broadcast above rangeEnd: all 5 addresses are free.
    expect(freeCount([range("10.0.0.0/24", { start: "10.0.0.10", end: "10.0.0.14" })], [])).toBe(5n);
    // Gateway at rangeEnd.
    expect(freeCount([range("10.0.0.0/24", { start: "10.0.0.10", end: "10.0.0.14", gateway: "10.0.0.14" })], [])).toBe(4n);
    // The whole /29 as range: network, gateway and broadcast are not free.
    expect(freeCount([range("10.0.0.0/29", { start: "10.0.0.0", end: "10.0.0.7" })], [])).toBe(5n);
    // A gateway that is also the broadcast address counts once.
    expect(freeCount([range("10.0.0.0/29", { start: "10.0.0.2", end: "10.0.0.7", gateway: "10.0.0.7" })], [])).toBe(5n);
  });

  it("counts an IPv6 address whose low 32 bits are all ones as free", () => {
    expect(freeCount([range("fd00::/16", { start: "fd00::fffe", end: "fd00::1:1" })], [])).toBe(4n);
    expect(freeCount([range("fd00::/126")], [])).toBe(2n);
  });

  it("counts IPv6 ranges beyond 2^53", () => {
    expect(freeCount([range("fd00::/64")], [addr("fd00::2")])).toBe(2n ** 64n - 3n);
  });
});

describe("range helpers", () => {
  it("finds the range holding an address, within rangeStart..rangeEnd only", () => {
    const set = [range("10.0.0.0/24", { start: "10.0.0.100" })];
    expect(rangeFor(set, addr("10.0.0.150"))).toBe(set[0]);
    expect(rangeFor(set, addr("10.0.0.50"))).toBeUndefined();
    expect(rangeFor(set, addr("fd00::1"))).toBeUndefined();
  });

  it("tells whether an address is in a range's subnet, network and last address included, never across families", () => {
    const r = range("10.0.1.0/24", { start: "10.0.1.100", end: "10.0.1.110" });
    expect(inSubnet(r, addr("10.0.1.0"))).toBe(true);
    expect(inSubnet(r, addr("10.0.1.255"))).toBe(true);
    expect(inSubnet(r, addr("10.0.0.255"))).toBe(false);
    expect(inSubnet(r, addr("10.0.2.0"))).toBe(false);
    // ::a00:105 has the same numeric value as 10.0.1.5.
    expect(inSubnet(r, addr("::a00:105"))).toBe(false);
    expect(inSubnet(range("fd00::/64"), addr("fd00::ffff:ffff:ffff:ffff"))).toBe(true);
    expect(inSubnet(range("fd00::/64"), addr("fd00:0:0:1::"))).toBe(false);
  });

  it("includes rangeStart and rangeEnd in the range, and never an address of the other family", () => {
    const set = [range("10.0.1.0/24", { start: "10.0.1.100", end: "10.0.1.110" })];
    expect(rangeFor(set, addr("10.0.1.100"))).toBe(set[0]);
    expect(rangeFor(set, addr("10.0.1.110"))).toBe(set[0]);
    expect(rangeFor(set, addr("10.0.1.99"))).toBeUndefined();
    expect(rangeFor(set, addr("10.0.1.111"))).toBeUndefined();
    expect(rangeFor(set, addr("::a00:165"))).toBeUndefined();
  });

  it("detects overlap by address ranges, never across families", () => {
    expect(rangesOverlap(range("10.0.0.0/24"), range("10.0.0.0/25"))).toBe(true);
    // Sharing just one address, in either order.
    const low = range("10.0.0.0/24", { end: "10.0.0.100" });
    const high = range("10.0.0.0/24", { start: "10.0.0.100" });
    expect(rangesOverlap(low, high)).toBe(true);
    expect(rangesOverlap(high, low)).toBe(true);
    // Numerically the same addresses, but IPv6.
    expect(rangesOverlap(range("10.0.0.0/24"), range("::a00:0/120"))).toBe(false);
    expect(rangesOverlap(range("10.0.0.0/24", { end: "10.0.0.99" }), range("10.0.0.0/24", { start: "10.0.0.100" }))).toBe(false);
    expect(rangesOverlap(range("10.0.0.0/24"), range("fd00::/64"))).toBe(false);
  });

  it("prints an address with its subnet's prefix length, as the result does", () => {
    expect(formatWithPrefix(addr("10.244.1.7"), range("10.244.1.0/24"))).toBe("10.244.1.7/24");
    expect(formatWithPrefix(addr("fd00::7"), range("fd00::/64"))).toBe("fd00::7/64");
  });

  it("prints a range set as the reference does in its errors", () => {
    expect(formatRangeSet([range("10.244.1.0/24"), range("10.244.2.0/30")])).toBe("10.244.1.1-10.244.1.254,10.244.2.1-10.244.2.2");
  });
});
