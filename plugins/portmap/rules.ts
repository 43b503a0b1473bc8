import { sha256Hex, sha512Hex } from "../../lib/node/hashes.js";
import type { IpFamily } from "../../lib/ip/ip.js";
import { valueAfter, type NatTable } from "../../lib/netfilter/netfilter.js";
import type { PodAddress, PortMapping, PortmapSettings } from "./config.js";

/**
 * The rules of one pod, as plain data: nft scripts and iptables argument lists. Nothing here runs
 * a tool; apply.ts does. Every value that reaches a script is a number, a protocol from a fixed
 * list, an address printed from its parsed form, a name checked against the CNI name pattern, or a
 * condition token checked in config.ts.
 */

// ---------------------------------------------------------------------------------------------
// nftables: the Go plugin's layout (v1.6+, portmap_nftables.go), so that either implementation's
// DEL removes the other's rules: one table per family, shared by every network, the pod's rules
// tagged with its container ID.
//
//   table ip cni_hostport / ip6 cni_hostport
//   prerouting (nat, dstnat), output (nat, -100): [conditions] fib daddr type local jump hostports_all
//   hostports_all:  jump hostip_hostports; jump hostports
//   hostports:      [ip daddr <hostIP>] <proto> dport <hostPort> dnat to <pod>:<port>   comment "<cid>"
//   masquerading (nat, srcnat): saddr <pod subnet | 127.0.0.1 | any> daddr <pod> <proto> dport <port>
//                   ct original proto-dst <hostPort> ct status dnat masquerade          comment "<cid>"
//
// The masquerading rules are weft's: the Go plugin masquerades only a pod reaching itself, which
// leaves a hairpin from another pod of the subnet broken; its DEL still removes them by comment.

export const NFT_TABLE = "cni_hostport";
const NFT_TABLE_COMMENT = "CNI portmap plugin";
/** The chains that hold pods' rules, as the Go plugin's DEL searches them. */
export const NFT_POD_CHAINS = ["hostports", "hostip_hostports", "masquerading"] as const;
/** The jumps that lead a packet to the pods' rules, [from chain, to chain]: CHECK wants each. */
export const NFT_JUMPS = [
  ["prerouting", "hostports_all"],
  ["output", "hostports_all"],
  ["hostports_all", "hostip_hostports"],
  ["hostports_all", "hostports"],
] as const;
/** nft keeps at most 128 bytes of a comment, the terminating NUL included. */
const NFT_COMMENT_MAX = 127;

/** The per-network table of weft releases before the Go layout; DEL and GC still clean it. */
export function legacyNftTableName(network: string): string {
  return `weft_portmap_${sha256Hex(network).slice(0, 16)}`;
}

/** The comment that marks a pod's rules: its container ID, as the reference writes it, or a hash of an ID too long for nft. */
export function ruleTag(containerId: string): string {
  return containerId.length <= NFT_COMMENT_MAX ? containerId : `sha256:${sha256Hex(containerId)}`;
}

const IPX = { 4: "ip", 6: "ip6" } as const;
const LOOPBACK_V4 = "127.0.0.1";

/** The mappings that apply to a family: a hostIP of the other family is skipped, as in the reference. */
export function mappingsFor(mappings: readonly PortMapping[], family: IpFamily): PortMapping[] {
  return mappings.filter((m) => !m.hostIP || m.hostIP.family === family);
}

function hostDaddr(m: PortMapping): string | undefined {
  // An unspecified hostIP (0.0.0.0, ::) means every address (plugins#643).
  return m.hostIP && !m.hostIP.unspecified ? m.hostIP.ip : undefined;
}

function dnatTarget(pod: PodAddress, port: number): string {
  return pod.family === 4 ? `${pod.ip}:${port}` : `[${pod.ip}]:${port}`;
}

