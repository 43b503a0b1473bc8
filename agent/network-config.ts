import { validateWith, type CompiledValidator } from "../lib/cni/config.js";
import { CniError, ErrorCode } from "../lib/errors/cni.js";
import { formatCidr, formatIp, ipFromBigInt, ipToBigInt, networkOf, parseCidr, parseIp, type IpFamily, type ParsedCidr } from "../lib/ip/ip.js";

/** The subnets of one address family that nodes may lease. */
export interface SubnetPool {
  family: IpFamily;
  /** Network, in its network form. */
  network: ParsedCidr;
  /** SubnetLen: every node's subnet has this prefix length. */
  subnetLength: number;
  /** SubnetMin and SubnetMax: the first and the last subnet that may be leased, as integers. */
  min: bigint;
  max: bigint;
}

export type BackendConfig =
  | { type: "vxlan"; vni: number; port: number; gbp: boolean; learning: boolean; directRouting: boolean; mtu?: number }
  | { type: "host-gw" }
  | { type: "udp"; port: number };

export type BackendType = BackendConfig["type"];

export const BACKEND_TYPES: readonly BackendType[] = ["vxlan", "host-gw", "udp"];

export interface NetworkConfig {
  ipv4?: SubnetPool;
  ipv6?: SubnetPool;
  backend: BackendConfig;
  enableNFTables: boolean;
  /** What the config holds that changes nothing, or that flanneld reads differently from its documentation. */
  warnings: string[];
}

const TOP_LEVEL_KEYS = [
  "Network",
  "SubnetLen",
  "SubnetMin",
  "SubnetMax",
  "EnableIPv4",
  "EnableIPv6",
  "IPv6Network",
  "IPv6SubnetLen",
  "IPv6SubnetMin",
  "IPv6SubnetMax",
  "EnableNFTables",
  "Backend",
];
const BACKEND_KEYS = ["Type", "VNI", "Port", "GBP", "Learning", "DirectRouting", "MTU"];

/** Keys only flanneld's Kubernetes subnet manager reads. */
const KUBERNETES_ONLY = ["Networks", "IPv6Networks"];

const VXLAN_DEFAULT_PORT = 8472;
const UDP_DEFAULT_PORT = 8285;

/**
 * Go's decoder matches a key to a field exactly, else ignoring case, and a later key overwrites an
 * earlier one: {"network": ...} sets Network. Unknown keys are returned for a warning.
 */
function canonicalKeys(raw: Record<string, unknown>, known: readonly string[]): { object: Record<string, unknown>; unknown: string[] } {
  const object: Record<string, unknown> = {};
  const unknown: string[] = [];
  for (const [key, value] of Object.entries(raw)) {
    const name = known.includes(key) ? key : known.find((k) => k.toLowerCase() === key.toLowerCase());
    if (name) object[name] = value;
    else unknown.push(key);
  }
  return { object, unknown };
}

function fail(source: string, message: string): never {
  throw new CniError(ErrorCode.InvalidNetworkConfig, `invalid network config ${source}: ${message}`);
}

const FAMILY_KEYS = {
  4: { network: "Network", length: "SubnetLen", min: "SubnetMin", max: "SubnetMax", bits: 32, maxLength: 30, defaultLength: 24 },
  6: { network: "IPv6Network", length: "IPv6SubnetLen", min: "IPv6SubnetMin", max: "IPv6SubnetMax", bits: 128, maxLength: 126, defaultLength: 64 },
} as const;

function parseAddress(source: string, key: string, text: string, family: IpFamily): bigint {
  const ip = parseIp(text);
  if (ip?.family !== family) fail(source, `${key} ${JSON.stringify(text)} is not an IPv${family} address`);
  return ipToBigInt(ip);
}

