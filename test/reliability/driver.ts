/**
 * Runs fuzz cases in one process through the same dispatcher the executables use (skel.dispatch),
 * inside the node namespace the test made for it (`ip netns exec <node> node driver.cjs`), so the
 * kernel state it inspects and the state the plugins change are that namespace's alone.
 *
 * For each case: run it; if an ADD succeeded, DEL it with the same input; then compare the node
 * namespace, the pod namespace, the files under the work directory and the locks this process
 * holds with the state before the case. Whatever differs is a leak: reported, then removed so the
 * next case starts clean. Bundled by the test with esbuild (see fuzz.test.ts).
 */
import { execFileSync, spawnSync } from "node:child_process";
import { appendFileSync, lstatSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { dispatch, type Plugin, type PluginIO } from "../../lib/cni/skel.js";
import type { NetConf } from "../../lib/cni/config.js";
import { bridgePlugin } from "../../plugins/bridge/plugin.js";
import { flannelPlugin } from "../../plugins/flannel/plugin.js";
import { inProcessPlugins } from "../../plugins/in-process.js";
import { hostLocalPlugin } from "../../ipam/host-local/plugin.js";
import { portmapPlugin } from "../../plugins/portmap/plugin.js";
import { loopbackPlugin } from "../../plugins/loopback/plugin.js";
import type { FuzzCase } from "./cases.js";

declare const WEFT_VERSION: string;

export interface CaseOutcome {
  index: number;
  verb: string;
  code: number;
  stdout: string;
  stderr: string;
  /** The DEL run after a successful ADD. */
  del?: { code: number; stdout: string };
  leaks: string[];
  /** An exception that escaped the dispatcher, or a case that never finished. */
  crash?: string;
  ms: number;
}

interface DriverInput {
  work: string;
  /** Name of the pod namespace (under /run/netns). */
  pod: string;
  /** Files and directories under work that belong to the test, not to the cases. */
  fixtures: string[];
  cases: FuzzCase[];
  caseTimeoutMs: number;
  /** Run each case through this directory's executables instead of in this process. */
  execDir?: string;
}

function pluginFor(type: string): Plugin<NetConf> {
  const registry = inProcessPlugins(WEFT_VERSION);
  switch (type) {
    case "host-local":
      return hostLocalPlugin();
    case "bridge":
      return bridgePlugin({ inProcess: registry });
    case "flannel":
      return flannelPlugin({ inProcess: registry });
    case "portmap":
      return portmapPlugin();
    case "loopback":
      return loopbackPlugin();
    default:
      throw new Error(`unknown plugin ${type}`);
  }
}

const sh = (cmd: string, args: string[]) => execFileSync(cmd, args, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });

interface IpLink {
  ifname: string;
  linkinfo?: { info_kind?: string };
}

/** Links of the node namespace other than lo and bridges (the reference never removes its bridge). */
function nodeLinks(): string[] {
  return (JSON.parse(sh("ip", ["-j", "-d", "link", "show"])) as IpLink[])
    .filter((l) => l.ifname !== "lo" && l.linkinfo?.info_kind !== "bridge")
    .map((l) => `node link ${l.ifname} (${l.linkinfo?.info_kind ?? "?"})`);
}

function podLinks(pod: string): string[] {
  return (JSON.parse(sh("ip", ["-n", pod, "-j", "link", "show"])) as IpLink[]).filter((l) => l.ifname !== "lo").map((l) => `pod link ${l.ifname}`);
}

/** Addresses on lo in the pod other than the kernel's own. */
function podLoAddresses(pod: string): string[] {
  const info =
    (JSON.parse(sh("ip", ["-n", pod, "-j", "addr", "show", "dev", "lo"])) as Array<{ addr_info: Array<{ local: string; prefixlen: number }> }>)[0]
      ?.addr_info ?? [];
  return info.filter((a) => a.local !== "127.0.0.1" && a.local !== "::1").map((a) => `pod lo address ${a.local}/${a.prefixlen}`);
}

