import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { accessSync, constants } from "node:fs";
import { formatCidr, formatIp, networkOf, parseCidr } from "../cni/ip.js";
import type { Netns } from "./netns.js";

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
const SEARCH_PATH = ["/usr/sbin", "/sbin", "/usr/bin", "/bin", "/usr/local/sbin"];

function hash16(s: string): string {
  return createHash("sha256").update(s).digest("hex").slice(0, 16);
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

function findTool(name: string): string | undefined {
  const dirs = [...(process.env.PATH ?? "").split(":").filter(Boolean), ...SEARCH_PATH];
  for (const dir of dirs) {
    try {
      accessSync(`${dir}/${name}`, constants.X_OK);
      return `${dir}/${name}`;
    } catch {
      // next
    }
  }
  return undefined;
}

/** Where the tools run: the plugin's namespace, or (tests) another one the child is forked inside. */
export interface MasqContext {
  netns?: Netns;
}

let context: MasqContext = {};

function run(tool: string, args: string[], stdin?: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const spawn = () =>
      execFile(tool, args, { encoding: "utf8", timeout: 30_000, maxBuffer: 64 << 20 }, (err, stdout, stderr) => {
        if (err) {
          reject(Object.assign(new Error(`${tool} ${args.join(" ")}: ${(stderr || err.message).trim()}`), { stderr }));
        } else {
          resolve(stdout);
        }
      });
    // The child is forked synchronously by the calling thread and keeps its namespace.
    const child = context.netns ? context.netns.run(spawn) : spawn();
    child.stdin?.end(stdin ?? "");
  });
}

async function within<T>(ctx: MasqContext | undefined, fn: () => Promise<T>): Promise<T> {
  const saved = context;
  context = ctx ?? {};
  try {
    return await fn();
  } finally {
    context = saved;
  }
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

interface NftRule {
  handle: number;
  comment?: string;
}

async function nftRules(nft: string): Promise<NftRule[]> {
  let out: string;
  try {
    out = await run(nft, ["-j", "list", "chain", "inet", TABLE, CHAIN]);
  } catch (err) {
    if (/No such file or directory|does not exist/i.test((err as Error).message)) return [];
    throw err;
  }
  const parsed = JSON.parse(out) as { nftables?: Array<{ rule?: { handle?: unknown; comment?: unknown } }> };
  const rules: NftRule[] = [];
  for (const item of parsed.nftables ?? []) {
    const r = item.rule;
    if (!r || typeof r.handle !== "number") continue;
    rules.push({ handle: r.handle, comment: typeof r.comment === "string" ? r.comment : undefined });
  }
  return rules;
}

/** Deletes the rules whose comment the predicate selects; a race with another DEL is retried. */
async function nftDeleteWhere(select: (comment: string) => boolean): Promise<number> {
  const nft = findTool("nft");
  if (!nft) return 0;
  for (let attempt = 1; ; attempt++) {
    const doomed = (await nftRules(nft)).filter((r) => r.comment !== undefined && select(r.comment));
    if (doomed.length === 0) return 0;
    const script = doomed.map((r) => `delete rule inet ${TABLE} ${CHAIN} handle ${r.handle}`).join("\n");
    try {
      await run(nft, ["-f", "-"], `${script}\n`);
      return doomed.length;
    } catch (err) {
      if (attempt >= 3) throw err;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// iptables, in the reference plugin's layout (pkg/ip/ipmasq_iptables_linux.go)

export function iptablesChain(a: Pick<MasqAttachment, "network" | "containerId">): string {
  return `CNI-${createHash("sha512").update(a.network + a.containerId).digest("hex").slice(0, 24)}`;
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
export function addMasquerade(a: MasqAttachment, addresses: readonly string[], backend: MasqBackend, ctx?: MasqContext): Promise<void> {
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
export function removeMasquerade(a: MasqAttachment, backends: readonly MasqBackend[] = ["nftables", "iptables"], ctx?: MasqContext): Promise<number> {
  return within(ctx, async () => {
    let removed = 0;
    const key = attachmentKey(a);
    if (backends.includes("nftables")) removed += await nftDeleteWhere((c) => c.startsWith(key));
    if (backends.includes("iptables")) removed += await iptablesRemove(a);
    return removed;
  });
}

/** GC: removes the nftables rules of this network whose attachment is not in keep. */
export function gcMasquerade(network: string, keep: readonly { containerId: string; ifName: string }[], ctx?: MasqContext): Promise<number> {
  const prefix = networkKey(network);
  const kept = new Set(keep.map((k) => attachmentKey({ network, ...k })));
  return within(ctx, () => nftDeleteWhere((c) => c.startsWith(prefix) && !kept.has(c.slice(0, prefix.length + 16))));
}

/** The comments of this network's nftables rules (for CHECK and tests). */
export function listMasquerade(network: string, ctx?: MasqContext): Promise<string[]> {
  return within(ctx, async () => {
    const nft = findTool("nft");
    if (!nft) return [];
    const prefix = networkKey(network);
    return (await nftRules(nft)).map((r) => r.comment ?? "").filter((c) => c.startsWith(prefix));
  });
}
