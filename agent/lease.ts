import { CniError, ErrorCode } from "../lib/errors/cni.js";
import { formatCidr, formatIp, ipFromBigInt, ipToBigInt, parseIp, type IpFamily, type ParsedCidr } from "../lib/ip/ip.js";
import { subnetCount, subnetSize, type NetworkConfig, type SubnetPool } from "./network-config.js";

/** The subnets one lease holds: IPv4, IPv6 or both (dual stack). */
export interface LeaseSubnets {
  ipv4?: ParsedCidr;
  ipv6?: ParsedCidr;
}

/** A lease's value (pkg/lease LeaseAttrs), as flanneld marshals it. */
export interface LeaseAttrs {
  /** Always present: "0.0.0.0" when the node has no IPv4 public address. */
  publicIP: string;
  publicIPv6: string | null;
  /** Absent for udp, whose BackendType is empty and left out. */
  backendType?: string;
  /** Any JSON value; undefined when the key is absent (host-gw, udp), null when it is null. */
  backendData?: unknown;
  backendV6Data?: unknown;
}

export interface Lease {
  subnets: LeaseSubnets;
  attrs: LeaseAttrs;
}

/** A vxlan lease's BackendData. */
export interface VxlanBackendData {
  vni: number;
  vtepMAC: string;
}

function decodingError(message: string): CniError {
  return new CniError(ErrorCode.DecodingFailure, message);
}

/** Go's path.Join, which flanneld builds its keys with: a trailing or doubled slash in the prefix goes. */
export function joinKey(...parts: string[]): string {
  const joined = parts.filter((p) => p !== "").join("/");
  const rooted = joined.startsWith("/");
  const out: string[] = [];
  for (const element of joined.split("/")) {
    if (element === "" || element === ".") continue;
    if (element === "..") {
      if (out.length > 0 && out[out.length - 1] !== "..") out.pop();
      else if (!rooted) out.push("..");
    } else out.push(element);
  }
  const path = out.join("/");
  return rooted ? `/${path}` : path === "" ? "." : path;
}

export function configKey(etcdPrefix: string): string {
  return joinKey(etcdPrefix, "config");
}

/** The prefix every lease key starts with, the slash included (what to list and watch). */
export function subnetsKeyPrefix(etcdPrefix: string): string {
  return `${joinKey(etcdPrefix, "subnets")}/`;
}

/** MakeSubnetKey: "10.244.1.0-24", dual stack "10.244.1.0-24&fd00:10:244:1::-64"; IPv6 alone keeps an empty IPv4 part. */
export function subnetKeyName(subnets: LeaseSubnets): string {
  const v4 = subnets.ipv4 ? `${formatIp(subnets.ipv4.ip)}-${subnets.ipv4.prefixLength}` : "0.0.0.0-0";
  return subnets.ipv6 ? `${v4}&${formatIp(subnets.ipv6.ip)}-${subnets.ipv6.prefixLength}` : v4;
}

export function subnetKey(etcdPrefix: string, subnets: LeaseSubnets): string {
  return joinKey(etcdPrefix, "subnets", subnetKeyName(subnets));
}

const KEY_NAME = /^(\d+\.\d+\.\d+\.\d+)-(\d+)(?:&([a-f\d:]+)-(\d+))?$/;

/** The subnets a key under `<prefix>/subnets/` names; undefined for any other key (flanneld skips those). */
export function parseSubnetKey(etcdPrefix: string, key: string): LeaseSubnets | undefined {
  const prefix = subnetsKeyPrefix(etcdPrefix);
  if (!key.startsWith(prefix)) return undefined;
  const match = KEY_NAME.exec(key.slice(prefix.length));
  if (!match) return undefined;
  const ip4 = parseIp(match[1]!);
  const length4 = Number(match[2]);
  if (ip4?.family !== 4 || length4 > 32) return undefined;
  const subnets: LeaseSubnets = {};
  if (!(length4 === 0 && ipToBigInt(ip4) === 0n)) subnets.ipv4 = { ip: ip4, prefixLength: length4 };
  if (match[3] !== undefined) {
    const ip6 = parseIp(match[3]);
    const length6 = Number(match[4]);
    if (ip6?.family !== 6 || length6 > 128) return undefined;
    subnets.ipv6 = { ip: ip6, prefixLength: length6 };
  }
  return subnets.ipv4 || subnets.ipv6 ? subnets : undefined;
}

