import type { IpFamily } from "../../lib/ip/ip.js";
import {
  iptablesCollectChains,
  iptablesEnsureChain,
  iptablesInstalled,
  iptablesLine,
  iptablesRemoveChains,
  iptablesRestoreNat,
  iptablesSaveNat,
  nftApply,
  nftDeleteRules,
  nftInstalled,
  nftListTable,
  type NatTable,
  type NftRuleScope,
} from "../../lib/netfilter/netfilter.js";
import type { PodAddress, PortmapSettings } from "./config.js";
import {
  iptablesAddLines,
  iptablesMissing,
  iptablesPodChains,
  iptablesSharedChains,
  iptablesStaleChains,
  legacyNftTableName,
  nftAddScript,
  nftExpectedSignatures,
  nftRuleSignature,
  NFT_JUMPS,
  NFT_POD_CHAINS,
  NFT_TABLE,
  ruleTag,
} from "./rules.js";

/**
 * Applies what rules.ts computes. nftables: one `nft -f` per ADD. iptables: per family of the
 * pod, one iptables-save and one iptables-restore, plus `iptables -N` for a shared chain the first
 * time it is needed. DEL and GC clean both backends and every layout, and run a tool only when a
 * listing over nfnetlink shows something to remove.
 */

type Identity = Pick<PortmapSettings, "network" | "containerId">;

async function natTable(family: IpFamily): Promise<NatTable> {
  const table = await iptablesSaveNat(family);
  if (!table) throw new Error(`${family === 4 ? "iptables" : "ip6tables"} is not usable on this node`);
  return table;
}

export async function forwardPorts(s: PortmapSettings, pods: readonly PodAddress[]): Promise<void> {
  if (s.backend === "nftables") {
    await nftApply(nftAddScript(s, pods));
    return;
  }
  for (const pod of pods) {
    const existing = await natTable(pod.family);
    for (const chain of iptablesSharedChains(s)) {
      if (existing.chains.has(chain)) continue;
      await iptablesEnsureChain(pod.family, chain);
      existing.chains.add(chain);
    }
    await iptablesRestoreNat(pod.family, iptablesAddLines(s, pod, existing).map(iptablesLine));
  }
}

/** Where a pod's nftables rules can be: the Go layout's tables, and the network's table of older weft releases. */
function nftScopes(network: string): NftRuleScope[] {
  return [
    { family: "ip", table: NFT_TABLE, chains: NFT_POD_CHAINS },
    { family: "ip6", table: NFT_TABLE, chains: NFT_POD_CHAINS },
    { family: "inet", table: legacyNftTableName(network) },
  ];
}

/**
 * Removes every rule of the container in this network from both backends, whichever made them
 * (weft or the Go plugin, either backend, an older weft layout); returns how many rules or restore
 * lines went. A backend that holds nothing of the pod's costs no tool run.
 */
export async function unforwardPorts(id: Identity): Promise<number> {
  const tag = ruleTag(id.containerId);
  const chains = iptablesPodChains(id.network, id.containerId);
  const removed = await Promise.all([nftDeleteRules(nftScopes(id.network), (comment) => comment === tag), iptablesRemoveChains(4, chains), iptablesRemoveChains(6, chains)]);
  return removed.reduce((a, b) => a + b, 0);
}

/** CHECK: the pod's rules that are missing, described (empty when all are there). */
export async function missingRules(s: PortmapSettings, pods: readonly PodAddress[]): Promise<string[]> {
  if (s.backend === "iptables") {
    const missing: string[] = [];
    for (const pod of pods) missing.push(...iptablesMissing(s, pod, await natTable(pod.family)));
    return missing;
  }
  const tag = ruleTag(s.containerId);
  const missing: string[] = [];
  for (const family of [4, 6] as const) {
    const mine = pods.filter((p) => p.family === family);
    if (mine.length === 0) continue;
    const where = `table ${family === 4 ? "ip" : "ip6"} ${NFT_TABLE}`;
    const listed = await nftListTable(family === 4 ? "ip" : "ip6", NFT_TABLE);
    if (!listed) {
      missing.push(`nftables ${where} not found`);
      continue;
    }
    for (const chain of ["prerouting", "output", "hostports_all", "hostports", "hostip_hostports"]) {
      if (!listed.chains.has(chain)) missing.push(`chain ${chain} in ${where}`);
    }
    for (const [from, to] of NFT_JUMPS) {
      const jumps = listed.rules.filter((r) => r.chain === from && JSON.stringify(r.expr).includes(`"jump":{"target":"${to}"}`));
      if (jumps.length === 0) missing.push(`jump to ${to} in chain ${from} of ${where}`);
    }
    const found = new Set(listed.rules.filter((r) => r.comment === tag).map((r) => nftRuleSignature(r.expr)));
    for (const signature of nftExpectedSignatures(s, mine)) {
      if (!found.has(signature)) missing.push(`rule "${signature}" in ${where}`);
    }
  }
  return missing;
}

/**
 * GC: removes this network's rules of containers not in keep: from iptables, whose rules name the
 * network, and from older weft's per-network nftables table. The Go layout's shared tables name
 * no network, so a rule there cannot be told from another network's: DEL removes those, by
 * container ID, as the Go plugin does.
 */
export async function collectPorts(network: string, keep: ReadonlySet<string>): Promise<number> {
  const keepTags = new Set([...keep].map(ruleTag));
  let removed = await nftDeleteRules([{ family: "inet", table: legacyNftTableName(network) }], (comment) => !keepTags.has(comment));
  for (const family of [4, 6] as const) removed += await iptablesCollectChains(family, (existing) => iptablesStaleChains(network, keep, existing));
  return removed;
}

export function backendAvailable(backend: PortmapSettings["backend"]): boolean {
  return backend === "nftables" ? nftInstalled() : iptablesInstalled(4);
}
