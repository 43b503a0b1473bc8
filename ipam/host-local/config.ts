import type { NetConf } from "../../lib/cni/config.js";
import { CniError, ErrorCode } from "../../lib/errors/cni.js";
import { canonicalCidr, canonicalIp, ipToBigInt, parseCidr, parseIp, type ParsedIp } from "../../lib/ip/ip.js";
import type { Route } from "../../lib/cni/result.js";
import { versionAtLeast, type SpecVersion } from "../../lib/cni/version.js";
import {
  bitsOf,
  formatAddress,
  formatRange,
  formatValue,
  inSubnet,
  lastAddressOf,
  rangesOverlap,
  type Address,
  type Range,
  type RangeSet,
} from "./allocator.js";

// The config as schema.ts admits it. Go decodes null as "not set", hence the nulls.
export type RangeConf = {
  subnet: string;
  rangeStart?: string | null;
  rangeEnd?: string | null;
  gateway?: string | null;
};

export type RouteConf = {
  dst: string;
  gw?: string | null;
  mtu?: number;
  advmss?: number;
  priority?: number;
  table?: number;
  scope?: number;
};

export type HostLocalIpamConf = {
  type?: string;
  ranges?: RangeConf[][] | null;
  subnet?: string | null;
  rangeStart?: string | null;
  rangeEnd?: string | null;
  gateway?: string | null;
  routes?: RouteConf[] | null;
  dataDir?: string | null;
  resolvConf?: string | null;
  lockTimeoutMs?: number;
  [key: string]: unknown;
};

export interface HostLocalConf extends NetConf {
  ipam: HostLocalIpamConf;
  runtimeConfig?: { ips?: string[] | null; ipRanges?: RangeConf[][] | null; [key: string]: unknown };
  args?: { cni?: { ips?: string[] | null } | null; [key: string]: unknown };
}

export const DEFAULT_DATA_DIR = "/var/lib/cni/networks";
/** Far longer than any healthy holder needs (a few ms), well inside a kubelet's request timeout. */
export const DEFAULT_LOCK_TIMEOUT_MS = 30_000;

/** Where a network's reservations live: all DEL and GC need, so they work even when the ranges do not parse. */
export interface StoreLocation {
  network: string;
  dataDir: string;
  lockTimeoutMs: number;
}

export interface IpamConfig extends StoreLocation {
  /** Range sets in allocation order: runtimeConfig.ipRanges, then the legacy range, then ipam.ranges. */
  rangeSets: RangeSet[];
  /** Requested addresses, in order: CNI_ARGS IP, args.cni.ips, runtimeConfig.ips. */
  requestedIps: Address[];
  routes: Route[];
  resolvConf?: string;
}

function invalid(message: string, details?: string): CniError {
  return new CniError(ErrorCode.InvalidNetworkConfig, `invalid network config: ${message}`, details);
}

export function storeLocation(conf: HostLocalConf): StoreLocation {
  return {
    network: conf.name,
    // The reference treats an empty dataDir as unset.
    dataDir: conf.ipam.dataDir || DEFAULT_DATA_DIR,
    lockTimeoutMs: conf.ipam.lockTimeoutMs ?? DEFAULT_LOCK_TIMEOUT_MS,
  };
}

/**
 * Reads and checks host-local's config: every range canonicalized (defaults filled, bounds
 * checked), range sets of one family that do not overlap, requested addresses parsed. Each error
 * is code 7 and names the field.
 */
export function loadIpamConfig(conf: HostLocalConf, version: SpecVersion, cniArgs: ReadonlyMap<string, string>): IpamConfig {
  const ipam = conf.ipam;
  const sources: { field: string; set: RangeConf[] }[] = [];
  (conf.runtimeConfig?.ipRanges ?? []).forEach((set, i) => sources.push({ field: `runtimeConfig.ipRanges[${i}]`, set }));
  // Go's net.IP decodes "" as unset, and the legacy range counts only with a subnet.
  if (ipam.subnet) {
    const legacy: RangeConf = { subnet: ipam.subnet, rangeStart: ipam.rangeStart, rangeEnd: ipam.rangeEnd, gateway: ipam.gateway };
    sources.push({ field: "ipam", set: [legacy] });
  }
  (ipam.ranges ?? []).forEach((set, i) => sources.push({ field: `ipam.ranges[${i}]`, set }));
  if (sources.length === 0) {
    throw invalid("no IP ranges specified", "set ipam.ranges (a list of range sets), or the single-range ipam.subnet");
  }

  const rangeSets = sources.map(({ field, set }) => parseRangeSet(set, field, field === "ipam"));
  checkSetsApart(
    rangeSets,
    sources.map((s) => s.field),
  );
  // CNI 0.2.0 results hold one address per family.
  if (!versionAtLeast(version, "0.3.0")) {
    for (const family of [4, 6] as const) {
      if (rangeSets.filter((set) => set[0]!.family === family).length > 1) {
        throw invalid(
          `CNI version ${version} does not support more than 1 address per family`,
          "use cniVersion 0.3.0 or newer for several range sets of one family",
        );
      }
    }
  }

  return {
    ...storeLocation(conf),
    rangeSets,
    requestedIps: requestedIps(conf, cniArgs),
    routes: (ipam.routes ?? []).map((route, i) => parseRoute(route, `ipam.routes[${i}]`)),
    ...(ipam.resolvConf ? { resolvConf: ipam.resolvConf } : {}),
  };
}

