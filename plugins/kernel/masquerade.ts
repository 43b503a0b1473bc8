import { sha256Hex, sha512Hex } from "../cni/builtins.js";
import { formatCidr, formatIp, networkOf, parseCidr } from "../cni/ip.js";
import { findTool, nftDeleteWhere, nftRules, run, within, type NftContext } from "./nft.js";

/**
 * Source NAT for pod traffic leaving its subnet (the bridge's ipMasq), per attachment, so that DEL
 * and GC remove exactly the rules of one (network, containerID, ifname) and need no addresses:
 * the netns, and with it the pod's addresses, may already be gone.
 *
 * nftables (preferred): table inet weft_masquerade, chain postrouting (nat, srcnat), one rule per
 * pod address, each with the comment "weft <hash16(network)>-<hash16(ifname:containerID)> net: ...".
 * Each ADD is one `nft -f -` transaction.
 *
 * iptables (when nft is absent, or asked for): the reference plugin's layout, chain
 * CNI-<sha512(network+containerID)[:24]> jumped to from POSTROUTING, so weft also removes rules the
 * reference bridge made before an upgrade.
 */

export interface MasqAttachment {
  network: string;
  containerId: string;
  ifName: string;
}

export type MasqBackend = "nftables" | "iptables";

const TABLE = "weft_masquerade";
const CHAIN = "postrouting";
const NFT_COMMENT_MAX = 127;
const WHERE = { family: "inet", table: TABLE, chain: CHAIN } as const;

function hash16(s: string): string {
  return sha256Hex(s).slice(0, 16);
}

export function networkKey(network: string): string {
  return `weft ${hash16(network)}-`;
}

export function attachmentKey(a: MasqAttachment): string {
  return `${networkKey(a.network)}${hash16(`${a.ifName}:${a.containerId}`)}`;
}

function nftComment(a: MasqAttachment): string {
  const text = `${attachmentKey(a)} net: ${a.network} if: ${a.ifName} id: ${a.containerId}`.replace(/"/g, "");
  return text.length > NFT_COMMENT_MAX ? text.slice(0, NFT_COMMENT_MAX) : text;
}

/** The backend to use: the one asked for, else nftables where the nft tool exists, else iptables. */
export function chooseBackend(requested?: MasqBackend): MasqBackend {
  if (requested) return requested;
  return findTool("nft") ? "nftables" : "iptables";
}

interface MasqTarget {
  /** Pod address, without prefix. */
  ip: string;
  family: 4 | 6;
  /** The pod's subnet: traffic to it is not masqueraded. */
  subnet: string;
}

function targetsOf(addresses: readonly string[]): MasqTarget[] {
  return addresses.map((cidr) => {
    const parsed = parseCidr(cidr);
    if (!parsed) throw new Error(`invalid address ${JSON.stringify(cidr)}`);
    return { ip: formatIp(parsed.ip), family: parsed.ip.family, subnet: formatCidr(networkOf(parsed)) };
  });
}

const MULTICAST = { 4: "224.0.0.0/4", 6: "ff00::/8" } as const;

/** The nft script that adds the rules of one attachment (pure, for tests). */
export function nftAddScript(a: MasqAttachment, addresses: readonly string[]): string {
  const comment = nftComment(a);
  const lines = [
    `add table inet ${TABLE}`,
    `add chain inet ${TABLE} ${CHAIN} { type nat hook postrouting priority srcnat; policy accept; }`,
  ];
  for (const t of targetsOf(addresses)) {
    const ipf = t.family === 4 ? "ip" : "ip6";
    lines.push(
      `add rule inet ${TABLE} ${CHAIN} ${ipf} saddr ${t.ip} ${ipf} daddr != ${t.subnet} ${ipf} daddr != ${MULTICAST[t.family]} masquerade comment "${comment}"`,
    );
  }
  return `${lines.join("\n")}\n`;
}

// ---------------------------------------------------------------------------------------------
// iptables, in the reference plugin's layout (pkg/ip/ipmasq_iptables_linux.go)

export function iptablesChain(a: Pick<MasqAttachment, "network" | "containerId">): string {
  return `CNI-${sha512Hex(a.network + a.containerId).slice(0, 24)}`;
}

function iptablesComment(a: MasqAttachment): string {
  return `name: "${a.network}" id: "${a.containerId}"`;
}

async function iptablesAdd(a: MasqAttachment, addresses: readonly string[]): Promise<void> {
  const chain = iptablesChain(a);
  const comment = iptablesComment(a);
  for (const t of targetsOf(addresses)) {
    const tool = findTool(t.family === 4 ? "iptables" : "ip6tables");
    if (!tool) throw new Error(`ipMasq: neither nft nor ${t.family === 4 ? "iptables" : "ip6tables"} is installed`);
    const ipt = (...args: string[]) => run(tool, ["-w", "-t", "nat", ...args]);
    await ipt("-N", chain).catch((err: Error) => {
      if (!/exists/i.test(err.message)) throw err;
    });
    await ipt("-A", chain, "-d", t.subnet, "-m", "comment", "--comment", comment, "-j", "ACCEPT");
    await ipt("-A", chain, "!", "-d", MULTICAST[t.family], "-m", "comment", "--comment", comment, "-j", "MASQUERADE");
    await ipt("-A", "POSTROUTING", "-s", t.ip, "-m", "comment", "--comment", comment, "-j", chain);
  }
}

/** Splits an iptables -S line into arguments, honouring double quotes. */
function splitRule(line: string): string[] {
  const out: string[] = [];
  const re = /"((?:[^"\\]|\\.)*)"|(\S+)/g;
  for (let m = re.exec(line); m; m = re.exec(line)) out.push(m[1] !== undefined ? m[1].replace(/\\(.)/g, "$1") : m[2]!);
  return out;
}

