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
 * Applies what rules.ts computes, through one of two backends. nftables: one `nft -f` per ADD.
 * iptables: per family of the pod, one iptables-save and one iptables-restore, plus `iptables -N`
 * for a shared chain the first time it is needed. DEL and GC clean both backends and every layout,
 * and run a tool only when a listing over nfnetlink shows something to remove.
 */
export interface PortmapBackend {
  readonly name: PortmapSettings["backend"];
  /** The tool this backend runs, for messages. */
  readonly tool: string;
  available(): boolean;
  /** ADD: the pod's rules. */
  forward(s: PortmapSettings, pods: readonly PodAddress[]): Promise<void>;
  /** CHECK: the pod's rules that are missing, described (empty when all are there). */
  missing(s: PortmapSettings, pods: readonly PodAddress[]): Promise<string[]>;
  /** DEL: every rule of the container in this network, in any layout this backend has held; how many went. */
  unforward(id: Identity): Promise<number>;
  /** GC: this network's rules of containers not in keep, where the layout names the network; how many went. */
  collect(network: string, keep: ReadonlySet<string>): Promise<number>;
}

type Identity = Pick<PortmapSettings, "network" | "containerId">;

async function natTable(family: IpFamily): Promise<NatTable> {
  const table = await iptablesSaveNat(family);
  if (!table) throw new Error(`${family === 4 ? "iptables" : "ip6tables"} is not usable on this node`);
  return table;
}

const iptables: PortmapBackend = {
  name: "iptables",
  tool: "iptables",
  available: () => iptablesInstalled(4),
  async forward(s, pods) {
    for (const pod of pods) {
      const existing = await natTable(pod.family);
      for (const chain of iptablesSharedChains(s)) {
        if (existing.chains.has(chain)) continue;
        await iptablesEnsureChain(pod.family, chain);
        existing.chains.add(chain);
      }
      await iptablesRestoreNat(pod.family, iptablesAddLines(s, pod, existing).map(iptablesLine));
    }
  },
  async missing(s, pods) {
    const missing: string[] = [];
    for (const pod of pods) missing.push(...iptablesMissing(s, pod, await natTable(pod.family)));
    return missing;
  },
  async unforward(id) {
    const chains = iptablesPodChains(id.network, id.containerId);
    const removed = await Promise.all([iptablesRemoveChains(4, chains), iptablesRemoveChains(6, chains)]);
    return removed[0] + removed[1];
  },
  async collect(network, keep) {
    let removed = 0;
    for (const family of [4, 6] as const) removed += await iptablesCollectChains(family, (existing) => iptablesStaleChains(network, keep, existing));
    return removed;
  },
};

/** Where a pod's nftables rules can be: the Go layout's tables, and the network's table of older weft releases. */
function nftScopes(network: string): NftRuleScope[] {
  return [
    { family: "ip", table: NFT_TABLE, chains: NFT_POD_CHAINS },
    { family: "ip6", table: NFT_TABLE, chains: NFT_POD_CHAINS },
    { family: "inet", table: legacyNftTableName(network) },
  ];
}

const nftables: PortmapBackend = {
  name: "nftables",
  tool: "nft",
  available: () => nftInstalled(),
  async forward(s, pods) {
    await nftApply(nftAddScript(s, pods));
  },
  async missing(s, pods) {
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
  },
  async unforward(id) {
    const tag = ruleTag(id.containerId);
    return nftDeleteRules(nftScopes(id.network), (comment) => comment === tag);
  },
  // The Go layout's shared tables name no network, so a rule there cannot be told from another
  // network's: DEL removes those, by container ID, as the Go plugin does. Older weft's per-network
  // table does name it.
  async collect(network, keep) {
    const keepTags = new Set([...keep].map(ruleTag));
    return nftDeleteRules([{ family: "inet", table: legacyNftTableName(network) }], (comment) => !keepTags.has(comment));
  },
};

const BACKENDS: readonly PortmapBackend[] = [nftables, iptables];

export function portmapBackend(name: PortmapSettings["backend"]): PortmapBackend {
  return name === "nftables" ? nftables : iptables;
}

/**
 * Removes every rule of the container in this network from both backends, whichever made them
 * (weft or the Go plugin, either backend, an older weft layout); returns how many rules or restore
 * lines went. A backend that holds nothing of the pod's costs no tool run.
 */
export async function unforwardPorts(id: Identity): Promise<number> {
  const removed = await Promise.all(BACKENDS.map((b) => b.unforward(id)));
  return removed.reduce((a, b) => a + b, 0);
}

/** GC: this network's stale rules, from both backends. */
export async function collectPorts(network: string, keep: ReadonlySet<string>): Promise<number> {
  let removed = 0;
  for (const backend of BACKENDS) removed += await backend.collect(network, keep);
  return removed;
}