function parseRangeSet(set: RangeConf[], field: string, legacy: boolean): RangeSet {
  const at = (i: number) => (legacy ? field : `${field}[${i}]`);
  const ranges = set.map((conf, i) => parseRange(conf, at(i)));
  for (let i = 1; i < ranges.length; i++) {
    if (ranges[i]!.family !== ranges[0]!.family) {
      throw invalid(
        `${at(i)}.subnet ${JSON.stringify(set[i]!.subnet)} is IPv${ranges[i]!.family} but ${at(0)}.subnet is IPv${ranges[0]!.family}`,
        "a range set holds ranges of one family; put the other family in a range set of its own",
      );
    }
  }
  for (let i = 0; i < ranges.length; i++) {
    for (let j = i + 1; j < ranges.length; j++) {
      if (rangesOverlap(ranges[i]!, ranges[j]!)) {
        throw invalid(`${at(i)} (${formatRange(ranges[i]!)}) and ${at(j)} (${formatRange(ranges[j]!)}) overlap`);
      }
    }
  }
  return ranges;
}

function checkSetsApart(sets: RangeSet[], fields: string[]): void {
  for (let i = 0; i < sets.length; i++) {
    for (let j = i + 1; j < sets.length; j++) {
      if (sets[i]!.some((a) => sets[j]!.some((b) => rangesOverlap(a, b)))) {
        throw invalid(`range set ${i} overlaps with ${j} (${fields[i]} and ${fields[j]})`, "an address can belong to one range set only");
      }
    }
  }
}

function parseRange(conf: RangeConf, field: string): Range {
  const subnetField = `${field}.subnet`;
  const cidr = parseCidr(conf.subnet);
  if (!cidr) throw invalid(`${subnetField} ${JSON.stringify(conf.subnet)} is not a CIDR (like 10.244.1.0/24)`);
  const family = cidr.ip.family;
  const network = ipToBigInt(cidr.ip);
  const hostBits = bitsOf(family) - cidr.prefixLength;
  const networkAddress = (network >> BigInt(hostBits)) << BigInt(hostBits);
  if (network !== networkAddress) {
    throw invalid(
      `${subnetField} ${conf.subnet} has host bits set: for a /${cidr.prefixLength} the network address is ${formatValue(family, networkAddress)}`,
    );
  }
  // No addresses left besides the network (and broadcast) address.
  if (hostBits < 2) throw invalid(`${subnetField} ${conf.subnet} is too small to allocate from (at most /${bitsOf(family) - 2})`);
  const last = lastAddressOf(family, network, cidr.prefixLength);
  const partial: Range = { family, network, prefixLength: cidr.prefixLength, rangeStart: 0n, rangeEnd: 0n, gateway: 0n };

  const address = (key: "rangeStart" | "rangeEnd" | "gateway"): bigint | undefined => {
    const text = conf[key];
    if (text === undefined || text === null || text === "") return undefined;
    const name = `${field}.${key}`;
    const ip = parseIp(text);
    if (!ip) throw invalid(`${name} ${JSON.stringify(text)} is not an IP address`);
    const value = { family: ip.family, value: ipToBigInt(ip) };
    if (!inSubnet(partial, value)) throw invalid(`${name} ${formatAddress(value)} is not in ${subnetField} ${conf.subnet}`);
    return value.value;
  };

  const gateway = address("gateway") ?? network + 1n;
  const rangeStart = address("rangeStart") ?? network + 1n;
  // The IPv4 default stops before the broadcast address; the IPv6 one is the last address.
  const rangeEnd = address("rangeEnd") ?? (family === 4 ? last - 1n : last);
  if (rangeStart > rangeEnd) {
    throw invalid(`${field}.rangeStart ${formatValue(family, rangeStart)} is after ${field}.rangeEnd ${formatValue(family, rangeEnd)}`);
  }
  return { ...partial, rangeStart, rangeEnd, gateway };
}

function parseRoute(conf: RouteConf, field: string): Route {
  const dst = canonicalCidr(conf.dst);
  if (dst === undefined) throw invalid(`${field}.dst ${JSON.stringify(conf.dst)} is not a CIDR`);
  const route: Route = { dst };
  if (conf.gw) {
    const gw = canonicalIp(conf.gw);
    if (gw === undefined) throw invalid(`${field}.gw ${JSON.stringify(conf.gw)} is not an IP address`);
    route.gw = gw;
  }
  for (const key of ["mtu", "advmss", "priority", "table", "scope"] as const) {
    if (conf[key]) route[key] = conf[key];
  }
  return route;
}

/** An address as a runtime passes it: "10.1.2.3", or with a prefix length that is ignored. */
function parseRequested(text: string): ParsedIp | undefined {
  return text.includes("/") ? parseCidr(text)?.ip : parseIp(text);
}

/**
 * The reference appends all three sources (CONVENTIONS.md would drop CNI_ARGS when args is
 * present; it never did, and neither does weft). A repeated address counts once.
 */
function requestedIps(conf: HostLocalConf, cniArgs: ReadonlyMap<string, string>): Address[] {
  const out: Address[] = [];
  const seen = new Set<string>();
  const add = (text: string, problem: (text: string) => CniError) => {
    const ip = parseRequested(text);
    if (!ip) throw problem(text);
    const address = { family: ip.family, value: ipToBigInt(ip) };
    const key = formatAddress(address);
    if (!seen.has(key)) {
      seen.add(key);
      out.push(address);
    }
  };
  const fromArgs = cniArgs.get("IP");
  if (fromArgs !== undefined && fromArgs !== "") {
    add(fromArgs, (t) => new CniError(ErrorCode.InvalidEnvironment, `CNI_ARGS: IP=${t} is not an IP address`));
  }
  (conf.args?.cni?.ips ?? []).forEach((t, i) => add(t, () => invalid(`args.cni.ips[${i}] ${JSON.stringify(t)} is not an IP address`)));
  (conf.runtimeConfig?.ips ?? []).forEach((t, i) => add(t, () => invalid(`runtimeConfig.ips[${i}] ${JSON.stringify(t)} is not an IP address`)));
  return out;
}
