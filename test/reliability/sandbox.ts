import { execFileSync, spawn, spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CNI_TYPES } from "../../plugins/registry.js";
import { pathWithTestNode, ROOT, scriptProgram, WEFT_BIN } from "../helpers/executables.js";
import { uniqueName } from "../helpers/netns.js";

/**
 * A node for the reliability tests: a namespace standing for the node (bridges, veths, firewall
 * rules and the plugins' processes live there), pod namespaces, and a temporary directory with
 * CNI_PATH (weft's executables under test, WEFT_BIN), data directories and subnet.env. remove()
 * undoes all of it.
 */

export { ROOT };
/** weft's executables under test (WEFT_BIN, test/helpers/executables.ts). */
export const BIN = WEFT_BIN;
export const REFERENCE_DIR = "/usr/lib/cni";
/** The plugins' PATH: the test's own Node.js first, for the script form's #!/usr/bin/env node. */
export const PATH = pathWithTestNode("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");

/** The node's flanneld lease most scenarios use: IPv4 only, VXLAN's MTU, masquerade by flanneld. */
export const SUBNET_ENV = "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.1.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=false\n";

/** weft's flannel config with every path under the node's work directory; extra keys win. */
export function flannelConf(node: Node, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    cniVersion: "1.1.0",
    name: "cbr0",
    type: "flannel",
    subnetFile: join(node.work, "subnet.env"),
    dataDir: join(node.work, "flannel"),
    delegate: { hairpinMode: true },
    ipam: { dataDir: join(node.work, "networks") },
    ...extra,
  };
}

export interface Node {
  name: string;
  work: string;
  /** weft's executables (symlinks to those in WEFT_BIN), then nothing else. */
  cniPath: string;
  cacheDir: string;
  pods: string[];
  addPod(): string;
  /** ip(8) inside the node. */
  ip(...args: string[]): string;
  exec(command: string, args: string[], input?: string): string;
  remove(): void;
}

export function createNode(prefix: string): Node {
  const name = uniqueName(`wrel-${prefix}-`, 30);
  const work = mkdtempSync(join(tmpdir(), `weft-rel-${prefix}-`));
  const cniPath = join(work, "bin");
  mkdirSync(cniPath);
  for (const type of CNI_TYPES) symlinkSync(join(BIN, type), join(cniPath, type));
  execFileSync("ip", ["netns", "add", name]);
  const pods: string[] = [];
  const node: Node = {
    name,
    work,
    cniPath,
    cacheDir: join(work, "cache"),
    pods,
    addPod() {
      const pod = uniqueName(`wrel-pod-`, 30);
      execFileSync("ip", ["netns", "add", pod]);
      pods.push(pod);
      execFileSync("ip", ["-n", pod, "link", "set", "lo", "up"]);
      return pod;
    },
    ip: (...args) => execFileSync("ip", ["-n", name, ...args], { encoding: "utf8" }),
    // stderr is kept with the error, not printed: nft warns about iptables-nft's tables on every listing.
    exec: (command, args, input) =>
      execFileSync("ip", ["netns", "exec", name, command, ...args], { encoding: "utf8", input, stdio: ["pipe", "pipe", "pipe"] }),
    remove() {
      for (const pod of pods.splice(0)) spawnSync("ip", ["netns", "delete", pod]);
      spawnSync("ip", ["netns", "delete", name]);
      // A test may have mounted over part of work (a small tmpfs); nothing is unmounted outside it.
      for (const line of readFileSync("/proc/self/mounts", "utf8").split("\n").reverse()) {
        const target = line.split(" ")[1];
        if (target?.startsWith(`${work}/`)) spawnSync("umount", ["-l", target]);
      }
      rmSync(work, { recursive: true, force: true });
    },
  };
  node.ip("link", "set", "lo", "up");
  return node;
}

export interface Invocation {
  type: string;
  verb: string;
  containerId?: string;
  netns?: string;
  ifName?: string;
  args?: string;
  cniPath?: string;
  config: unknown;
  env?: Record<string, string>;
  /** The executable to run instead of <cniPath>/<type>, and its arguments. */
  binary?: string;
  argv?: string[];
}