/**
 * The lease value byte for byte as Go's json.Marshal(LeaseAttrs) writes it: fields in struct order,
 * PublicIPv6 null when absent, BackendType/BackendData/BackendV6Data left out when empty.
 */
export function formatLeaseValue(attrs: LeaseAttrs): string {
  let out = `{"PublicIP":${JSON.stringify(attrs.publicIP)},"PublicIPv6":${JSON.stringify(attrs.publicIPv6)}`;
  if (attrs.backendType) out += `,"BackendType":${JSON.stringify(attrs.backendType)}`;
  if (attrs.backendData !== undefined) out += `,"BackendData":${JSON.stringify(attrs.backendData)}`;
  if (attrs.backendV6Data !== undefined) out += `,"BackendV6Data":${JSON.stringify(attrs.backendV6Data)}`;
  return `${out}}`;
}

const ATTR_KEYS = ["PublicIP", "PublicIPv6", "BackendType", "BackendData", "BackendV6Data"] as const;

/** Reads a lease value as flanneld does (keys matched ignoring case, as Go's decoder). `key` is for the message. */
export function parseLeaseValue(value: string, key: string): LeaseAttrs {
  let raw: unknown;
  try {
    raw = JSON.parse(value);
  } catch (err) {
    throw decodingError(`lease ${key}: not valid JSON (${(err as Error).message})`);
  }
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) throw decodingError(`lease ${key}: not a JSON object`);
  const fields: Partial<Record<(typeof ATTR_KEYS)[number], unknown>> = {};
  for (const [name, v] of Object.entries(raw)) {
    for (const field of ATTR_KEYS) if (field.toLowerCase() === name.toLowerCase()) fields[field] = v;
  }
  const address = (name: "PublicIP" | "PublicIPv6", family: IpFamily): string | undefined => {
    const v = fields[name];
    if (v === undefined || v === null) return undefined;
    const ip = typeof v === "string" ? parseIp(v) : undefined;
    if (ip?.family !== family) throw decodingError(`lease ${key}: ${name} ${JSON.stringify(v)} is not an IPv${family} address`);
    return formatIp(ip);
  };
  const attrs: LeaseAttrs = { publicIP: address("PublicIP", 4) ?? "0.0.0.0", publicIPv6: address("PublicIPv6", 6) ?? null };
  const type = fields.BackendType;
  if (type !== undefined && type !== null && typeof type !== "string") {
    throw decodingError(`lease ${key}: BackendType ${JSON.stringify(type)} is not a string`);
  }
  if (type) attrs.backendType = type;
  if (fields.BackendData !== undefined) attrs.backendData = fields.BackendData;
  if (fields.BackendV6Data !== undefined) attrs.backendV6Data = fields.BackendV6Data;
  return attrs;
}

/**
 * The vxlan backend's BackendData ({"VNI":1,"VtepMAC":"..."}, in Go's field order). flanneld stores
 * the VNI as a uint16 although the device's may be 24 bits: a larger value would make every Go peer
 * fail to decode the lease, so it is cut to 16 bits as Go's conversion does (peers never use it).
 */
export function vxlanBackendData(data: VxlanBackendData): { VNI: number; VtepMAC: string } {
  return { VNI: data.vni & 0xffff, VtepMAC: data.vtepMAC };
}

const MAC = /^[0-9a-fA-F]{2}([:-])[0-9a-fA-F]{2}(\1[0-9a-fA-F]{2}){4}$/;

/** Reads a peer's vxlan BackendData; the MAC comes back as net.HardwareAddr prints it (lower case, colons). */
export function parseVxlanBackendData(data: unknown, key: string): VxlanBackendData {
  if (typeof data !== "object" || data === null || Array.isArray(data)) {
    throw decodingError(`lease ${key}: BackendData ${JSON.stringify(data)} is not a vxlan backend's object`);
  }
  let vni: unknown;
  let mac: unknown;
  for (const [name, v] of Object.entries(data)) {
    if (name.toLowerCase() === "vni") vni = v;
    else if (name.toLowerCase() === "vtepmac") mac = v;
  }
  if (vni === undefined) vni = 0;
  if (typeof vni !== "number" || !Number.isInteger(vni) || vni < 0 || vni > 0xffff) {
    throw decodingError(`lease ${key}: BackendData.VNI ${JSON.stringify(vni)} is not a 16-bit unsigned integer`);
  }
  if (typeof mac !== "string" || !MAC.test(mac)) {
    throw decodingError(`lease ${key}: BackendData.VtepMAC ${JSON.stringify(mac)} is not a MAC address`);
  }
  return { vni, vtepMAC: mac.toLowerCase().replace(/-/g, ":") };
}

