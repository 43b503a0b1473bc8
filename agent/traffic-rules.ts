import { formatCidr, networkOf, parseCidr } from "../lib/ip/ip.js";
import {
  iptablesHasRandomFully,
  iptablesInstalled,
  iptablesLine,
  iptablesRemoveLines,
  iptablesRestore,
  iptablesSave,
  nftAccepts,
  nftApply,
  nftInstalled,
  nftListTable,
  type IptablesTable,
  type NftListedTable,
  type SavedTable,
} from "../lib/netfilter/netfilter.js";
import { within, type NftContext } from "../lib/netfilter/nft.js";
import { FORWARD_CHAIN, forwardRules, masqueradeRules, missingRules, POSTROUTING_CHAIN, restoreLines, type FlannelRule } from "./masquerade.js";

/**
 * flanneld's traffic manager (pkg/trafficmngr): its masquerade and forward rules for one address
 * family, through iptables (FLANNEL-POSTRTG in nat, FLANNEL-FWD in filter) or nftables (the table
 * flannel-ipv4 or flannel-ipv6 with the chains postrtg and forward), in flanneld's words so that
 * either program finds and removes what the other made.
 */

export interface TrafficRulesSpec {
  family: 4 | 6;
  /** The cluster network (FLANNEL_NETWORK). */
  network: string;
  /** This node's lease (FLANNEL_SUBNET); a host address in it is taken as its network. */
  podSubnet: string;
  /** --ip-masq */
  masquerade: boolean;
  /** --iptables-forward-rules */
  forward: boolean;
}

export interface TrafficRules {
  /** Makes the rules exactly as flanneld writes them; atomic per table (one iptables-restore --noflush / one nft script), never half-made. */
  apply(spec: TrafficRulesSpec): Promise<void>;
  /** Descriptions of rules that are missing or wrong now (empty when all is in place): the resync calls apply when non-empty. */
  missing(spec: TrafficRulesSpec): Promise<string[]>;
  /** Removes everything the agent made (chains, jumps, nft tables), leaving every other rule alone; returns how many rules/chains were removed. */
  cleanup(family: 4 | 6): Promise<number>;
}

function networkCidr(value: string, what: string, family: 4 | 6): string {
  const cidr = parseCidr(value);
  if (!cidr || cidr.ip.family !== family) throw new Error(`${what} ${JSON.stringify(value)} is not an IPv${family} CIDR`);
  return formatCidr(networkOf(cidr));
}

/** The spec's prefixes as the kernel lists them: network addresses, canonical text. */
function prefixes(spec: TrafficRulesSpec): { network: string; pods: string } {
  return { network: networkCidr(spec.network, "network", spec.family), pods: networkCidr(spec.podSubnet, "pod subnet", spec.family) };
}

const key = (rule: readonly string[]) => rule.join("\0");

/** Runs fn with the tools in ctx's namespace; without ctx, wherever the caller has them run. */
function inNamespace<T>(ctx: NftContext | undefined, fn: () => Promise<T>): Promise<T> {
  return ctx ? within(ctx, fn) : fn();
}

// ---------------------------------------------------------------------------------------------
// iptables

/** One of the agent's chains in one table, with the rules it should hold (none: it should not exist). */
export interface IptablesChainWant {
  table: IptablesTable;
  chain: string;
  rules: FlannelRule[];
}

/** The agent's two iptables chains for a spec (pure). */
export function iptablesWants(spec: TrafficRulesSpec, randomFully: boolean): IptablesChainWant[] {
  const { network, pods } = prefixes(spec);
  return [
    { table: "nat", chain: POSTROUTING_CHAIN, rules: spec.masquerade ? masqueradeRules(network, pods, { family: spec.family, randomFully }) : [] },
    { table: "filter", chain: FORWARD_CHAIN, rules: spec.forward ? forwardRules(network) : [] },
  ];
}

/** The iptables-restore --noflush lines that make one table hold what want says (pure). */
export function iptablesApplyLines(want: IptablesChainWant, existing: SavedTable): string[][] {
  return want.rules.length > 0 ? restoreLines(want.rules, existing) : iptablesRemoveLines([want.chain], existing);
}