export interface Outcome {
  status: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  json?: any;
}

function environment(node: Node, inv: Invocation): string[] {
  return [
    `PATH=${PATH}`,
    `CNI_COMMAND=${inv.verb}`,
    `CNI_CONTAINERID=${inv.containerId ?? ""}`,
    `CNI_NETNS=${inv.netns ?? ""}`,
    `CNI_IFNAME=${inv.ifName ?? "eth0"}`,
    `CNI_PATH=${inv.cniPath ?? node.cniPath}`,
    `CNI_ARGS=${inv.args ?? ""}`,
    `WEFT_CACHE_DIR=${node.cacheDir}`,
    ...Object.entries(inv.env ?? {}).map(([k, v]) => `${k}=${v}`),
  ];
}

function outcome(status: number | null, signal: NodeJS.Signals | null, stdout: string, stderr: string): Outcome {
  let json: unknown;
  try {
    json = stdout.trim() ? JSON.parse(stdout) : undefined;
  } catch {
    json = undefined;
  }
  return { status, signal, stdout, stderr, json };
}

/** One invocation as a runtime makes it: a clean environment, run inside the node namespace. */
export function invoke(node: Node, inv: Invocation): Outcome {
  const p = spawnSync(
    "ip",
    ["netns", "exec", node.name, "env", "-i", ...environment(node, inv), inv.binary ?? join(node.cniPath, inv.type), ...(inv.argv ?? [])],
    {
      input: typeof inv.config === "string" ? inv.config : JSON.stringify(inv.config),
      encoding: "utf8",
      timeout: 60_000,
    },
  );
  return outcome(p.status, p.signal, p.stdout, p.stderr);
}