/** The subnets of one family, with flanneld's defaults and checks (CheckNetworkConfig), and a range that is not empty. */
function subnetPool(source: string, config: Record<string, unknown>, family: IpFamily): SubnetPool {
  const keys = FAMILY_KEYS[family];
  const text = config[keys.network] as string | undefined;
  if (text === undefined) {
    fail(
      source,
      family === 4
        ? `Network is missing: give the cluster's IPv4 network, e.g. "Network": "10.244.0.0/16" (or set "EnableIPv4": false for IPv6 only)`
        : `IPv6Network is missing: "EnableIPv6": true needs the cluster's IPv6 network, e.g. "IPv6Network": "fd00:10:244::/56"`,
    );
  }
  const parsed = parseCidr(text);
  if (parsed?.ip.family !== family) fail(source, `${keys.network} ${JSON.stringify(text)} is not an IPv${family} CIDR`);
  const network = networkOf(parsed);
  const prefix = network.prefixLength;
  const smallest = keys.maxLength - 2;

  let subnetLength = (config[keys.length] as number | undefined) ?? 0;
  if (subnetLength > 0) {
    if (subnetLength > keys.maxLength) {
      fail(source, `${keys.length} is ${subnetLength}: it must be at most ${keys.maxLength}, so that a subnet holds a tunnel and a bridge address`);
    }
    if (subnetLength < prefix + 2) {
      fail(
        source,
        `${keys.length} is ${subnetLength} in the /${prefix} ${keys.network}: it must be at least ${prefix + 2}, so that the network holds four subnets (the first is never leased)`,
      );
    }
  } else if (prefix > smallest) {
    fail(
      source,
      `${keys.network} ${formatCidr(network)} is too small: the smallest network is a /${smallest} (four subnets of four addresses; the first is never leased)`,
    );
  } else {
    subnetLength = Math.max(keys.defaultLength, prefix + 2);
  }

  const size = 1n << BigInt(keys.bits - subnetLength);
  const start = ipToBigInt(network.ip);
  const end = start + (1n << BigInt(keys.bits - prefix)) - 1n;
  const bound = (key: typeof keys.min | typeof keys.max, fallback: bigint): bigint => {
    const value = config[key] as string | undefined;
    // flanneld reads the zero address as "not given".
    const address = value === undefined ? 0n : parseAddress(source, key, value, family);
    if (address === 0n) return fallback;
    const shown = formatIp(ipFromBigInt(address, family));
    if (address < start || address > end) fail(source, `${key} ${shown} is outside ${keys.network} ${formatCidr(network)}`);
    if (address % size !== 0n) fail(source, `${key} ${shown} is not the first address of a /${subnetLength} subnet`);
    return address;
  };
  // The first subnet is never leased: its .0 would be the network's own address on the tunnel device.
  const min = bound(keys.min, start + size);
  const max = bound(keys.max, end + 1n - size);
  if (min > max) {
    fail(
      source,
      `${keys.min} ${formatIp(ipFromBigInt(min, family))} is above ${keys.max} ${formatIp(ipFromBigInt(max, family))}: there is no subnet to lease`,
    );
  }
  return { family, network, subnetLength, min, max };
}

function backendConfig(object: Record<string, unknown>, unknown: readonly string[], warnings: string[]): BackendConfig {
  const type = object.Type as BackendType;
  const perType: Record<BackendType, string[]> = {
    vxlan: ["VNI", "Port", "GBP", "Learning", "DirectRouting", "MTU"],
    "host-gw": [],
    udp: ["Port"],
  };
  const unused = [...unknown, ...Object.keys(object).filter((k) => k !== "Type" && !perType[type].includes(k))];
  if (unused.length > 0) warnings.push(`Backend keys ignored by the ${type} backend: ${unused.join(", ")}`);
  switch (type) {
    case "vxlan": {
      const mtu = object.MTU as number | undefined;
      return {
        type,
        vni: (object.VNI as number | undefined) ?? 1,
        // Port 0 is the kernel's default port, flanneld's too.
        port: (object.Port as number | undefined) || VXLAN_DEFAULT_PORT,
        gbp: (object.GBP as boolean | undefined) ?? false,
        learning: (object.Learning as boolean | undefined) ?? false,
        directRouting: (object.DirectRouting as boolean | undefined) ?? false,
        ...(mtu === undefined ? {} : { mtu }),
      };
    }
    case "host-gw":
      return { type };
    case "udp":
      return { type, port: (object.Port as number | undefined) || UDP_DEFAULT_PORT };
  }
}

