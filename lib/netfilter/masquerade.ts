import { sha256Hex, sha512Hex } from "../node/hashes.js";
import { formatCidr, formatIp, networkOf, parseCidr } from "../ip/ip.js";
import {
  defaultBackend,
  iptablesCollectChains,
  iptablesInstalled,
  iptablesLine,
  iptablesRemoveChains,
  iptablesRestoreNat,
  iptablesSaveNat,
  nftApply,
  nftDeleteRules,
  nftFindRules,
  nftInstalled,
  nftListTable,
  valueAfter,
  type IptablesFamily,
  type NatTable,
  type NetfilterBackend,
  type NftRuleScope,
} from "./netfilter.js";
import { within, type NftContext } from "./nft.js";

/**
 * Source NAT for pod traffic leaving its subnet (the bridge's ipMasq), in the Go plugins' own
 * layouts, so that either implementation removes what the other made:
 *
 * iptables (pkg/ip/ipmasq_iptables_linux.go): chain CNI-<sha512(network+containerID)[:24]> in the
 * nat table, jumped to from POSTROUTING by `-s <pod ip>`; it ACCEPTs the pod's subnet and
 * MASQUERADEs the rest but multicast. Every rule carries the comment `name: "<net>" id: "<cid>"`.
 *
 * nftables (pkg/ip/ipmasq_nftables_linux.go, v1.6+): table inet cni_plugins_masquerade, chain
 * postrouting (nat, srcnat) returning multicast and going to masq_checks, which holds one rule per
 * pod address with the comment "<hash16(net)>-<hash16(ifname:cid)>, net: …, if: …, id: …".
 *
 * Removal tries both layouts (and the table of weft releases before them), needs no addresses, and
 * runs no tool when there is nothing to remove.
 */

export interface MasqAttachment {
  network: string;
  containerId: string;
  ifName: string;
}

export type MasqBackend = NetfilterBackend;

const TABLE = "cni_plugins_masquerade";
const CHECKS = "masq_checks";
const POSTROUTING = "postrouting";
const TABLE_COMMENT = "Masquerading for plugins from github.com/containernetworking/plugins";
const CHECKS_COMMENT = "Masquerade traffic from certain IPs to any (non-multicast) IP outside their subnet";
/** knftables.CommentLengthMax. */
const NFT_COMMENT_MAX = 128;
const SCOPE: NftRuleScope = { family: "inet", table: TABLE, chains: [CHECKS] };

/** The table of weft releases that predate the Go layout; still cleaned up on DEL and GC. */
const OLD_SCOPE: NftRuleScope = { family: "inet", table: "weft_masquerade", chains: ["postrouting"] };
const oldHash16 = (s: string) => sha256Hex(s).slice(0, 16);
const oldAttachmentKey = (a: MasqAttachment) => `weft ${oldHash16(a.network)}-${oldHash16(`${a.ifName}:${a.containerId}`)}`;

/** utils.MustFormatHashWithPrefix(16, "", s). */
function hash16(s: string): string {
  return sha512Hex(s).slice(0, 16);
}

/** The comment prefix of a network's nftables rules. */
export function networkKey(network: string): string {
  return hash16(network);
}

/** The comment prefix of one attachment's nftables rules. */
export function attachmentKey(a: MasqAttachment): string {
  return `${networkKey(a.network)}-${hash16(`${a.ifName}:${a.containerId}`)}`;
}