export function invokeAsync(node: Node, inv: Invocation): Promise<Outcome> {
  return new Promise((done) => {
    const child = spawn("ip", ["netns", "exec", node.name, "env", "-i", ...environment(node, inv), inv.binary ?? join(node.cniPath, inv.type)], {
      stdio: ["pipe", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    child.on("close", (status, signal) => done(outcome(status, signal, stdout, stderr)));
    child.stdin.on("error", () => undefined);
    child.stdin.end(typeof inv.config === "string" ? inv.config : JSON.stringify(inv.config));
  });
}

export interface BoundedOutcome extends Outcome {
  /** The plugin's peak resident set, in KiB (GNU time's %M); undefined when it was killed. */
  peakRssKiB?: number;
  /** Killed after the hard timeout: it hung. */
  killed: boolean;
}

/** Process groups of invokeBounded still running: killLeftInvocations() ends them. */
const boundedGroups = new Set<number>();

/** Ends what invokeBounded started and is still running (a test that failed before its hard timeout). */
export function killLeftInvocations(): void {
  for (const pgid of boundedGroups) {
    try {
      process.kill(-pgid, "SIGKILL");
    } catch {
      // already gone
    }
  }
  boundedGroups.clear();
}

/** stdin for invokeBounded: bytes, or a source of chunks written until the plugin stops reading. */
export type BoundedStdin = string | Buffer | (() => Buffer);

function feed(stdin: NodeJS.WritableStream & { destroyed: boolean }, source: () => Buffer): void {
  const more = () => {
    while (!stdin.destroyed) {
      if (!stdin.write(source())) {
        stdin.once("drain", more);
        return;
      }
    }
  };
  more();
}

/**
 * One invocation under /usr/bin/time, in a process group of its own that is killed whole (SIGKILL)
 * after `hardTimeoutMs`: a plugin that hangs on a hostile input is reported, not waited for.
 * `stdin` may be far larger than the plugin reads, or endless: a write it refuses is not an error here.
 */
export function invokeBounded(node: Node, inv: Invocation, hardTimeoutMs = 60_000, stdin?: BoundedStdin): Promise<BoundedOutcome> {
  const rssFile = join(node.work, `.rss-${process.pid}-${Math.random().toString(36).slice(2)}`);
  const plugin = inv.binary ?? join(node.cniPath, inv.type);
  return new Promise((done) => {
    const child = spawn(
      "ip",
      ["netns", "exec", node.name, "env", "-i", ...environment(node, inv), "/usr/bin/time", "-f", "%M", "-o", rssFile, plugin, ...(inv.argv ?? [])],
      {
        stdio: ["pipe", "pipe", "pipe"],
        detached: true,
      },
    );
    boundedGroups.add(child.pid!);
    let killed = false;
    const timer = setTimeout(() => {
      killed = true;
      process.kill(-child.pid!, "SIGKILL");
    }, hardTimeoutMs);
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    child.on("close", (status, signal) => {
      clearTimeout(timer);
      boundedGroups.delete(child.pid!);
      let peakRssKiB: number | undefined;
      try {
        const text = readFileSync(rssFile, "utf8").trim().split("\n").pop() ?? "";
        peakRssKiB = /^\d+$/.test(text) ? Number(text) : undefined;
        rmSync(rssFile);
      } catch {
        peakRssKiB = undefined;
      }
      done({ ...outcome(status, signal, stdout, stderr), peakRssKiB, killed });
    });
    child.stdin.on("error", () => child.stdin.destroy());
    if (typeof stdin === "function") feed(child.stdin, stdin);
    else child.stdin.end(stdin ?? (typeof inv.config === "string" ? inv.config : JSON.stringify(inv.config)));
  });
}

/**
 * The version in bin/host-local's banner (line 2): in-process delegation trusts only that build, so
 * a dispatcher built from these sources with it runs bin/'s plugins in its own process (any other
 * form's are executed).
 */
export function weftBuildVersion(): string {
  const m = /^\/\/ weft (\S+) /m.exec(readFileSync(scriptProgram("host-local"), "utf8").slice(0, 300));
  if (!m) throw new Error("bin/host-local has no weft banner: run make");
  return m[1]!;
}

/** Writes a file under the node's work directory and returns its path. */
export function writeWork(node: Node, name: string, content: string): string {
  const path = join(node.work, name);
  writeFileSync(path, content);
  return path;
}

/**
 * nftables rules (iptables-nft's included) that belong to a pod: they name a pod address of the
 * test networks or carry a comment. Tables, base chains and their entry jumps are shared
 * infrastructure, left in place as the reference leaves its CNI-HOSTPORT-* chains.
 */
export const POD_RULE = /10\.244\.|fd00:10:244|10\.50\.|fd50:|10\.77\.|comment "/;

/** Kernel state of the node and its pods that a plugin may leave behind. */
export function kernelLeftovers(node: Node): string[] {
  const out: string[] = [];
  const links = JSON.parse(node.ip("-j", "-d", "link", "show")) as Array<{ ifname: string; linkinfo?: { info_kind?: string } }>;
  for (const l of links) if (l.ifname !== "lo" && l.linkinfo?.info_kind !== "bridge") out.push(`node link ${l.ifname}`);
  for (const pod of node.pods) {
    const podLinks = JSON.parse(execFileSync("ip", ["-n", pod, "-j", "link", "show"], { encoding: "utf8" })) as Array<{ ifname: string }>;
    for (const l of podLinks) if (l.ifname !== "lo") out.push(`pod ${pod} link ${l.ifname}`);
  }
  for (const line of node.exec("nft", ["list", "ruleset"]).split("\n")) {
    if (POD_RULE.test(line) && !/^\s*(table|chain|set|map|comment) /.test(line)) out.push(`nft rule ${line.trim()}`);
  }
  return out;
}

/** The addresses held on bridges' ports in the node: every pod address still configured somewhere. */
export function bridgeAddresses(node: Node, bridge: string): string[] {
  const info = JSON.parse(node.ip("-j", "addr", "show", "dev", bridge)) as Array<{ addr_info: Array<{ local: string; prefixlen: number }> }>;
  return (info[0]?.addr_info ?? []).map((a) => `${a.local}/${a.prefixlen}`);
}
