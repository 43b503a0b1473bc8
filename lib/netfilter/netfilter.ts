import { isKernelError } from "../errors/kernel.js";
import type { Netns } from "../netns/netns.js";
import { readFileSync } from "node:fs";
import { currentNetns, findTool, run } from "./nft.js";
import { attr, cstring, decodeAttrs, encodeAttrs, NETLINK_NETFILTER, NLM_F_DUMP, readCString, requestOnce } from "../netlink/rtnl.js";

/**
 * Whole-table reads and one-transaction writes for nftables, and iptables-save / iptables-restore
 * for one table (nat, filter), over the shared runner in nft.ts (execFile with argument arrays, no shell).
 * Callers pass scripts built from validated values only; this file adds the transport and turns a
 * lock that stayed busy into NetfilterBusyError, which plugins report as "try again later".
 */

/** Another program held the xtables lock longer than we wait for it. */
export class NetfilterBusyError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "NetfilterBusyError";
  }
}

/** Seconds iptables waits for the xtables lock before giving up (the reference waits forever: plugins#561). */
export const XTABLES_WAIT_SECONDS = 10;

const BUSY = /Another app is currently holding the xtables lock|Stopped waiting after|Resource temporarily unavailable/i;

function rethrow(err: unknown): never {
  const message = (err as Error).message ?? String(err);
  if (BUSY.test(message)) throw new NetfilterBusyError(message);
  throw err;
}

// ---------------------------------------------------------------------------------------------
// nftables

export function nftInstalled(): boolean {
  return findTool("nft") !== undefined;
}

function nftTool(): string {
  const nft = findTool("nft");
  if (!nft) throw new Error("the nft tool is not installed");
  return nft;
}

/** One rule of a listed table: where it is, its handle, its comment and (parsed) its statements. */
export interface NftListedRule {
  chain: string;
  handle: number;
  comment?: string;
  /** nft's JSON form of the rule's expressions (libnftables-json(5)). */
  expr: unknown[];
}

/** Where a base chain hooks in: type, hook and numeric priority as nft lists them. */
export interface NftBaseChain {
  type: string;
  hook: string;
  prio: number;
}

export interface NftListedTable {
  chains: Set<string>;
  /** The base chains among chains, by name. */
  baseChains: Map<string, NftBaseChain>;
  rules: NftListedRule[];
}

/** The chains and rules of one table, or undefined when the table does not exist. */
export async function nftListTable(family: "inet" | "ip" | "ip6", table: string): Promise<NftListedTable | undefined> {
  let out: string;
  try {
    out = await run(nftTool(), ["-j", "list", "table", family, table]);
  } catch (err) {
    if (/No such file or directory|does not exist/i.test((err as Error).message)) return undefined;
    throw err;
  }
  return parseNftTable(out);
}

const NFNL_SUBSYS_NFTABLES = 10;
const NFT_MSG_GETCHAIN = 4;
const NFT_MSG_GETRULE = 7;
const NFTA_CHAIN = { TABLE: 1, NAME: 3 } as const;
const NFTA_RULE = { TABLE: 1, CHAIN: 2, HANDLE: 3, USERDATA: 7 } as const;
const NFTNL_UDATA_RULE_COMMENT = 0;
const NFPROTO = { inet: 1, ip: 2, ip6: 10 } as const;

/** A rule as nfnetlink lists it: enough to find a pod's rules by comment and delete them. */
export type NftRuleRef = Pick<NftListedRule, "chain" | "handle" | "comment">;

/**
 * The chain, handle and comment of every rule in a table ([] when the table does not exist),
 * dumped over nfnetlink in netns (this namespace when absent): a fraction of a millisecond, where
 * running nft costs about 10 ms. Undefined when the kernel gave no clear answer; the caller then
 * asks nft.
 */