/** Which subnets to create or take over, and why. */
export type SubnetChoice =
  /** A lease with this node's public address: flanneld takes it over (puts its own value and a fresh TTL). */
  | { reason: "own-lease"; subnets: LeaseSubnets; lease: Lease }
  /** The subnet named by the subnet.env of a previous run, still free and in range. */
  | { reason: "previous"; subnets: LeaseSubnets; staleOwnLease?: Lease }
  /** Picked at random among the first free subnets from SubnetMin. */
  | { reason: "free"; subnets: LeaseSubnets; staleOwnLease?: Lease };

export interface SubnetChoiceInput {
  config: NetworkConfig;
  /** Every lease in etcd (the own one included, if any). */
  leases: readonly Lease[];
  /** This node's public addresses, as they will be in its lease. */
  publicIP?: string;
  publicIPv6?: string;
  /** FLANNEL_SUBNET / FLANNEL_IPV6_SUBNET of the subnet.env the previous run left. */
  previous?: LeaseSubnets;
  /** An integer in [0, n): which of the n free subnets to take. */
  random?: (n: number) => number;
}

/** flanneld draws among at most this many free subnets, the first from SubnetMin. */
const CANDIDATES = 100;

interface Interval {
  start: bigint;
  end: bigint;
}

function intervalOf(cidr: ParsedCidr): Interval {
  const bits = cidr.ip.bytes.length * 8;
  const span = 1n << BigInt(bits - cidr.prefixLength);
  const start = (ipToBigInt(cidr.ip) / span) * span;
  return { start, end: start + span - 1n };
}

/** The leased address ranges of one family, sorted, overlapping or adjacent ones merged. */
function takenIntervals(leases: readonly Lease[], family: IpFamily): Interval[] {
  const sorted = leases
    .map((l) => (family === 4 ? l.subnets.ipv4 : l.subnets.ipv6))
    .filter((s): s is ParsedCidr => s !== undefined)
    .map(intervalOf)
    // Number() keeps the difference's sign, all the comparator needs.
    .sort((a, b) => Number(a.start - b.start));
  const merged: Interval[] = [];
  for (const interval of sorted) {
    const last = merged[merged.length - 1];
    if (last && interval.start <= last.end + 1n) {
      if (interval.end > last.end) last.end = interval.end;
    } else merged.push({ ...interval });
  }
  return merged;
}

function overlapsAny(cidr: ParsedCidr, leases: readonly Lease[], family: IpFamily): boolean {
  const own = intervalOf(cidr);
  return leases.some((l) => {
    const other = family === 4 ? l.subnets.ipv4 : l.subnets.ipv6;
    if (!other) return false;
    const taken = intervalOf(other);
    return taken.start <= own.end && own.start <= taken.end;
  });
}

/** isSubnetConfigCompat: in [SubnetMin, SubnetMax] with SubnetLen; a family the config does not enable must be absent. */
function fits(pool: SubnetPool | undefined, cidr: ParsedCidr | undefined): boolean {
  if (!pool) return cidr === undefined;
  if (!cidr || cidr.ip.family !== pool.family || cidr.prefixLength !== pool.subnetLength) return false;
  const address = ipToBigInt(cidr.ip);
  return address >= pool.min && address <= pool.max && address % subnetSize(pool) === 0n;
}

function fitsConfig(config: NetworkConfig, subnets: LeaseSubnets): boolean {
  return fits(config.ipv4, subnets.ipv4) && fits(config.ipv6, subnets.ipv6);
}

function poolName(pool: SubnetPool): string {
  return `${pool.family === 4 ? "Network" : "IPv6Network"} ${formatCidr(pool.network)}`;
}

const SHOWN_RANGES = 10;