/** Parses JSON as text without a hard error for a non-object: the caller names the key. */
function decode(source: string, text: string): Record<string, unknown> {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    fail(source, `not valid JSON (${(err as Error).message})`);
  }
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) fail(source, "it must be a JSON object");
  return raw as Record<string, unknown>;
}

/**
 * Reads and checks the network config as flanneld does (ParseConfig, CheckNetworkConfig), each
 * problem named by its key: the JSON, then the types (`validate`, compiled from
 * network-config.schema.ts), then the checks across keys. `source` names where the text came from
 * (the etcd key). Beyond flanneld: SubnetMin above SubnetMax, neither family enabled, and the key
 * or value of a backend weft does not run are errors, not a broken node later.
 */
export function parseNetworkConfig(text: string, validate: CompiledValidator, source: string): NetworkConfig {
  const decoded = decode(source, text);
  const { object: config, unknown } = canonicalKeys(decoded, TOP_LEVEL_KEYS);
  const warnings: string[] = [];
  const kubernetesOnly = unknown.filter((k) => KUBERNETES_ONLY.includes(k));
  const ignored = unknown.filter((k) => !KUBERNETES_ONLY.includes(k));
  if (kubernetesOnly.length > 0) warnings.push(`${kubernetesOnly.join(", ")} ignored: only the Kubernetes subnet manager reads them`);
  if (ignored.length > 0) warnings.push(`unknown keys ignored: ${ignored.join(", ")}`);
  const backendKeys =
    typeof config.Backend === "object" && config.Backend !== null && !Array.isArray(config.Backend)
      ? canonicalKeys(config.Backend as Record<string, unknown>, BACKEND_KEYS)
      : undefined;
  if (backendKeys) config.Backend = backendKeys.object;

  if (!validate(config)) {
    // Backend.Type's one constraint is its enum.
    if (validate.errors?.[0]?.instancePath === "/Backend/Type") {
      fail(
        source,
        `Backend.Type ${JSON.stringify((config.Backend as Record<string, unknown>).Type)} is not a backend weft runs: use ${BACKEND_TYPES.join(", ")}`,
      );
    }
    validateWith(validate, config, `network config ${source}`);
  }

  const enableIPv4 = (config.EnableIPv4 as boolean | undefined) ?? true;
  const enableIPv6 = (config.EnableIPv6 as boolean | undefined) ?? false;
  if (!enableIPv4 && !enableIPv6) fail(source, "EnableIPv4 and EnableIPv6 are both false: enable at least one");
  if (!enableIPv6 && config.IPv6Network !== undefined) warnings.push("IPv6Network is ignored: EnableIPv6 is not true");

  let backend: BackendConfig;
  // Past validate, Backend is either absent or an object.
  if (!backendKeys) {
    // pkg/subnet/config.go parseBackendType; Documentation/configuration.md agrees, backends.md says vxlan.
    backend = { type: "udp", port: UDP_DEFAULT_PORT };
    warnings.push(`no Backend: using udp, as flanneld does; set "Backend": {"Type": "vxlan"} for VXLAN`);
  } else {
    backend = backendConfig(backendKeys.object, backendKeys.unknown, warnings);
  }

  return {
    ...(enableIPv4 ? { ipv4: subnetPool(source, config, 4) } : {}),
    ...(enableIPv6 ? { ipv6: subnetPool(source, config, 6) } : {}),
    backend,
    enableNFTables: (config.EnableNFTables as boolean | undefined) ?? false,
    warnings,
  };
}

/** How many subnets the pool holds. */
export function subnetCount(pool: SubnetPool): bigint {
  return (pool.max - pool.min) / subnetSize(pool) + 1n;
}

export function subnetSize(pool: SubnetPool): bigint {
  return 1n << BigInt((pool.family === 4 ? 32 : 128) - pool.subnetLength);
}