function nftDnatRule(pod: PodAddress, m: PortMapping, tag: string): string {
  const ipx = IPX[pod.family];
  const daddr = hostDaddr(m);
  const match = daddr ? `${ipx} daddr ${daddr} ` : "";
  return `insert rule ${ipx} ${NFT_TABLE} hostports ${match}${m.protocol} dport ${m.hostPort} dnat to ${dnatTarget(pod, m.containerPort)} comment "${tag}"`;
}

/**
 * Hairpin (a pod of the subnet to a host port that leads back into the subnet) and, for IPv4, the
 * node's own 127.0.0.1: without the masquerade the reply would bypass the node's conntrack. One
 * rule per source, without anonymous sets, so the cost of a pod's rules grows linearly and small.
 */
function masqSources(pod: PodAddress, masqAll: boolean): Array<string | undefined> {
  return masqAll ? [undefined] : pod.family === 4 ? [pod.subnet, LOOPBACK_V4] : [pod.subnet];
}

function nftMasqRules(pod: PodAddress, m: PortMapping, masqAll: boolean, tag: string): string[] {
  const ipx = IPX[pod.family];
  return masqSources(pod, masqAll).map(
    (source) =>
      `insert rule ${ipx} ${NFT_TABLE} masquerading ${source ? `${ipx} saddr ${source} ` : ""}${ipx} daddr ${pod.ip} ${m.protocol} dport ${m.containerPort} ` +
      `ct original proto-dst ${m.hostPort} ct status dnat masquerade comment "${tag}"`,
  );
}

/** The one transaction of an ADD: per family of the pod, the table, its chains and jumps, then the pod's rules. */
export function nftAddScript(s: PortmapSettings, pods: readonly PodAddress[]): string {
  const tag = ruleTag(s.containerId);
  const lines: string[] = [];
  for (const family of [4, 6] as const) {
    const mine = pods.filter((p) => p.family === family);
    if (mine.length === 0) continue;
    const t = `${IPX[family]} ${NFT_TABLE}`;
    const conditions = s.conditions[family].length ? `${s.conditions[family].join(" ")} ` : "";
    lines.push(
      `add table ${t} { comment "${NFT_TABLE_COMMENT}" ; }`,
      `add chain ${t} hostports`,
      `add chain ${t} hostip_hostports`,
      `add chain ${t} hostports_all`,
      `flush chain ${t} hostports_all`,
      `add rule ${t} hostports_all jump hostip_hostports`,
      `add rule ${t} hostports_all jump hostports`,
      `add chain ${t} prerouting { type nat hook prerouting priority dstnat ; }`,
      `flush chain ${t} prerouting`,
      `add rule ${t} prerouting ${conditions}fib daddr type local jump hostports_all`,
      `add chain ${t} output { type nat hook output priority -100 ; }`,
      `flush chain ${t} output`,
      `add rule ${t} output ${conditions}fib daddr type local jump hostports_all`,
    );
    if (s.snat) lines.push(`add chain ${t} masquerading { type nat hook postrouting priority srcnat ; }`);
    for (const pod of mine) {
      for (const m of mappingsFor(s.mappings, family)) {
        lines.push(nftDnatRule(pod, m, tag));
        if (s.snat) lines.push(...nftMasqRules(pod, m, s.masqAll, tag));
      }
    }
  }
  return `${lines.join("\n")}\n`;
}

/** An address or prefix as nft's JSON writes the right side of a match. */
function jsonAddress(right: unknown): string | undefined {
  if (typeof right === "string") return right;
  const prefix = (right as { prefix?: { addr?: unknown; len?: unknown } } | null)?.prefix;
  return prefix && typeof prefix.addr === "string" ? `${prefix.addr}/${String(prefix.len)}` : undefined;
}