export async function nftRuleRefs(family: keyof typeof NFPROTO, table: string, netns?: Netns): Promise<NftRuleRef[] | undefined> {
  // struct nfgenmsg: family, version NFNETLINK_V0, res_id 0; the table attribute filters the dump.
  const request = Buffer.concat([Buffer.from([NFPROTO[family], 0, 0, 0]), encodeAttrs([attr(NFTA_RULE.TABLE, cstring(table))])]);
  let replies: Buffer[];
  try {
    replies = await requestOnce(
      netns,
      NETLINK_NETFILTER,
      (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETRULE,
      request,
      NLM_F_DUMP,
      `list rules of nftables table ${family} ${table}`,
    );
  } catch (err) {
    return isKernelError(err, "ENOENT") ? [] : undefined;
  }
  const rules: NftRuleRef[] = [];
  for (const reply of replies) {
    const attrs = decodeAttrs(reply.subarray(4));
    const handle = attrs.get(NFTA_RULE.HANDLE);
    const chain = readCString(attrs.get(NFTA_RULE.CHAIN));
    if (readCString(attrs.get(NFTA_RULE.TABLE)) !== table || !chain || handle?.length !== 8) return undefined;
    rules.push({ chain, handle: Number(handle.readBigUInt64BE(0)), comment: ruleComment(attrs.get(NFTA_RULE.USERDATA)) });
  }
  return rules;
}

/** nft keeps a rule's comment in its user data, as type-length-value entries of one byte each. */
function ruleComment(userdata: Buffer | undefined): string | undefined {
  for (let off = 0; userdata && off + 2 <= userdata.length; off += 2 + userdata[off + 1]!) {
    if (userdata[off] === NFTNL_UDATA_RULE_COMMENT) return readCString(userdata.subarray(off + 2, off + 2 + userdata[off + 1]!));
  }
  return undefined;
}

/** The names of a table's chains over nfnetlink (empty when the table does not exist), or undefined when unclear. */
export async function nftChainNames(family: keyof typeof NFPROTO, table: string, netns?: Netns): Promise<Set<string> | undefined> {
  const request = Buffer.concat([Buffer.from([NFPROTO[family], 0, 0, 0]), encodeAttrs([attr(NFTA_CHAIN.TABLE, cstring(table))])]);
  let replies: Buffer[];
  try {
    replies = await requestOnce(
      netns,
      NETLINK_NETFILTER,
      (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETCHAIN,
      request,
      NLM_F_DUMP,
      `list chains of nftables table ${family} ${table}`,
    );
  } catch (err) {
    return isKernelError(err, "ENOENT") ? new Set() : undefined;
  }
  const names = new Set<string>();
  for (const reply of replies) {
    const attrs = decodeAttrs(reply.subarray(4));
    const name = readCString(attrs.get(NFTA_CHAIN.NAME));
    if (readCString(attrs.get(NFTA_CHAIN.TABLE)) !== table || !name) return undefined;
    names.add(name);
  }
  return names;
}

/** Where to look for rules to delete: a table, and optionally only some of its chains. */
export interface NftRuleScope {
  family: keyof typeof NFPROTO;
  table: string;
  chains?: readonly string[];
}

async function rulesIn(scope: NftRuleScope): Promise<NftRuleRef[]> {
  const rules = (await nftRuleRefs(scope.family, scope.table, currentNetns())) ?? (await nftListTable(scope.family, scope.table))?.rules ?? [];
  return scope.chains ? rules.filter((r) => scope.chains!.includes(r.chain)) : rules;
}

/** The rules of these scopes whose comment select picks (for CHECK, GC and tests). */
export async function nftFindRules(scopes: readonly NftRuleScope[], select: (comment: string) => boolean): Promise<Array<NftRuleRef & NftRuleScope>> {
  const listed = await Promise.all(scopes.map(rulesIn));
  return scopes.flatMap((scope, i) => listed[i]!.filter((r) => r.comment !== undefined && select(r.comment)).map((r) => ({ ...scope, ...r })));
}

/**
 * Deletes, in one transaction, the rules of these scopes whose comment select picks, and returns
 * how many went. Listing goes over nfnetlink, so nft runs only when there is something to delete;
 * a rule deleted by someone else in between makes the transaction fail, and it is tried again.
 */
export async function nftDeleteRules(scopes: readonly NftRuleScope[], select: (comment: string) => boolean): Promise<number> {
  if (!nftInstalled()) return 0;
  for (let attempt = 1; ; attempt++) {
    const doomed = await nftFindRules(scopes, select);
    if (doomed.length === 0) return 0;
    try {
      await nftApply(doomed.map((r) => `delete rule ${r.family} ${r.table} ${r.chain} handle ${r.handle}\n`).join(""));
      return doomed.length;
    } catch (err) {
      if (attempt >= 3) throw err;
    }
  }
}

/** Parses `nft -j list table` output (pure, for tests). */
export function parseNftTable(json: string): NftListedTable {
  const parsed = JSON.parse(json) as { nftables?: Array<Record<string, Record<string, unknown> | undefined>> };
  const listed: NftListedTable = { chains: new Set(), baseChains: new Map(), rules: [] };
  for (const item of parsed.nftables ?? []) {
    const chain = item.chain;
    if (chain && typeof chain.name === "string") {
      listed.chains.add(chain.name);
      if (typeof chain.type === "string" && typeof chain.hook === "string" && typeof chain.prio === "number") {
        listed.baseChains.set(chain.name, { type: chain.type, hook: chain.hook, prio: chain.prio });
      }
    }
    const rule = item.rule;
    if (rule && typeof rule.chain === "string" && typeof rule.handle === "number") {
      listed.rules.push({
        chain: rule.chain,
        handle: rule.handle,
        comment: typeof rule.comment === "string" ? rule.comment : undefined,
        expr: Array.isArray(rule.expr) ? rule.expr : [],
      });
    }
  }
  return listed;
}

/** Applies a script with `nft -f -`: the kernel commits all of it or none of it. */
export async function nftApply(script: string): Promise<void> {
  await run(nftTool(), ["-f", "-"], script);
}

/** Whether the kernel would take a script (`nft --check`: nothing is committed), for feature probes. */
export async function nftAccepts(script: string): Promise<boolean> {
  try {
    await run(nftTool(), ["--check", "-f", "-"], script);
    return true;
  } catch {
    return false;
  }
}

// ---------------------------------------------------------------------------------------------
// iptables

export type IptablesFamily = 4 | 6;
/** The iptables tables weft reads and writes. */
export type IptablesTable = "nat" | "filter";

function iptablesTool(family: IptablesFamily, suffix: "" | "-save" | "-restore"): string | undefined {
  return findTool(`${family === 4 ? "iptables" : "ip6tables"}${suffix}`);
}

/** One table as iptables-save prints it: each chain's rules as argument lists (without "-A chain"). */
export interface SavedTable {
  chains: Set<string>;
  rules: Map<string, string[][]>;
}

/** The nat table as iptables-save prints it. */
export type NatTable = SavedTable;

/**
 * Splits one iptables-save line into arguments, as iptables-restore does: whitespace separates,
 * double quotes group, a backslash escapes the next character inside quotes.
 */
export function splitIptablesLine(line: string): string[] {
  const out: string[] = [];
  let current = "";
  let inWord = false;
  let quoted = false;
  for (let i = 0; i < line.length; i++) {
    const c = line[i]!;
    if (quoted) {
      if (c === "\\" && i + 1 < line.length) current += line[++i];
      else if (c === '"') quoted = false;
      else current += c;
    } else if (c === '"') {
      quoted = true;
      inWord = true;
    } else if (c === " " || c === "\t") {
      if (inWord) out.push(current);
      current = "";
      inWord = false;
    } else {
      current += c;
      inWord = true;
    }
  }
  if (inWord) out.push(current);
  return out;
}

/** One argument for an iptables-restore line; a line break could smuggle in a second rule. */
export function quoteIptablesArg(arg: string): string {
  if (/[\n\r\0]/.test(arg)) throw new Error(`invalid iptables argument ${JSON.stringify(arg)}: contains a line break`);
  if (arg !== "" && !/[\s"'\\#]/.test(arg)) return arg;
  return `"${arg.replace(/(["\\])/g, "\\$1")}"`;
}

export function iptablesLine(args: readonly string[]): string {
  return args.map(quoteIptablesArg).join(" ");
}

/** Parses one table of `iptables-save` output (pure, for tests). */
export function parseIptablesSave(text: string, tableName: IptablesTable): SavedTable {
  const table: SavedTable = { chains: new Set(), rules: new Map() };
  let inTable = false;
  for (const line of text.split("\n")) {
    if (line.startsWith("*")) inTable = line === `*${tableName}`;
    if (!inTable) continue;
    if (line.startsWith(":")) {
      const name = line.slice(1).split(" ")[0]!;
      table.chains.add(name);
    } else if (line.startsWith("-A ")) {
      const args = splitIptablesLine(line);
      const chain = args[1]!;
      const list = table.rules.get(chain) ?? [];
      list.push(args.slice(2));
      table.rules.set(chain, list);
    }
  }
  return table;
}

/** Parses `iptables-save -t nat` (pure, for tests). */
export function parseNatTable(text: string): NatTable {
  return parseIptablesSave(text, "nat");
}

/** One table of one family, or undefined when that family's iptables is not installed or not usable. */
export async function iptablesSave(family: IptablesFamily, table: IptablesTable): Promise<SavedTable | undefined> {
  const tool = iptablesTool(family, "-save");
  if (!tool) return undefined;
  let out: string;
  try {
    out = await run(tool, ["-t", table]);
  } catch (err) {
    // No kernel support for this family (ip6tables on a node without IPv6): nothing of ours there.
    if (/can't initialize|Table does not exist|Address family not supported|Protocol not supported/i.test((err as Error).message)) return undefined;
    rethrow(err);
  }
  return parseIptablesSave(out, table);
}

/** The nat table of one family, or undefined when that family's iptables is not installed or not usable. */
export function iptablesSaveNat(family: IptablesFamily): Promise<NatTable | undefined> {
  return iptablesSave(family, "nat");
}

/** Creates a chain in the nat table; one that exists already is left as it is (never flushed). */
export async function iptablesEnsureChain(family: IptablesFamily, chain: string): Promise<void> {
  const tool = iptablesTool(family, "");
  if (!tool) throw new Error(`${family === 4 ? "iptables" : "ip6tables"} is not installed`);
  try {
    await run(tool, ["-w", String(XTABLES_WAIT_SECONDS), "-t", "nat", "-N", chain]);
  } catch (err) {
    if (/exists/i.test((err as Error).message)) return;
    rethrow(err);
  }
}

/**
 * Applies rule lines to one table with one `iptables-restore --noflush`: the kernel takes all of
 * them or none. A ":CHAIN" line flushes that chain if it exists, so callers declare only chains
 * that are theirs alone.
 */
export async function iptablesRestore(family: IptablesFamily, table: IptablesTable, lines: readonly string[]): Promise<void> {
  if (lines.length === 0) return;
  const tool = iptablesTool(family, "-restore");
  if (!tool) throw new Error(`${family === 4 ? "iptables" : "ip6tables"}-restore is not installed`);
  const script = [`*${table}`, ...lines, "COMMIT", ""].join("\n");
  try {
    await run(tool, ["-w", String(XTABLES_WAIT_SECONDS), "--noflush"], script);
  } catch (err) {
    rethrow(err);
  }
}

/** Applies rule lines to the nat table with one `iptables-restore --noflush` (see iptablesRestore). */
export function iptablesRestoreNat(family: IptablesFamily, lines: readonly string[]): Promise<void> {
  return iptablesRestore(family, "nat", lines);
}

export function iptablesInstalled(family: IptablesFamily): boolean {
  return iptablesTool(family, "-restore") !== undefined;
}

/** The value after the first of these flags in a rule's arguments. */
export function valueAfter(rule: readonly string[], ...flags: string[]): string | undefined {
  const i = rule.findIndex((t) => flags.includes(t));
  return i >= 0 ? rule[i + 1] : undefined;
}

/** The restore lines that remove chains: every jump to them, then their rules, then the chains (pure). */
export function iptablesRemoveLines(chains: readonly string[], existing: NatTable): string[][] {
  const doomed = new Set(chains.filter((c) => existing.chains.has(c)));
  if (doomed.size === 0) return [];
  const lines: string[][] = [];
  for (const [chain, rules] of existing.rules) {
    if (doomed.has(chain)) continue;
    for (const rule of rules) {
      const target = valueAfter(rule, "-j", "--jump", "-g", "--goto");
      if (target && doomed.has(target)) lines.push(["-D", chain, ...rule]);
    }
  }
  for (const chain of doomed) lines.push(["-F", chain]);
  for (const chain of doomed) lines.push(["-X", chain]);
  return lines;
}

/**
 * Whether any of these chains of a table may exist, answered without running iptables:
 * iptables-legacy's tables are listed in /proc once something used them in this namespace, and
 * iptables-nft keeps its chains in the nftables table of the same name, listed over nfnetlink.
 * True when either is unclear.
 */
async function chainsMayExist(family: IptablesFamily, table: IptablesTable, chains: readonly string[]): Promise<boolean> {
  const netns = currentNetns();
  const legacy = `/proc/thread-self/net/${family === 4 ? "ip_tables_names" : "ip6_tables_names"}`;
  const readLegacy = () => {
    try {
      return readFileSync(legacy, "utf8").split("\n").includes(table);
    } catch {
      // The legacy module is not loaded: there are no legacy tables anywhere.
      return false;
    }
  };
  if (netns ? netns.run(readLegacy) : readLegacy()) return true;
  const names = await nftChainNames(family === 4 ? "ip" : "ip6", table, netns);
  return names === undefined || chains.some((c) => names.has(c));
}

/**
 * Removes chains of a table (nat unless named) with every jump to them, for one family, in one
 * iptables-restore; returns how many lines that took (0 when none of the chains exists, found
 * without running iptables).
 */
export async function iptablesRemoveChains(family: IptablesFamily, chains: readonly string[], table: IptablesTable = "nat"): Promise<number> {
  if (!iptablesInstalled(family) || !(await chainsMayExist(family, table, chains))) return 0;
  const existing = await iptablesSave(family, table);
  if (!existing) return 0;
  const lines = iptablesRemoveLines(chains, existing);
  await iptablesRestore(family, table, lines.map(iptablesLine));
  return lines.length;
}

/** GC: removes the nat chains that pick chooses from the table as it is, with the jumps to them. */
export async function iptablesCollectChains(family: IptablesFamily, pick: (existing: NatTable) => string[]): Promise<number> {
  if (!iptablesInstalled(family)) return 0;
  const existing = await iptablesSaveNat(family);
  if (!existing) return 0;
  const lines = iptablesRemoveLines(pick(existing), existing);
  await iptablesRestoreNat(family, lines.map(iptablesLine));
  return lines.length;
}

/** Whether `iptables --version` output names 1.6.2 or later (pure, for tests). */
export function versionHasRandomFully(versionOutput: string): boolean {
  const v = /v(\d+)\.(\d+)\.(\d+)/.exec(versionOutput);
  if (!v) return false;
  const [major, minor, patch] = [Number(v[1]), Number(v[2]), Number(v[3])];
  return major > 1 || (major === 1 && (minor > 6 || (minor === 6 && patch >= 2)));
}

const randomFully = new Map<string, Promise<boolean>>();

/**
 * Whether this family's iptables has MASQUERADE --random-fully: from 1.6.2 on, as go-iptables'
 * HasRandomFully decides from `iptables --version` (asked once per process).
 */
export function iptablesHasRandomFully(family: IptablesFamily): Promise<boolean> {
  const tool = iptablesTool(family, "");
  if (!tool) return Promise.resolve(false);
  let answer = randomFully.get(tool);
  if (!answer) {
    answer = run(tool, ["--version"]).then(versionHasRandomFully, () => false);
    randomFully.set(tool, answer);
  }
  return answer;
}

export type NetfilterBackend = "iptables" | "nftables";

/**
 * The reference's automatic choice (pkg/ip/ipmasq_linux.go, portmap): iptables where it is usable,
 * else nftables where nft is, else iptables (whose absence the caller then reports). "Usable" is
 * "installed": probing the kernel would cost an exec on every ADD.
 */
export function defaultBackend(): NetfilterBackend {
  if (iptablesInstalled(4)) return "iptables";
  return nftInstalled() ? "nftables" : "iptables";
}