async function iptablesRemove(a: Pick<MasqAttachment, "network" | "containerId">): Promise<number> {
  const chain = iptablesChain(a);
  let removed = 0;
  for (const name of ["iptables", "ip6tables"]) {
    const tool = findTool(name);
    if (!tool) continue;
    const ipt = (...args: string[]) => run(tool, ["-w", "-t", "nat", ...args]);
    let listing: string;
    try {
      listing = await ipt("-S", "POSTROUTING");
    } catch {
      continue;
    }
    for (const line of listing.split("\n")) {
      const args = splitRule(line);
      if (args[0] !== "-A" || !args.includes(chain)) continue;
      await ipt("-D", ...args.slice(1)).catch(() => undefined);
      removed++;
    }
    await ipt("-F", chain).catch(() => undefined);
    await ipt("-X", chain).catch(() => undefined);
  }
  return removed;
}

// ---------------------------------------------------------------------------------------------

/** Adds masquerade rules for the pod's addresses (address/prefix, as in the result). */
export function addMasquerade(a: MasqAttachment, addresses: readonly string[], backend: MasqBackend, ctx?: NftContext): Promise<void> {
  return within(ctx, () => addRules(a, addresses, backend));
}

async function addRules(a: MasqAttachment, addresses: readonly string[], backend: MasqBackend): Promise<void> {
  if (addresses.length === 0) return;
  if (backend === "nftables") {
    const nft = findTool("nft");
    if (!nft) throw new Error("ipMasq: ipMasqBackend is nftables but the nft tool is not installed");
    await run(nft, ["-f", "-"], nftAddScript(a, addresses));
  } else {
    await iptablesAdd(a, addresses);
  }
}

/**
 * Removes every masquerade rule of the attachment, from both backends (rules may predate a backend
 * change or an upgrade from the reference plugin). Returns how many rules went.
 */
export function removeMasquerade(a: MasqAttachment, backends: readonly MasqBackend[] = ["nftables", "iptables"], ctx?: NftContext): Promise<number> {
  return within(ctx, async () => {
    let removed = 0;
    const key = attachmentKey(a);
    if (backends.includes("nftables")) removed += await nftDeleteWhere(WHERE, (c) => c.startsWith(key));
    if (backends.includes("iptables")) removed += await iptablesRemove(a);
    return removed;
  });
}

/** GC: removes the nftables rules of this network whose attachment is not in keep. */
export function gcMasquerade(network: string, keep: readonly { containerId: string; ifName: string }[], ctx?: NftContext): Promise<number> {
  const prefix = networkKey(network);
  const kept = new Set(keep.map((k) => attachmentKey({ network, ...k })));
  return within(ctx, () => nftDeleteWhere(WHERE, (c) => c.startsWith(prefix) && !kept.has(c.slice(0, prefix.length + 16))));
}

/** The comments of this network's nftables rules (for CHECK and tests). */
export function listMasquerade(network: string, ctx?: NftContext): Promise<string[]> {
  return within(ctx, async () => {
    const nft = findTool("nft");
    if (!nft) return [];
    const prefix = networkKey(network);
    return (await nftRules(nft, WHERE)).map((r) => r.comment ?? "").filter((c) => c.startsWith(prefix));
  });
}
