import { canonicalCidr } from "../lib/ip/ip.js";
import type { NatTable } from "../lib/netfilter/netfilter.js";

// flanneld's own rules with --ip-masq and --iptables-forward-rules, byte for byte as flanneld's
// iptables traffic manager writes them, so that a node switched between flanneld and weft's agent
// keeps one set of rules, whichever made them.

export const POSTROUTING_CHAIN = "FLANNEL-POSTRTG";
export const FORWARD_CHAIN = "FLANNEL-FWD";
/** kube-proxy's masquerade mark: traffic kube-proxy marks is not masqueraded twice. */
const KUBE_PROXY_MARK = "0x4000/0x4000";
const MASQ_COMMENT = ["-m", "comment", "--comment", "flanneld masq"];
const FORWARD_COMMENT = ["-m", "comment", "--comment", "flanneld forward"];
const MULTICAST = { 4: "224.0.0.0/4", 6: "ff00::/8" } as const;

export interface FlannelRule {
  table: "nat" | "filter";
  chain: string;
  rule: string[];
}

function cidr(value: string, what: string): string {
  const canonical = canonicalCidr(value);
  if (!canonical) throw new Error(`${what} ${JSON.stringify(value)} is not a CIDR`);
  return canonical;
}

/**
 * The masquerade rules for one family: the jump from POSTROUTING, then FLANNEL-POSTRTG's rules in
 * flanneld's order: kube-proxy's marked traffic, pod to cluster, cluster to pod and outside to pod
 * are left alone; cluster traffic leaving (but for multicast) and host traffic into the cluster are
 * masqueraded (--random-fully where iptables has it).
 */
export function masqueradeRules(network: string, podSubnet: string, options: { family: 4 | 6; randomFully: boolean }): FlannelRule[] {
  const cluster = cidr(network, "network");
  const pods = cidr(podSubnet, "pod subnet");
  const masquerade = options.randomFully ? ["-j", "MASQUERADE", "--random-fully"] : ["-j", "MASQUERADE"];
  const rule = (...args: string[]): FlannelRule => ({ table: "nat", chain: POSTROUTING_CHAIN, rule: args });
  return [
    { table: "nat", chain: "POSTROUTING", rule: [...MASQ_COMMENT, "-j", POSTROUTING_CHAIN] },
    rule("-m", "mark", "--mark", KUBE_PROXY_MARK, ...MASQ_COMMENT, "-j", "RETURN"),
    rule("-s", pods, "-d", cluster, ...MASQ_COMMENT, "-j", "RETURN"),
    rule("-s", cluster, "-d", pods, ...MASQ_COMMENT, "-j", "RETURN"),
    rule("!", "-s", cluster, "-d", pods, ...MASQ_COMMENT, "-j", "RETURN"),
    rule("-s", cluster, "!", "-d", MULTICAST[options.family], ...MASQ_COMMENT, ...masquerade),
    rule("!", "-s", cluster, "-d", cluster, ...MASQ_COMMENT, ...masquerade),
  ];
}

/** The forward rules: the jump from FORWARD, then accept what comes from or goes to the network. */
export function forwardRules(network: string): FlannelRule[] {
  const cluster = cidr(network, "network");
  return [
    { table: "filter", chain: "FORWARD", rule: [...FORWARD_COMMENT, "-j", FORWARD_CHAIN] },
    { table: "filter", chain: FORWARD_CHAIN, rule: ["-s", cluster, ...FORWARD_COMMENT, "-j", "ACCEPT"] },
    { table: "filter", chain: FORWARD_CHAIN, rule: ["-d", cluster, ...FORWARD_COMMENT, "-j", "ACCEPT"] },
  ];
}

const key = (rule: readonly string[]) => rule.join("\0");

/**
 * The iptables-restore --noflush lines that make one table hold `rules`, given the table as it is:
 * the agent's chain is declared (created, or flushed and refilled in one transaction, so it never
 * holds half of its rules), and the jump into it from the built-in chain is appended only when it
 * is missing, leaving the built-in chain's other rules alone.
 */
export function restoreLines(rules: readonly FlannelRule[], existing: NatTable): string[][] {
  const own = new Set(rules.filter((r) => r.chain === POSTROUTING_CHAIN || r.chain === FORWARD_CHAIN).map((r) => r.chain));
  const lines: string[][] = [...own].map((chain) => [`:${chain}`, "-", "[0:0]"]);
  for (const r of rules) {
    if (own.has(r.chain)) lines.push(["-A", r.chain, ...r.rule]);
    else if (!(existing.rules.get(r.chain) ?? []).some((have) => key(have) === key(r.rule))) lines.push(["-A", r.chain, ...r.rule]);
  }
  return lines;
}

/** The rules of `rules` missing from the table as it is, described, for the resync and for tests. */
export function missingRules(rules: readonly FlannelRule[], existing: NatTable): string[] {
  return rules
    .filter((r) => !(existing.rules.get(r.chain) ?? []).some((have) => key(have) === key(r.rule)))
    .map((r) => `-t ${r.table} -A ${r.chain} ${r.rule.join(" ")}`);
}