/**
 * nftables rules (iptables-nft's included) that belong to a pod: they name its address or its
 * container id. Tables, chains and the entry jumps into them are shared infrastructure that the
 * reference plugins leave in place too (CNI-HOSTPORT-*, a network's portmap table).
 */
export const POD_RULE = /fuzz-|10\.50\.|fd50:|10\.244\.|fd00:10:244/;

function nftRules(): string[] {
  return sh("nft", ["list", "ruleset"])
    .split("\n")
    .filter((line) => POD_RULE.test(line) && !/^\s*(table|chain|set|map) /.test(line))
    .map((line) => `nft rule ${line.trim()}`);
}

const STORE_INFRASTRUCTURE = /^(lock|last_reserved_ip\.\d+)$/;

/** Files under work that a case left: anything but a store's lock and cursor files and the fixtures. */
function leftFiles(work: string, fixtures: Set<string>): string[] {
  const out: string[] = [];
  const walk = (dir: string) => {
    for (const name of readdirSync(dir)) {
      const path = join(dir, name);
      if (fixtures.has(path)) continue;
      const st = lstatSync(path);
      if (st.isDirectory()) walk(path);
      else if (!STORE_INFRASTRUCTURE.test(name)) out.push(`file ${path.slice(work.length + 1)}`);
    }
  };
  walk(work);
  return out;
}

/** flock(2)s this process still holds: a lock left held would stall every later ADD on the node. */
function heldLocks(): string[] {
  return readFileSync("/proc/locks", "utf8")
    .split("\n")
    .filter((line) => line.split(/\s+/)[4] === String(process.pid) && !line.includes("->"))
    .map((line) => `lock held: ${line.trim()}`);
}

function snapshot(input: DriverInput, fixtures: Set<string>, kernel: boolean): string[] {
  const leaks = [...leftFiles(input.work, fixtures), ...heldLocks()];
  if (kernel) leaks.push(...nodeLinks(), ...podLinks(input.pod), ...podLoAddresses(input.pod), ...nftRules());
  return leaks;
}

/** Puts the namespaces and the work directory back as they were, after a leak was recorded. */
function clean(input: DriverInput, leaks: string[]): void {
  // Best effort, each on its own: deleting one end of a veth pair takes the other with it.
  const quiet = (cmd: string, args: string[]) => spawnSync(cmd, args, { stdio: "ignore" });
  for (const leak of leaks) {
    let m: RegExpExecArray | null;
    if ((m = /^node link (\S+)/.exec(leak))) quiet("ip", ["link", "del", m[1]!]);
    else if ((m = /^pod link (\S+)/.exec(leak))) quiet("ip", ["-n", input.pod, "link", "del", m[1]!]);
    else if ((m = /^file (.+)$/.exec(leak))) rmSync(join(input.work, m[1]!), { force: true });
  }
  if (leaks.some((l) => l.startsWith("nft rule"))) quiet("nft", ["flush", "ruleset"]);
  if (leaks.some((l) => l.startsWith("pod lo address"))) quiet("ip", ["-n", input.pod, "addr", "flush", "dev", "lo"]);
}

/** The executable as a runtime runs it: a clean environment (a C string ends at its first NUL). */
function runExec(execDir: string, type: string, env: Record<string, string>, stdin: Buffer, timeoutMs: number) {
  const clean: Record<string, string> = { PATH: process.env.PATH ?? "/usr/bin:/bin", WEFT_CACHE_DIR: process.env.WEFT_CACHE_DIR ?? "" };
  for (const [k, v] of Object.entries(env)) clean[k] = v.split("\u0000")[0]!;
  const p = spawnSync(join(execDir, type), [], { env: clean, input: stdin, encoding: "utf8", timeout: timeoutMs, maxBuffer: 64 << 20 });
  if (p.error && (p.error as NodeJS.ErrnoException).code === "ETIMEDOUT")
    return { code: "hang" as const, stdout: p.stdout ?? "", stderr: p.stderr ?? "" };
  const code = p.status ?? (p.signal ? 128 : -1);
  return { code, stdout: p.stdout ?? "", stderr: `${p.stderr ?? ""}${p.signal ? `\nkilled by ${p.signal}` : ""}` };
}

