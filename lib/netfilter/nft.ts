import { accessSync, constants } from "node:fs";
import { nodeChildProcess } from "../node/builtins.js";
import type { Netns } from "../netns/netns.js";

/**
 * Running nft (and iptables) for the firewall rules weft owns. Rules carry a comment naming their
 * owner, so removal selects by comment and needs nothing else.
 */

const SEARCH_PATH = ["/usr/sbin", "/sbin", "/usr/bin", "/bin", "/usr/local/sbin"];

export function findTool(name: string): string | undefined {
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

/** Where the tools run: the plugin's own namespace, or (tests) another one the child is forked inside. */
export interface NftContext {
  netns?: Netns;
}

let context: NftContext = {};

export function run(tool: string, args: string[], stdin?: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const spawn = () =>
      nodeChildProcess().execFile(tool, args, { encoding: "utf8", timeout: 30_000, maxBuffer: 64 << 20 }, (err, stdout, stderr) => {
        if (err) {
          reject(Object.assign(new Error(`${tool} ${args.join(" ")}: ${(stderr || err.message).trim()}`), { stderr }));
        } else {
          resolve(stdout);
        }
      });
    // The child is forked synchronously by the calling thread and keeps its namespace.
    const child = context.netns ? context.netns.run(spawn) : spawn();
    // A tool that exits without reading stdin closes the pipe: its exit status is the answer.
    child.stdin?.on("error", () => undefined);
    child.stdin?.end(stdin ?? "");
  });
}

/** The namespace tools run in now (undefined: the plugin's own). */
export function currentNetns(): Netns | undefined {
  return context.netns;
}

/** Runs fn with the tools in ctx's namespace. Calls with different contexts must not overlap. */
export async function within<T>(ctx: NftContext | undefined, fn: () => Promise<T>): Promise<T> {
  const saved = context;
  context = ctx ?? {};
  try {
    return await fn();
  } finally {
    context = saved;
  }
}

export interface NftChain {
  family: "inet" | "ip" | "ip6" | "bridge";
  table: string;
  chain: string;
}

export interface NftRule {
  handle: number;
  comment?: string;
}

export async function nftRules(nft: string, where: NftChain): Promise<NftRule[]> {
  let out: string;
  try {
    out = await run(nft, ["-j", "list", "chain", where.family, where.table, where.chain]);
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

/** Deletes the rules whose comment the predicate selects, in one transaction; a race with another DEL is retried. */
export async function nftDeleteWhere(where: NftChain, select: (comment: string) => boolean): Promise<number> {
  const nft = findTool("nft");
  if (!nft) return 0;
  for (let attempt = 1; ; attempt++) {
    const doomed = (await nftRules(nft, where)).filter((r) => r.comment !== undefined && select(r.comment));
    if (doomed.length === 0) return 0;
    const script = doomed.map((r) => `delete rule ${where.family} ${where.table} ${where.chain} handle ${r.handle}`).join("\n");
    try {
      await run(nft, ["-f", "-"], `${script}\n`);
      return doomed.length;
    } catch (err) {
      if (attempt >= 3) throw err;
    }
  }
}