function exhausted(pool: SubnetPool, leases: readonly Lease[]): CniError {
  const ip = (v: bigint) => formatIp(ipFromBigInt(v, pool.family));
  const poolEnd = pool.max + subnetSize(pool) - 1n;
  const inPool = (t: Interval) => t.end >= pool.min && t.start <= poolEnd;
  const leaseCount = leases.filter((l) => {
    const subnet = pool.family === 4 ? l.subnets.ipv4 : l.subnets.ipv6;
    return subnet !== undefined && inPool(intervalOf(subnet));
  }).length;
  const ranges = takenIntervals(leases, pool.family)
    .filter(inPool)
    .map((t) => `${ip(t.start)}-${ip(t.end)}`);
  const shown = ranges.slice(0, SHOWN_RANGES).join(", ") + (ranges.length > SHOWN_RANGES ? ` and ${ranges.length - SHOWN_RANGES} more ranges` : "");
  return new CniError(
    ErrorCode.NoAddress,
    `no free subnet in ${poolName(pool)}: it holds ${subnetCount(pool)} subnets of /${pool.subnetLength} from ${ip(pool.min)} to ${ip(pool.max)}, ` +
      `all taken by ${leaseCount} leases (${shown}); widen the network or SubnetMin/SubnetMax, or delete the leases of nodes that are gone`,
  );
}

/** allocateSubnet: up to CANDIDATES free subnets from SubnetMin, walking past the leased ranges rather than testing each lease. */
function freeSubnet(pool: SubnetPool, leases: readonly Lease[], random: (n: number) => number): ParsedCidr {
  const taken = takenIntervals(leases, pool.family);
  const size = subnetSize(pool);
  const free: bigint[] = [];
  let next = 0;
  for (let candidate = pool.min; candidate <= pool.max && free.length < CANDIDATES;) {
    while (next < taken.length && taken[next]!.end < candidate) next++;
    const blocking = taken[next];
    if (blocking && blocking.start <= candidate + size - 1n) {
      // Jump to the first aligned subnet past the leased range.
      candidate = (blocking.end / size + 1n) * size;
      continue;
    }
    free.push(candidate);
    candidate += size;
  }
  if (free.length === 0) throw exhausted(pool, leases);
  const index = random(free.length);
  return { ip: ipFromBigInt(free[index]!, pool.family), prefixLength: pool.subnetLength };
}

function defaultRandom(n: number): number {
  return Math.floor(Math.random() * n);
}

/**
 * Which subnets this node should lease, in flanneld's order (tryAcquireLease): (1) the lease that
 * already has this node's public address, when it still fits the config (one that does not is to be
 * deleted); (2) the previous run's subnets, when free and in range; (3) a random one among the first
 * 100 free subnets from SubnetMin. Unlike flanneld, the own lease of an IPv6-only node is found by
 * its IPv6 address (every such lease has PublicIP 0.0.0.0), and a previous subnet overlapped by any
 * lease, not only an equal one, is not reused. Throws the exhaustion error (code 102).
 */
export function chooseSubnet(input: SubnetChoiceInput): SubnetChoice {
  const { config, leases } = input;
  const random = input.random ?? defaultRandom;
  let staleOwnLease: Lease | undefined;
  // A lease's PublicIP is always a string and its PublicIPv6 a string or null: an address not given matches none.
  const own = leases.find((l) => (config.ipv4 ? l.attrs.publicIP === input.publicIP : l.attrs.publicIPv6 === input.publicIPv6));
  if (own) {
    if (fitsConfig(config, own.subnets)) return { reason: "own-lease", subnets: own.subnets, lease: own };
    staleOwnLease = own;
  }
  const others = staleOwnLease ? leases.filter((l) => l !== staleOwnLease) : leases;
  const stale = staleOwnLease ? { staleOwnLease } : {};

  const previous = input.previous;
  if (previous && fitsConfig(config, previous)) {
    const free = (!previous.ipv4 || !overlapsAny(previous.ipv4, others, 4)) && (!previous.ipv6 || !overlapsAny(previous.ipv6, others, 6));
    if (free) return { reason: "previous", subnets: previous, ...stale };
  }

  const subnets: LeaseSubnets = {};
  if (config.ipv4) subnets.ipv4 = freeSubnet(config.ipv4, others, random);
  if (config.ipv6) subnets.ipv6 = freeSubnet(config.ipv6, others, random);
  return { reason: "free", subnets, ...stale };
}