/** What a DNAT or masquerade rule does, read back from nft's JSON: "dnat tcp * 8080 -> 10.1.0.2:80". */
export function nftRuleSignature(expr: readonly unknown[]): string | undefined {
  let proto: string | undefined;
  let dport: unknown;
  let daddr: string | undefined;
  let saddr: string | undefined;
  let origPort: unknown;
  let target: string | undefined;
  let masquerade = false;
  for (const e of expr as Array<Record<string, Record<string, unknown>>>) {
    if (e.match) {
      const left = e.match.left as Record<string, Record<string, unknown>> | undefined;
      const right = e.match.right;
      const payload = left?.payload;
      if (payload && payload.field === "dport" && typeof payload.protocol === "string") {
        proto = payload.protocol;
        dport = right;
      }
      if (payload && payload.field === "daddr" && typeof right === "string") daddr = right;
      if (payload && payload.field === "saddr") saddr = jsonAddress(right);
      if (left?.ct && left.ct.key === "proto-dst" && left.ct.dir === "original") origPort = right;
    }
    if (e.dnat) target = `${String(e.dnat.addr)}:${String(e.dnat.port)}`;
    if ("masquerade" in e) masquerade = true;
  }
  if (target && proto) return `dnat ${proto} ${daddr ?? "*"} ${String(dport)} -> ${target}`;
  if (masquerade && proto) return `masq ${proto} ${saddr ?? "*"} ${String(origPort)} -> ${String(daddr)}:${String(dport)}`;
  return undefined;
}