async function runOnce(plugin: Plugin<NetConf>, env: Record<string, string>, stdin: Buffer, timeoutMs: number) {
  const out: string[] = [];
  const err: string[] = [];
  const io: PluginIO = {
    getenv: (name) => env[name],
    readStdin: () => stdin,
    stdout: (t) => out.push(t),
    stderr: (t) => err.push(t),
  };
  let timer: NodeJS.Timeout | undefined;
  const hang = new Promise<"hang">((resolve) => {
    timer = setTimeout(() => resolve("hang"), timeoutMs);
  });
  const code = await Promise.race([dispatch(plugin, io), hang]);
  clearTimeout(timer);
  return { code, stdout: out.join(""), stderr: err.join("") };
}

async function main(): Promise<void> {
  const [inputFile, outputFile] = process.argv.slice(2);
  const input = JSON.parse(readFileSync(inputFile!, "utf8")) as DriverInput;
  const fixtures = new Set(input.fixtures);
  process.chdir(input.work);
  const outcomes: CaseOutcome[] = [];
  writeFileSync(outputFile!, "");
  let escaped: string | undefined;
  process.on("uncaughtException", (e) => (escaped = `uncaughtException: ${e.stack ?? e}`));
  process.on("unhandledRejection", (e) => (escaped = `unhandledRejection: ${(e as Error)?.stack ?? String(e)}`));
  const kernel = input.cases[0]?.plugin !== "host-local";
  for (const c of input.cases) {
    const started = Date.now();
    const plugin = pluginFor(c.plugin);
    const subnetFile = join(input.work, "subnet.env");
    if (c.subnetEnv === null) rmSync(subnetFile, { force: true });
    else if (c.subnetEnv !== undefined) writeFileSync(subnetFile, c.subnetEnv);
    const stdin = Buffer.from(c.stdin);
    escaped = undefined;
    const run = (env: Record<string, string>) =>
      input.execDir
        ? Promise.resolve(runExec(input.execDir, c.plugin, env, stdin, input.caseTimeoutMs))
        : runOnce(plugin, env, stdin, input.caseTimeoutMs);
    const first = await run(c.env);
    const outcome: CaseOutcome = {
      index: c.index,
      verb: c.env.CNI_COMMAND ?? "",
      code: -1,
      stdout: first.stdout,
      stderr: first.stderr.slice(0, 4000),
      leaks: [],
      ms: 0,
    };
    if (first.code === "hang") {
      outcome.crash = `did not finish within ${input.caseTimeoutMs} ms`;
      outcomes.push(outcome);
      appendFileSync(outputFile!, `${JSON.stringify(outcome)}\n`);
      break;
    }
    outcome.code = first.code;
    // An executable sees a variable cut at its first NUL, so "ADD\u0000x" runs ADD there.
    if (first.code === 0 && c.env.CNI_COMMAND?.split("\u0000")[0] === "ADD") {
      const del = await run({ ...c.env, CNI_COMMAND: "DEL" });
      outcome.del = { code: del.code === "hang" ? -1 : del.code, stdout: del.stdout };
      if (del.code === "hang") outcome.crash = "DEL after ADD did not finish";
    }
    // Let anything the plugin left running (a timer, a rejected promise) surface before judging.
    await new Promise((r) => setTimeout(r, 1));
    if (escaped) outcome.crash = escaped;
    outcome.leaks = snapshot(input, fixtures, kernel);
    if (outcome.leaks.length) clean(input, outcome.leaks);
    outcome.ms = Date.now() - started;
    outcomes.push(outcome);
    appendFileSync(outputFile!, `${JSON.stringify(outcome)}\n`);
    if (outcome.crash?.startsWith("DEL")) break;
  }
  // Whatever a plugin left pending (sockets, timers) must not keep the driver alive.
  process.exit(0);
}

main().catch((err: unknown) => {
  process.stderr.write(`driver failed: ${(err as Error)?.stack ?? String(err)}\n`);
  process.exit(2);
});