/** What differs between one table and what want says, described (pure). */
export function iptablesProblems(want: IptablesChainWant, existing: SavedTable): string[] {
  if (want.rules.length === 0) {
    return existing.chains.has(want.chain) ? [`-t ${want.table} chain ${want.chain} exists but is not wanted`] : [];
  }
  const problems = missingRules(want.rules, existing);
  const expected = want.rules.filter((r) => r.chain === want.chain).map((r) => r.rule);
  const held = existing.rules.get(want.chain) ?? [];
  const expectedKeys = new Set(expected.map(key));
  for (const rule of held) {
    if (!expectedKeys.has(key(rule))) problems.push(`-t ${want.table} -A ${want.chain} ${rule.join(" ")} is not flanneld's`);
  }
  if (problems.length === 0 && held.map(key).join("\n") !== expected.map(key).join("\n")) {
    problems.push(`-t ${want.table} chain ${want.chain} does not hold flanneld's rules in flanneld's order`);
  }
  return problems;
}

async function savedTable(family: 4 | 6, table: IptablesTable): Promise<SavedTable> {
  const saved = await iptablesSave(family, table);
  if (!saved) throw new Error(`${family === 4 ? "iptables" : "ip6tables"} cannot read table ${table} on this node`);
  return saved;
}

async function iptablesSpecWants(spec: TrafficRulesSpec): Promise<IptablesChainWant[]> {
  return iptablesWants(spec, spec.masquerade && (await iptablesHasRandomFully(spec.family)));
}

/** flanneld's rules through iptables-restore; ctx: the namespace the tools run in (tests). */
export function iptablesTrafficRules(ctx?: NftContext): TrafficRules {
  return {
    apply: (spec) =>
      inNamespace(ctx, async () => {
        for (const want of await iptablesSpecWants(spec)) {
          const lines = iptablesApplyLines(want, await savedTable(spec.family, want.table));
          await iptablesRestore(spec.family, want.table, lines.map(iptablesLine));
        }
      }),
    missing: (spec) =>
      inNamespace(ctx, async () => {
        const problems: string[] = [];
        for (const want of await iptablesSpecWants(spec)) problems.push(...iptablesProblems(want, await savedTable(spec.family, want.table)));
        return problems;
      }),
    cleanup: (family) =>
      inNamespace(ctx, async () => {
        if (!iptablesInstalled(family)) return 0;
        let removed = 0;
        for (const [table, chain] of [
          ["nat", POSTROUTING_CHAIN],
          ["filter", FORWARD_CHAIN],
        ] as const) {
          const existing = await iptablesSave(family, table);
          if (!existing?.chains.has(chain)) continue;
          const lines = iptablesRemoveLines([chain], existing);
          await iptablesRestore(family, table, lines.map(iptablesLine));
          // The jumps deleted, the chain's rules, the chain.
          removed += lines.filter((l) => l[0] === "-D").length + (existing.rules.get(chain)?.length ?? 0) + 1;
        }
        return removed;
      }),
  };
}

// ---------------------------------------------------------------------------------------------
// nftables

const NFT = {
  4: { family: "ip", table: "flannel-ipv4", multicast: "224.0.0.0/4" },
  6: { family: "ip6", table: "flannel-ipv6", multicast: "ff00::/8" },
} as const;

/** One of flanneld's base chains, with its rules in nft's syntax. */
export interface NftChainWant {
  name: "postrtg" | "forward";
  type: "nat" | "filter";
  hook: "postrouting" | "forward";
  /** The priority's name in the script, and its number as nft lists it (ip and ip6 families). */
  priority: "srcnat" | "filter";
  prio: number;
  comment: string;
  rules: string[];
}

