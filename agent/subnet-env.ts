import { formatCidr, formatIp, ipFromBigInt, ipToBigInt, networkOf, parseCidr, type IpFamily, type ParsedCidr } from "../lib/ip/ip.js";
import type { LeaseSubnets } from "./lease.js";
import type { NetworkConfig } from "./network-config.js";

export interface SubnetEnvContent {
  config: NetworkConfig;
  /** This node's leased subnets. */
  subnets: LeaseSubnets;
  mtu: number;
  /** The agent masquerades itself (--ip-masq), so the CNI side must not. */
  ipMasq: boolean;
}

/** The subnet's first address with the subnet's length: what the bridge gets (10.244.1.0/24 -> 10.244.1.1/24). */
function firstAddress(subnet: ParsedCidr): string {
  const network = networkOf(subnet);
  return `${formatIp(ipFromBigInt(ipToBigInt(network.ip) + 1n, network.ip.family))}/${network.prefixLength}`;
}

/**
 * subnet.env as flanneld writes it (WriteSubnetFile): the IPv4 lines when IPv4 is enabled, the IPv6
 * lines when IPv6 is, then the MTU and FLANNEL_IPMASQ; KEY=VALUE lines without quoting, each ending in
 * a newline. A family the config enables must be in `subnets`.
 */
export function formatSubnetEnv(content: SubnetEnvContent): string {
  const { config, subnets } = content;
  let text = "";
  const family = (networkKey: string, subnetKey: string, network: ParsedCidr, subnet: ParsedCidr | undefined) => {
    if (!subnet) throw new Error(`subnet.env: ${subnetKey} is missing: the lease holds no IPv${network.ip.family} subnet`);
    text += `${networkKey}=${formatCidr(network)}\n${subnetKey}=${firstAddress(subnet)}\n`;
  };
  if (config.ipv4) family("FLANNEL_NETWORK", "FLANNEL_SUBNET", config.ipv4.network, subnets.ipv4);
  if (config.ipv6) family("FLANNEL_IPV6_NETWORK", "FLANNEL_IPV6_SUBNET", config.ipv6.network, subnets.ipv6);
  return `${text}FLANNEL_MTU=${content.mtu}\nFLANNEL_IPMASQ=${content.ipMasq}\n`;
}

/**
 * One dotenv line's key and value as godotenv reads them (an `export` prefix, quotes, a comment after
 * whitespace); a comment line yields a key starting with "#", which nothing asks for. Keys and values
 * are trimmed, so the prefix is `export` and one whitespace; a lone quote becomes an empty value,
 * no CIDR either.
 */
function dotenvLine(line: string): [string, string] | undefined {
  const text = line.trim().replace(/^export\s/, "");
  const eq = text.indexOf("=");
  if (eq < 0) return undefined;
  let value = text.slice(eq + 1).trim();
  const quote = value[0];
  if ((quote === '"' || quote === "'") && value.endsWith(quote)) value = value.slice(1, -1);
  else value = value.replace(/\s+#.*/, "");
  return [text.slice(0, eq).trim(), value];
}

/**
 * The subnets named by the subnet.env a previous run left (FLANNEL_SUBNET, FLANNEL_IPV6_SUBNET), in
 * their network form, for the agent to ask for the same subnets again. As flanneld
 * (ReadCIDRFromSubnetFile), a value that is missing or not a CIDR of its family is no previous subnet.
 */
export function previousSubnets(text: string): LeaseSubnets {
  const values = new Map<string, string>();
  for (const line of text.split("\n")) {
    const entry = dotenvLine(line);
    if (entry) values.set(entry[0], entry[1]);
  }
  const read = (key: string, family: IpFamily): ParsedCidr | undefined => {
    const cidr = parseCidr(values.get(key) ?? "");
    return cidr?.ip.family === family ? networkOf(cidr) : undefined;
  };
  const ipv4 = read("FLANNEL_SUBNET", 4);
  const ipv6 = read("FLANNEL_IPV6_SUBNET", 6);
  return { ...(ipv4 ? { ipv4 } : {}), ...(ipv6 ? { ipv6 } : {}) };
}