/** The signatures CHECK expects to find among the pod's rules. */
export function nftExpectedSignatures(s: PortmapSettings, pods: readonly PodAddress[]): string[] {
  const out: string[] = [];
  for (const pod of pods) {
    for (const m of mappingsFor(s.mappings, pod.family)) {
      out.push(`dnat ${m.protocol} ${hostDaddr(m) ?? "*"} ${m.hostPort} -> ${pod.ip}:${m.containerPort}`);
      if (s.snat)
        for (const source of masqSources(pod, s.masqAll))
          out.push(`masq ${m.protocol} ${source ?? "*"} ${m.hostPort} -> ${pod.ip}:${m.containerPort}`);
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// iptables: the reference's layout in the nat table, so rules either plugin made are found and
// removed by the other.
//
//   PREROUTING, OUTPUT:  -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT
//   POSTROUTING (first): -m comment --comment "CNI portfwd requiring masquerade" -j CNI-HOSTPORT-MASQ
//   CNI-HOSTPORT-DNAT:   -p <proto> -m comment --comment 'dnat name: "<net>" id: "<cid>"' -m multiport --dports <≤15 ports> [conditions] -j CNI-DN-<hash>
//   CNI-DN-<hash>:       per mapping: hairpin mark, (v4) localhost mark, DNAT
//   CNI-HOSTPORT-SETMARK: -j MARK --set-xmark <bit>/<bit>;  CNI-HOSTPORT-MASQ: -m mark --mark <bit>/<bit> -j MASQUERADE

export const TOP_DNAT_CHAIN = "CNI-HOSTPORT-DNAT";
export const MASQ_CHAIN = "CNI-HOSTPORT-MASQ";
/** iptables chain names are at most 28 characters. */
const MAX_CHAIN = 28;
const MULTIPORT_MAX = 15;

function chainName(network: string, containerId: string, prefix: string): string {
  const head = `CNI-${prefix}`;
  return head + sha512Hex(network + containerId).slice(0, MAX_CHAIN - head.length);
}

/** The pod's chain, as the reference names it (utils.MustFormatChainNameWithPrefix(net, cid, "DN-")). */
export function dnatChainName(network: string, containerId: string): string {
  return chainName(network, containerId, "DN-");
}

/** The per-pod SNAT chain of reference plugins before v0.7, still removed on DEL. */
export function oldSnatChainName(network: string, containerId: string): string {
  return chainName(network, containerId, "SN-");
}

export function entryComment(network: string, containerId: string): string {
  const text = `dnat name: "${network}" id: "${containerId}"`;
  return text.length <= 255 ? text : `${text.slice(0, 253)}...`;
}

function markDef(bit: number): string {
  const value = `0x${(2 ** bit).toString(16)}`;
  return `${value}/${value}`;
}

function hostCidr(ip: string, family: IpFamily): string {
  return `${ip}/${family === 4 ? 32 : 128}`;
}

/** The rules of CNI-DN-<hash>, in iptables-save's own order and spelling, so CHECK compares exactly. */
export function iptablesPodRules(s: PortmapSettings, pod: PodAddress): string[][] {
  const rules: string[][] = [];
  for (const m of mappingsFor(s.mappings, pod.family)) {
    const daddr = hostDaddr(m);
    const dst = daddr ? ["-d", hostCidr(daddr, pod.family)] : [];
    const port = ["-p", m.protocol, "-m", m.protocol, "--dport", String(m.hostPort)];
    if (s.snat) {
      // iptables-save leaves out a source of 0.0.0.0/0 (masqAll): so does weft.
      const hairpinSource = s.masqAll ? [] : ["-s", pod.subnet];
      rules.push([...hairpinSource, ...dst, ...port, "-j", s.setMarkChain]);
      if (pod.family === 4 && !s.masqAll) rules.push(["-s", hostCidr(LOOPBACK_V4, 4), ...dst, ...port, "-j", s.setMarkChain]);
    }
    rules.push([...dst, ...port, "-j", "DNAT", "--to-destination", dnatTarget(pod, m.containerPort)]);
  }
  return rules;
}

/** The jumps from CNI-HOSTPORT-DNAT into the pod's chain: per protocol (sorted), at most 15 ports each. */
export function iptablesEntryRules(s: PortmapSettings, family: IpFamily): string[][] {
  const chain = dnatChainName(s.network, s.containerId);
  const comment = entryComment(s.network, s.containerId);
  const byProto = new Map<string, number[]>();
  // Every mapping counts here, whatever its hostIP's family: the reference does the same.
  for (const m of s.mappings) byProto.set(m.protocol, [...(byProto.get(m.protocol) ?? []), m.hostPort]);
  const rules: string[][] = [];
  for (const proto of [...byProto.keys()].sort()) {
    const ports = byProto.get(proto)!;
    for (let i = 0; i < ports.length; i += MULTIPORT_MAX) {
      const list = ports.slice(i, i + MULTIPORT_MAX).join(",");
      rules.push(["-p", proto, "-m", "comment", "--comment", comment, "-m", "multiport", "--dports", list, ...s.conditions[family], "-j", chain]);
    }
  }
  return rules;
}

/** The shared rules, chain by chain (entry chains first, so they are added after their targets exist). */
export function iptablesSharedRules(s: PortmapSettings): Array<{ chain: string; rule: string[]; prepend: boolean }> {
  const shared: Array<{ chain: string; rule: string[]; prepend: boolean }> = [];
  if (s.snat && s.ownSetMark) {
    const mark = markDef(s.markMasqBit);
    shared.push({
      chain: s.setMarkChain,
      rule: ["-m", "comment", "--comment", "CNI portfwd masquerade mark", "-j", "MARK", "--set-xmark", mark],
      prepend: false,
    });
    shared.push({ chain: MASQ_CHAIN, rule: ["-m", "mark", "--mark", mark, "-j", "MASQUERADE"], prepend: false });
    // First in POSTROUTING: the bridge's and ptp's masquerade rules would otherwise take the packet.
    shared.push({ chain: "POSTROUTING", rule: ["-m", "comment", "--comment", "CNI portfwd requiring masquerade", "-j", MASQ_CHAIN], prepend: true });
  }
  for (const chain of ["PREROUTING", "OUTPUT"]) {
    shared.push({ chain, rule: ["-m", "addrtype", "--dst-type", "LOCAL", "-j", TOP_DNAT_CHAIN], prepend: false });
  }
  return shared;
}

/** The chains an ADD needs that only `iptables -N` may create (declaring them in a restore would flush them). */
export function iptablesSharedChains(s: PortmapSettings): string[] {
  return s.snat && s.ownSetMark ? [s.setMarkChain, MASQ_CHAIN, TOP_DNAT_CHAIN] : [TOP_DNAT_CHAIN];
}

const key = (rule: readonly string[]) => rule.join("\0");

function hasRule(table: NatTable, chain: string, rule: readonly string[]): boolean {
  const k = key(rule);
  return (table.rules.get(chain) ?? []).some((r) => key(r) === k);
}

/** An entry rule's identity, whatever order iptables-save prints the conditions in. */
function entrySignature(rule: readonly string[]): string {
  return [valueAfter(rule, "-p", "--protocol"), valueAfter(rule, "--dports", "--destination-ports"), valueAfter(rule, "-j", "--jump")].join(" ");
}

/**
 * The restore lines of an ADD for one family, given the nat table as it is: the pod's chain is
 * declared (so it is created, or flushed and refilled when ADD is repeated), shared rules are added
 * only when missing, and the entry jumps go first in CNI-HOSTPORT-DNAT so the newest pod wins a
 * host port, as the reference has done since it prepends them.
 */
export function iptablesAddLines(s: PortmapSettings, pod: PodAddress, existing: NatTable): string[][] {
  const chain = dnatChainName(s.network, s.containerId);
  const lines: string[][] = [[`:${chain}`, "-", "[0:0]"]];
  for (const { chain: c, rule, prepend } of iptablesSharedRules(s)) {
    if (!hasRule(existing, c, rule)) lines.push(prepend ? ["-I", c, "1", ...rule] : ["-A", c, ...rule]);
  }
  for (const rule of iptablesPodRules(s, pod)) lines.push(["-A", chain, ...rule]);
  const present = new Set((existing.rules.get(TOP_DNAT_CHAIN) ?? []).map(entrySignature));
  let position = 1;
  for (const rule of iptablesEntryRules(s, pod.family)) {
    if (!present.has(entrySignature(rule))) lines.push(["-I", TOP_DNAT_CHAIN, String(position++), ...rule]);
  }
  return lines;
}

/** The pod's chains (the current one and the pre-v0.7 SNAT one). */
export function iptablesPodChains(network: string, containerId: string): string[] {
  return [dnatChainName(network, containerId), oldSnatChainName(network, containerId)];
}

/** GC: the pod chains of this network whose container is not among those to keep. */
export function iptablesStaleChains(network: string, keep: ReadonlySet<string>, existing: NatTable): string[] {
  const stale = new Set<string>();
  const prefix = `dnat name: "${network}" id: "`;
  for (const rule of existing.rules.get(TOP_DNAT_CHAIN) ?? []) {
    const comment = valueAfter(rule, "--comment");
    const target = valueAfter(rule, "-j", "--jump");
    if (!comment?.startsWith(prefix) || !comment.endsWith('"') || !target) continue;
    const containerId = comment.slice(prefix.length, -1);
    if (keep.has(containerId)) continue;
    stale.add(target);
    stale.add(oldSnatChainName(network, containerId));
  }
  return [...stale];
}

/** CHECK: what is missing of the pod's rules in one family (empty when all are there). */
export function iptablesMissing(s: PortmapSettings, pod: PodAddress, existing: NatTable): string[] {
  const chain = dnatChainName(s.network, s.containerId);
  if (!existing.chains.has(chain)) return [`chain ${chain} not found in iptables table nat`];
  const missing: string[] = [];
  for (const rule of iptablesPodRules(s, pod)) {
    if (!hasRule(existing, chain, rule)) missing.push(`rule "${rule.join(" ")}" in chain ${chain}`);
  }
  const present = new Set((existing.rules.get(TOP_DNAT_CHAIN) ?? []).map(entrySignature));
  for (const rule of iptablesEntryRules(s, pod.family)) {
    if (!present.has(entrySignature(rule))) missing.push(`rule "${rule.join(" ")}" in chain ${TOP_DNAT_CHAIN}`);
  }
  for (const { chain: c, rule } of iptablesSharedRules(s)) {
    if (!hasRule(existing, c, rule)) missing.push(`rule "${rule.join(" ")}" in chain ${c}`);
  }
  return missing;
}