/** The chains of flanneld's table for a spec (pure); rules as flanneld's knftables calls write them. */
export function nftWants(spec: TrafficRulesSpec, randomFully: boolean): NftChainWant[] {
  const { network, pods } = prefixes(spec);
  const f = NFT[spec.family].family;
  const masquerade = randomFully ? "masquerade fully-random" : "masquerade";
  const chains: NftChainWant[] = [];
  if (spec.masquerade) {
    chains.push({
      name: "postrtg",
      type: "nat",
      hook: "postrouting",
      priority: "srcnat",
      prio: 100,
      comment: "chain to manage traffic masquerading by flannel",
      // flanneld's nftables rules differ from its iptables ones in two places, kept as it writes
      // them: kube-proxy's mark is matched whole (no mask), and the fourth rule excludes traffic
      // not from this node's pods (iptables: not from the cluster).
      rules: [
        "meta mark 0x4000 return",
        `${f} saddr ${pods} ${f} daddr ${network} return`,
        `${f} saddr ${network} ${f} daddr ${pods} return`,
        `${f} saddr != ${pods} ${f} daddr ${network} return`,
        `${f} saddr ${network} ${f} daddr != ${NFT[spec.family].multicast} ${masquerade}`,
        `${f} saddr != ${network} ${f} daddr ${network} ${masquerade}`,
      ],
    });
  }
  if (spec.forward) {
    chains.push({
      name: "forward",
      type: "filter",
      hook: "forward",
      priority: "filter",
      prio: 0,
      comment: "chain to accept flannel traffic",
      rules: [`${f} saddr ${network} accept`, `${f} daddr ${network} accept`],
    });
  }
  return chains;
}

/**
 * The one nft script that makes the family's table hold exactly `chains`: the table is created
 * (so that deleting it cannot fail), deleted and made again in the same transaction, so nothing
 * of an earlier content survives and the kernel never shows half of it.
 */
export function nftScript(family: 4 | 6, chains: readonly NftChainWant[], comments: boolean): string {
  const where = `${NFT[family].family} ${NFT[family].table}`;
  const comment = (text: string) => (comments ? ` comment "${text}" ;` : "");
  const lines = [`add table ${where}`, `delete table ${where}`, `add table ${where} {${comment(`rules for ${NFT[family].table}`)} }`];
  for (const c of chains) {
    lines.push(`add chain ${where} ${c.name} { type ${c.type} hook ${c.hook} priority ${c.priority} ;${comment(c.comment)} }`);
    for (const rule of c.rules) lines.push(`add rule ${where} ${c.name} ${rule}`);
  }
  return `${lines.join("\n")}\n`;
}

type Json = Record<string, unknown>;
const isObject = (v: unknown): v is Json => typeof v === "object" && v !== null && !Array.isArray(v);

function nftValue(right: unknown, left: string): string {
  if (typeof right === "number") return left === "meta mark" ? `0x${right.toString(16)}` : String(right);
  // A prefix as long as the address is listed as the bare address.
  if (typeof right === "string") return left.endsWith("addr") ? `${right}/${right.includes(":") ? 128 : 32}` : right;
  const prefix = isObject(right) ? right.prefix : undefined;
  if (isObject(prefix)) return `${String(prefix.addr)}/${String(prefix.len)}`;
  return JSON.stringify(right);
}

function nftStatement(e: unknown): string {
  if (!isObject(e)) return JSON.stringify(e);
  const match = e.match;
  if (isObject(match)) {
    const payload = isObject(match.left) ? match.left.payload : undefined;
    const meta = isObject(match.left) ? match.left.meta : undefined;
    let left: string | undefined;
    if (isObject(payload)) left = `${String(payload.protocol)} ${String(payload.field)}`;
    else if (isObject(meta)) left = `meta ${String(meta.key)}`;
    if (left) return `${left} ${match.op === "==" ? "" : `${String(match.op)} `}${nftValue(match.right, left)}`;
  }
  if ("return" in e) return "return";
  if ("accept" in e) return "accept";
  if ("masquerade" in e) {
    const flags = isObject(e.masquerade) ? e.masquerade.flags : undefined;
    const list = (Array.isArray(flags) ? flags : [flags]).filter((f): f is string => typeof f === "string");
    return ["masquerade", ...list].join(" ");
  }
  return JSON.stringify(e);
}