function nftComment(a: MasqAttachment): string {
  const strip = (s: string) => s.replace(/"/g, "");
  const text = `${attachmentKey(a)}, net: ${strip(a.network)}, if: ${strip(a.ifName)}, id: ${strip(a.containerId)}`;
  return text.length > NFT_COMMENT_MAX ? text.slice(0, NFT_COMMENT_MAX) : text;
}

/** The backend to use: the one asked for, else the reference's automatic choice. */
export function chooseBackend(requested?: MasqBackend): MasqBackend {
  return requested ?? defaultBackend();
}

interface MasqTarget {
  /** Pod address, without prefix. */
  ip: string;
  family: IptablesFamily;
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
const IPX = { 4: "ip", 6: "ip6" } as const;

/**
 * The nft script of an ADD (pure, for tests): the Go plugin's transaction, which rebuilds the
 * postrouting chain, replaces the attachment's stale rules (by handle) and adds one rule per address.
 */
export function nftAddScript(a: MasqAttachment, addresses: readonly string[], staleHandles: readonly number[] = []): string {
  const comment = nftComment(a);
  const lines = [
    `add table inet ${TABLE} { comment "${TABLE_COMMENT}" ; }`,
    `add chain inet ${TABLE} ${CHECKS} { comment "${CHECKS_COMMENT}" ; }`,
    `add chain inet ${TABLE} ${POSTROUTING} { type nat hook postrouting priority srcnat ; }`,
    `flush chain inet ${TABLE} ${POSTROUTING}`,
    `add rule inet ${TABLE} ${POSTROUTING} ip daddr == ${MULTICAST[4]} return`,
    `add rule inet ${TABLE} ${POSTROUTING} ip6 daddr == ${MULTICAST[6]} return`,
    `add rule inet ${TABLE} ${POSTROUTING} goto ${CHECKS}`,
    ...staleHandles.map((h) => `delete rule inet ${TABLE} ${CHECKS} handle ${h}`),
  ];
  for (const t of targetsOf(addresses)) {
    const ipx = IPX[t.family];
    lines.push(`add rule inet ${TABLE} ${CHECKS} ${ipx} saddr == ${t.ip} ${ipx} daddr != ${t.subnet} masquerade comment "${comment}"`);
  }
  return `${lines.join("\n")}\n`;
}

// ---------------------------------------------------------------------------------------------
// iptables

export function iptablesChain(a: Pick<MasqAttachment, "network" | "containerId">): string {
  return `CNI-${sha512Hex(a.network + a.containerId).slice(0, 24)}`;
}

function iptablesComment(a: Pick<MasqAttachment, "network" | "containerId">): string {
  return `name: "${a.network}" id: "${a.containerId}"`;
}

/** The rules of the attachment's chain and its POSTROUTING jump for one address, as iptables-save prints them. */
function iptablesRules(a: MasqAttachment, t: MasqTarget): { chain: string[][]; jump: string[] } {
  const comment = ["-m", "comment", "--comment", iptablesComment(a)];
  const host = `${t.ip}/${t.family === 4 ? 32 : 128}`;
  return {
    chain: [
      ["-d", t.subnet, ...comment, "-j", "ACCEPT"],
      ["!", "-d", MULTICAST[t.family], ...comment, "-j", "MASQUERADE"],
    ],
    jump: ["-s", host, ...comment, "-j", iptablesChain(a)],
  };
}

const sameRule = (x: readonly string[], y: readonly string[]) => x.length === y.length && x.every((v, i) => v === y[i]);

/** The restore lines of an ADD for one family, given the nat table as it is (pure, for tests): only what is missing. */
export function iptablesAddLines(a: MasqAttachment, targets: readonly MasqTarget[], existing: NatTable): string[][] {
  const chain = iptablesChain(a);
  const lines: string[][] = [];
  if (!existing.chains.has(chain)) lines.push([`:${chain}`, "-", "[0:0]"]);
  const inChain = [...(existing.rules.get(chain) ?? [])];
  const inPostrouting = existing.rules.get("POSTROUTING") ?? [];
  for (const t of targets) {
    const rules = iptablesRules(a, t);
    for (const rule of rules.chain) {
      if (inChain.some((r) => sameRule(r, rule))) continue;
      inChain.push(rule);
      lines.push(["-A", chain, ...rule]);
    }
    if (!inPostrouting.some((r) => sameRule(r, rules.jump))) lines.push(["-A", "POSTROUTING", ...rules.jump]);
  }
  return lines;
}

async function natTable(family: IptablesFamily): Promise<NatTable> {
  const table = await iptablesSaveNat(family);
  if (!table) throw new Error(`ipMasq: ${family === 4 ? "iptables" : "ip6tables"} is not usable on this node`);
  return table;
}

async function iptablesAdd(a: MasqAttachment, targets: readonly MasqTarget[]): Promise<void> {
  for (const family of [4, 6] as const) {
    const mine = targets.filter((t) => t.family === family);
    if (mine.length === 0) continue;
    if (!iptablesInstalled(family)) throw new Error(`ipMasq: ${family === 4 ? "iptables" : "ip6tables"} is not installed`);
    await iptablesRestoreNat(family, iptablesAddLines(a, mine, await natTable(family)).map(iptablesLine));
  }
}

/** GC: the masquerade chains of this network whose container is not among those to keep (pure). */
export function iptablesStaleChains(network: string, keep: ReadonlySet<string>, existing: NatTable): string[] {
  const prefix = `name: "${network}" id: "`;
  const stale = new Set<string>();
  for (const rule of existing.rules.get("POSTROUTING") ?? []) {
    const comment = valueAfter(rule, "--comment");
    const target = valueAfter(rule, "-j", "--jump");
    if (!comment?.startsWith(prefix) || !comment.endsWith('"') || !target?.startsWith("CNI-")) continue;
    const containerId = comment.slice(prefix.length, -1);
    if (!keep.has(containerId) && target === iptablesChain({ network, containerId })) stale.add(target);
  }
  return [...stale];
}

// ---------------------------------------------------------------------------------------------

/** One way of masquerading pods: iptables or nftables, in every layout it has had. */
interface MasqueradeBackend {
  add(a: MasqAttachment, targets: readonly MasqTarget[], addresses: readonly string[]): Promise<void>;
  /** Every rule of the attachment; how many rules or restore lines went. */
  remove(a: MasqAttachment): Promise<number>;
  /** This network's rules of attachments not in keep; how many went. */
  collect(network: string, keep: readonly { containerId: string; ifName: string }[]): Promise<number>;
  /** What is missing of the attachment's rules (empty when all are there). */
  missing(a: MasqAttachment, targets: readonly MasqTarget[]): Promise<string[]>;
}

const iptables: MasqueradeBackend = {
  add: (a, targets) => iptablesAdd(a, targets),
  async remove(a) {
    const chains = [iptablesChain(a)];
    const removed = await Promise.all([iptablesRemoveChains(4, chains), iptablesRemoveChains(6, chains)]);
    return removed[0] + removed[1];
  },
  async collect(network, keep) {
    const keepIds = new Set(keep.map((k) => k.containerId));
    let removed = 0;
    for (const family of [4, 6] as const)
      removed += await iptablesCollectChains(family, (existing) => iptablesStaleChains(network, keepIds, existing));
    return removed;
  },
  async missing(a, targets) {
    const missing: string[] = [];
    for (const family of [4, 6] as const) {
      const mine = targets.filter((t) => t.family === family);
      if (mine.length === 0) continue;
      const lines = iptablesAddLines(a, mine, await natTable(family));
      for (const line of lines)
        missing.push(line[0]!.startsWith(":") ? `iptables chain ${line[0]!.slice(1)}` : `iptables rule "${line.slice(1).join(" ")}"`);
    }
    return missing;
  },
};

const nftables: MasqueradeBackend = {
  async add(a, _targets, addresses) {
    if (!nftInstalled()) throw new Error("ipMasq: ipMasqBackend is nftables but the nft tool is not installed");
    const key = attachmentKey(a);
    const stale = await nftFindRules([SCOPE], (c) => c.startsWith(key));
    await nftApply(
      nftAddScript(
        a,
        addresses,
        stale.map((r) => r.handle),
      ),
    );
  },
  remove(a) {
    const key = attachmentKey(a);
    const oldKey = oldAttachmentKey(a);
    return nftDeleteRules([SCOPE, OLD_SCOPE], (c) => c.startsWith(key) || c.startsWith(oldKey));
  },
  collect(network, keep) {
    const prefix = `${networkKey(network)}-`;
    const kept = new Set(keep.map((k) => attachmentKey({ network, ...k })));
    const oldPrefix = `weft ${oldHash16(network)}-`;
    const oldKept = new Set(keep.map((k) => oldAttachmentKey({ network, ...k })));
    return nftDeleteRules(
      [SCOPE, OLD_SCOPE],
      (c) =>
        (c.startsWith(prefix) && !kept.has(c.slice(0, prefix.length + 16))) ||
        (c.startsWith(oldPrefix) && !oldKept.has(c.slice(0, oldPrefix.length + 16))),
    );
  },
  async missing(a, targets) {
    const key = attachmentKey(a);
    const found = (await nftFindRules([SCOPE], (c) => c.startsWith(key))).length;
    const missing =
      found < targets.length ? [`expected ${targets.length} masquerade rule(s) in nftables table inet ${TABLE} chain ${CHECKS}, found ${found}`] : [];
    const listed = await nftListTable("inet", TABLE);
    const leadsToChecks = listed?.rules.some((r) => r.chain === POSTROUTING && JSON.stringify(r.expr).includes(`"goto":{"target":"${CHECKS}"}`));
    if (!leadsToChecks) missing.push(`the goto ${CHECKS} in nftables table inet ${TABLE} chain ${POSTROUTING}`);
    return missing;
  },
};

const BACKENDS: Readonly<Record<MasqBackend, MasqueradeBackend>> = { nftables, iptables };

/** Adds masquerade rules for the pod's addresses (address/prefix, as in the result). */
export function addMasquerade(a: MasqAttachment, addresses: readonly string[], backend: MasqBackend, ctx?: NftContext): Promise<void> {
  return within(ctx, async () => {
    if (addresses.length === 0) return;
    await BACKENDS[backend].add(a, targetsOf(addresses), addresses);
  });
}

/**
 * Removes every masquerade rule of the attachment from both backends and every layout (the pod may
 * have been added by the Go plugin, by another backend, or by an older weft). Returns how many
 * rules or restore lines went.
 */
export function removeMasquerade(a: MasqAttachment, ctx?: NftContext): Promise<number> {
  return within(ctx, async () => {
    const removed = await Promise.all([BACKENDS.nftables.remove(a), BACKENDS.iptables.remove(a)]);
    return removed[0] + removed[1];
  });
}

/** GC: removes this network's masquerade rules, in both backends, of attachments not in keep. */
export function gcMasquerade(network: string, keep: readonly { containerId: string; ifName: string }[], ctx?: NftContext): Promise<number> {
  return within(ctx, async () => {
    const removed = await BACKENDS.nftables.collect(network, keep);
    return removed + (await BACKENDS.iptables.collect(network, keep));
  });
}

/** CHECK: what is missing of the attachment's masquerade rules in the backend ADD used (empty when all are there). */
export function missingMasquerade(a: MasqAttachment, addresses: readonly string[], backend: MasqBackend, ctx?: NftContext): Promise<string[]> {
  return within(ctx, () => BACKENDS[backend].missing(a, targetsOf(addresses)));
}

/** The nftables comments of this network's masquerade rules (for tests). */
export function listMasquerade(network: string, ctx?: NftContext): Promise<string[]> {
  return within(ctx, async () => {
    const prefix = `${networkKey(network)}-`;
    return (await nftFindRules([SCOPE], (c) => c.startsWith(prefix))).map((r) => r.comment!);
  });
}
