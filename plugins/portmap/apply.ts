import type { IpFamily } from "../cni/ip.js";
import {
  iptablesEnsureChain,
  iptablesInstalled,
  iptablesLine,
  iptablesRestoreNat,
  iptablesSaveNat,
  nftApply,
  nftInstalled,
  nftListTable,
  nftRuleRefs,
  type NatTable,
  type NftRuleRef,
} from "../kernel/netfilter.js";
import type { PodAddress, PortmapSettings } from "./config.js";
import {
  iptablesAddLines,
  iptablesMissing,
  iptablesPodChains,
  iptablesRemoveLines,
  iptablesSharedChains,
  iptablesStaleChains,
  nftAddScript,
  nftDeleteScript,
  nftExpectedSignatures,
  nftRuleSignature,
  nftTableName,
  ruleTag,
} from "./rules.js";

/**
 * Applies what rules.ts computes. nftables: one `nft -f` per call (ADD), or one listing plus one
 * transaction (DEL, GC). iptables: per family of the pod, one iptables-save and one
 * iptables-restore, plus `iptables -N` for a shared chain the first time it is needed.
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

/** The rules of the network's table (none when it does not exist), from nfnetlink or else from nft. */
async function tableRules(network: string): Promise<NftRuleRef[]> {
  const table = nftTableName(network);
  return (await nftRuleRefs("inet", table)) ?? (await nftListTable("inet", table))?.rules ?? [];
}

/** Removes every rule of the container in this network; returns how many rules or chains went. */
export async function unforwardPorts(backend: PortmapSettings["backend"], id: Identity, families: readonly IpFamily[]): Promise<number> {
  if (backend === "nftables") {
    // Without nft there can be no nftables rules of ours to remove.
    if (!nftInstalled()) return 0;
    const tag = ruleTag(id.containerId);
    const doomed = (await tableRules(id.network)).filter((r) => r.comment === tag);
    if (doomed.length) await nftApply(nftDeleteScript(id.network, doomed));
    return doomed.length;
  }
  let removed = 0;
  for (const family of families) {
    if (!iptablesInstalled(family)) continue;
    const existing = await iptablesSaveNat(family);
    if (!existing) continue;
    const lines = iptablesRemoveLines(iptablesPodChains(id.network, id.containerId), existing);
    await iptablesRestoreNat(family, lines.map(iptablesLine));
    removed += lines.length;
  }
  return removed;
}

/** CHECK: the pod's rules that are missing, described (empty when all are there). */
export async function missingRules(s: PortmapSettings, pods: readonly PodAddress[]): Promise<string[]> {
  if (s.backend === "nftables") {
    const table = nftTableName(s.network);
    const listed = await nftListTable("inet", table);
    if (!listed) return [`nftables table inet ${table} not found`];
    const missing: string[] = [];
    for (const chain of ["prerouting", "output", "hostports", "masquerading"]) {
      if (!listed.chains.has(chain)) missing.push(`chain ${chain} in table inet ${table}`);
    }
    for (const hook of ["prerouting", "output"]) {
      const jumps = listed.rules.filter((r) => r.chain === hook && JSON.stringify(r.expr).includes('"jump":{"target":"hostports"}'));
      if (jumps.length === 0) missing.push(`jump to hostports in chain ${hook}`);
    }
    const tag = ruleTag(s.containerId);
    const found = new Set(listed.rules.filter((r) => r.comment === tag).map((r) => nftRuleSignature(r.expr)));
    for (const signature of nftExpectedSignatures(s, pods)) {
      if (!found.has(signature)) missing.push(`rule "${signature}"`);
    }
    return missing;
  }
  const missing: string[] = [];
  for (const pod of pods) missing.push(...iptablesMissing(s, pod, await natTable(pod.family)));
  return missing;
}

/**
 * GC: removes this network's rules of containers not in keep, in both backends (rules may predate
 * a change of backend, or come from the reference plugin's iptables layout).
 */
export async function collectPorts(network: string, keep: ReadonlySet<string>): Promise<number> {
  let removed = 0;
  if (nftInstalled()) {
    const keepTags = new Set([...keep].map(ruleTag));
    const doomed = (await tableRules(network)).filter((r) => r.comment !== undefined && !keepTags.has(r.comment));
    if (doomed.length) await nftApply(nftDeleteScript(network, doomed));
    removed += doomed.length;
  }
  for (const family of [4, 6] as const) {
    if (!iptablesInstalled(family)) continue;
    const existing = await iptablesSaveNat(family);
    if (!existing) continue;
    const lines = iptablesRemoveLines(iptablesStaleChains(network, keep, existing), existing);
    await iptablesRestoreNat(family, lines.map(iptablesLine));
    removed += lines.length;
  }
  return removed;
}

export function backendAvailable(backend: PortmapSettings["backend"]): boolean {
  return backend === "nftables" ? nftInstalled() : iptablesInstalled(4);
}