/** A listed rule's expressions (nft -j) in the syntax nftWants writes; anything else as JSON, which never matches (pure). */
export function nftRuleText(expr: readonly unknown[]): string {
  return expr.map(nftStatement).join(" ");
}

/** What differs between the family's table as listed and `chains`, described (pure). */
export function nftProblems(family: 4 | 6, chains: readonly NftChainWant[], listed: NftListedTable | undefined): string[] {
  const where = `${NFT[family].family} ${NFT[family].table}`;
  if (!listed) return chains.length > 0 ? [`nftables table ${where} is missing`] : [];
  const problems: string[] = [];
  for (const c of chains) {
    const base = listed.baseChains.get(c.name);
    if (!listed.chains.has(c.name)) {
      problems.push(`chain ${where} ${c.name} is missing`);
      continue;
    }
    if (base?.type !== c.type || base.hook !== c.hook || base.prio !== c.prio) {
      problems.push(`chain ${where} ${c.name} is not type ${c.type} hook ${c.hook} priority ${c.priority} (${c.prio})`);
    }
    const held = listed.rules.filter((r) => r.chain === c.name).map((r) => nftRuleText(r.expr));
    const found = problems.length;
    for (const rule of c.rules) if (!held.includes(rule)) problems.push(`rule ${where} ${c.name} ${rule} is missing`);
    for (const rule of held) if (!c.rules.includes(rule)) problems.push(`rule ${where} ${c.name} ${rule} is not flanneld's`);
    if (problems.length === found && held.join("\n") !== c.rules.join("\n")) {
      problems.push(`chain ${where} ${c.name} does not hold flanneld's rules in flanneld's order`);
    }
  }
  for (const name of listed.chains) {
    if (!chains.some((c) => c.name === name)) problems.push(`chain ${where} ${name} exists but is not wanted`);
  }
  return problems;
}

const probes = new Map<string, Promise<boolean>>();

/** Asks the kernel once per process whether it takes a script (as knftables and flanneld probe features). */
function nftSupports(feature: string, script: string): Promise<boolean> {
  let answer = probes.get(feature);
  if (!answer) {
    answer = nftAccepts(script);
    probes.set(feature, answer);
  }
  return answer;
}

const PROBE_TABLE = "add table ip weft-probe";
const PROBE_CHAIN = "add chain ip weft-probe probe { type nat hook postrouting priority srcnat ; }";

function nftRandomFully(): Promise<boolean> {
  return nftSupports("fully-random", `${PROBE_TABLE}\n${PROBE_CHAIN}\nadd rule ip weft-probe probe ip saddr != 127.0.0.1 masquerade fully-random\n`);
}

function nftComments(): Promise<boolean> {
  return nftSupports("comments", `add table ip weft-probe { comment "probe" ; }\n`);
}

async function nftSpecWants(spec: TrafficRulesSpec): Promise<NftChainWant[]> {
  return nftWants(spec, spec.masquerade && (await nftRandomFully()));
}

/** flanneld's rules through nft (its EnableNFTables); ctx: the namespace the tools run in (tests). */
export function nftablesTrafficRules(ctx?: NftContext): TrafficRules {
  return {
    apply: (spec) =>
      inNamespace(ctx, async () => {
        await nftApply(nftScript(spec.family, await nftSpecWants(spec), await nftComments()));
      }),
    missing: (spec) =>
      inNamespace(ctx, async () => {
        return nftProblems(spec.family, await nftSpecWants(spec), await nftListTable(NFT[spec.family].family, NFT[spec.family].table));
      }),
    cleanup: (family) =>
      inNamespace(ctx, async () => {
        if (!nftInstalled()) return 0;
        const { family: f, table } = NFT[family];
        const listed = await nftListTable(f, table);
        if (!listed) return 0;
        try {
          await nftApply(`delete table ${f} ${table}\n`);
        } catch (err) {
          // Gone meanwhile (another cleanup): nothing of ours is left either way.
          if (/No such file or directory/i.test((err as Error).message)) return 0;
          throw err;
        }
        return listed.rules.length + listed.chains.size + 1;
      }),
  };
}
