import { readFileSync } from "node:fs";
import { CniError, ErrorCode } from "../../lib/errors/cni.js";
import { formatCidr, networkOf, parseCidr, type IpFamily } from "../../lib/ip/ip.js";

/** What flanneld leased to this node, as written to subnet.env. Every CIDR is in its network form. */
export interface SubnetEnv {
  /** FLANNEL_NETWORK: the cluster's IPv4 networks, deduplicated, in file order. */
  networks: string[];
  /** FLANNEL_SUBNET: this node's IPv4 subnet (a comma list is accepted: one range each). */
  subnets: string[];
  ipv6Networks: string[];
  ipv6Subnets: string[];
  mtu: number;
  /** FLANNEL_IPMASQ: flanneld masquerades itself, so the delegate must not. */
  ipMasq: boolean;
}

const CIDR_LISTS = {
  FLANNEL_NETWORK: ["networks", 4],
  FLANNEL_SUBNET: ["subnets", 4],
  FLANNEL_IPV6_NETWORK: ["ipv6Networks", 6],
  FLANNEL_IPV6_SUBNET: ["ipv6Subnets", 6],
} as const satisfies Record<string, [keyof SubnetEnv, IpFamily]>;

const MAX_UINT32 = 0xffff_ffff;

function fail(path: string, problem: string): never {
  throw new CniError(
    ErrorCode.InvalidNetworkConfig,
    `failed to load flannel 'subnet.env' file: ${path} ${problem}. Check the flannel pod log for this node.`,
  );
}

function parseCidrList(path: string, lineNo: number, key: string, value: string, family: IpFamily): string[] {
  const out: string[] = [];
  for (const item of value.split(",")) {
    const cidr = parseCidr(item);
    if (!cidr) fail(path, `line ${lineNo}: ${key}=${JSON.stringify(value)}: ${JSON.stringify(item)} is not a CIDR`);
    if (cidr.ip.family !== family) {
      fail(path, `line ${lineNo}: ${key}=${JSON.stringify(value)}: ${JSON.stringify(item)} is not an IPv${family} CIDR`);
    }
    // net.ParseCIDR's network form, deduplicated as the Go plugin does (e541b70).
    const network = formatCidr(networkOf(cidr));
    if (!out.includes(network)) out.push(network);
  }
  return out;
}

/**
 * Parses subnet.env as flanneld writes it (KEY=VALUE lines, no quoting). As in the Go plugin, a line
 * is split at its first "=", unknown keys are ignored and a later line wins; bufio.Scanner drops a
 * trailing "\r". Unlike it, a malformed value is quoted back with its line, FLANNEL_IPMASQ must be
 * true or false (Go reads anything else as false), and the subnets may be comma lists.
 */
export function parseSubnetEnv(text: string, path: string): SubnetEnv {
  const lists: Partial<Record<keyof typeof CIDR_LISTS, string[]>> = {};
  let mtu: number | undefined;
  let ipMasq: boolean | undefined;
  const lines = text.split("\n");
  if (lines[lines.length - 1] === "") lines.pop();
  lines.forEach((raw, i) => {
    const line = raw.endsWith("\r") ? raw.slice(0, -1) : raw;
    const eq = line.indexOf("=");
    const key = eq < 0 ? line : line.slice(0, eq);
    const value = eq < 0 ? "" : line.slice(eq + 1);
    const lineNo = i + 1;
    if (key in CIDR_LISTS) {
      const name = key as keyof typeof CIDR_LISTS;
      lists[name] = parseCidrList(path, lineNo, key, value, CIDR_LISTS[name][1]);
    } else if (key === "FLANNEL_MTU") {
      if (!/^\d+$/.test(value) || Number(value) > MAX_UINT32) {
        fail(path, `line ${lineNo}: FLANNEL_MTU=${JSON.stringify(value)} is not an unsigned integer`);
      }
      mtu = Number(value);
    } else if (key === "FLANNEL_IPMASQ") {
      if (value !== "true" && value !== "false") {
        fail(path, `line ${lineNo}: FLANNEL_IPMASQ=${JSON.stringify(value)} is neither true nor false`);
      }
      ipMasq = value === "true";
    }
  });

  // The Go plugin's completeness rule and wording (flannel.go subnetEnv.missing).
  const missing: string[] = [];
  if (!lists.FLANNEL_NETWORK && !lists.FLANNEL_IPV6_NETWORK) missing.push("FLANNEL_NETWORK", "FLANNEL_IPV6_NETWORK");
  if (!lists.FLANNEL_SUBNET && !lists.FLANNEL_IPV6_SUBNET) missing.push("FLANNEL_SUBNET", "FLANNEL_IPV6_SUBNET");
  if (mtu === undefined) missing.push("FLANNEL_MTU");
  if (ipMasq === undefined) missing.push("FLANNEL_IPMASQ");
  if (missing.length > 0 || mtu === undefined || ipMasq === undefined) fail(path, `is missing ${missing.join(", ")}`);

  return {
    networks: lists.FLANNEL_NETWORK ?? [],
    subnets: lists.FLANNEL_SUBNET ?? [],
    ipv6Networks: lists.FLANNEL_IPV6_NETWORK ?? [],
    ipv6Subnets: lists.FLANNEL_IPV6_SUBNET ?? [],
    mtu,
    ipMasq,
  };
}

/**
 * Reads and parses subnet.env. A missing file means flanneld has not written this node's lease yet
 * (it lives on tmpfs, so every boot starts without it): code 11 tells the runtime to retry.
 */
export function readSubnetEnv(path: string): SubnetEnv {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    if (e.code === "ENOENT") {
      throw new CniError(
        ErrorCode.TryAgainLater,
        `failed to load flannel 'subnet.env' file: ${path} does not exist: flanneld is not running or not ready on this node. Check the flannel pod log for this node.`,
      );
    }
    throw new CniError(ErrorCode.IOFailure, `failed to load flannel 'subnet.env' file: cannot read ${path}: ${e.message}`);
  }
  return parseSubnetEnv(text, path);
}
