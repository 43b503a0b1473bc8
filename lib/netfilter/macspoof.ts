import { sha256Hex } from "../node/hashes.js";
import { findTool, nftDeleteWhere, nftRules, run, within, type NftContext } from "./nft.js";

/**
 * MAC spoof check (the bridge's macspoofchk): frames entering the bridge from the pod's host veth
 * with a source MAC other than the pod's are dropped. One rule per attachment in the bridge-family
 * table weft_macspoof, tagged with the attachment so DEL removes exactly it.
 */

const WHERE = { family: "bridge", table: "weft_macspoof", chain: "prerouting" } as const;

export function macspoofKey(containerId: string, ifName: string): string {
  return `weft ${sha256Hex(`${ifName}:${containerId}`).slice(0, 16)}`;
}

export function macspoofScript(hostVeth: string, mac: string, key: string): string {
  return [
    `add table bridge ${WHERE.table}`,
    `add chain bridge ${WHERE.table} ${WHERE.chain} { type filter hook prerouting priority -300; policy accept; }`,
    `add rule bridge ${WHERE.table} ${WHERE.chain} iifname "${hostVeth}" ether saddr != ${mac} drop comment "${key}"`,
    "",
  ].join("\n");
}

export function addMacSpoofCheck(hostVeth: string, mac: string, key: string, ctx?: NftContext): Promise<void> {
  return within(ctx, async () => {
    const nft = findTool("nft");
    if (!nft) throw new Error("macspoofchk needs nftables, and the nft tool is not installed");
    await run(nft, ["-f", "-"], macspoofScript(hostVeth, mac, key));
  });
}

export function removeMacSpoofCheck(key: string, ctx?: NftContext): Promise<number> {
  return within(ctx, () => nftDeleteWhere(WHERE, (c) => c === key));
}

export function hasMacSpoofCheck(key: string, ctx?: NftContext): Promise<boolean> {
  return within(ctx, async () => {
    const nft = findTool("nft");
    return nft ? (await nftRules(nft, WHERE)).some((r) => r.comment === key) : false;
  });
}
