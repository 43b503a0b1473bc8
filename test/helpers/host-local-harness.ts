// Runs host-local executables (weft's and the reference) the way a runtime does, for the
// integration tests in test/integration/host-local*.test.ts. Not part of the plugin.
import { spawn, spawnSync } from "node:child_process";
import { existsSync, lstatSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathWithTestNode, weftProgram } from "./executables.js";

/** weft's host-local under test (WEFT_BIN, executables.ts). */
export const WEFT = weftProgram("host-local");
export const REFERENCE = "/usr/lib/cni/host-local";
export const referenceAvailable = existsSync(REFERENCE);

export interface Call {
  command: "ADD" | "DEL" | "CHECK" | "GC" | "STATUS";
  containerId?: string;
  ifName?: string;
  args?: string;
  config: Record<string, unknown>;
}

export interface Outcome {
  status: number | null;
  stdout: string;
  stderr: string;
  /** stdout parsed, when it is JSON. */
  json?: Record<string, unknown>;
}

/** A temporary directory for one test: a data dir for the stores and a cache for weft's native addon. */
export interface Sandbox {
  root: string;
  env: Record<string, string>;
  remove(): void;
}

export function makeSandbox(): Sandbox {
  const root = mkdtempSync(join(tmpdir(), "weft-host-local-"));
  return {
    root,
    env: { WEFT_CACHE_DIR: join(root, "cache") },
    remove: () => rmSync(root, { recursive: true, force: true }),
  };
}

function environment(call: Call, extra: Record<string, string>): Record<string, string> {
  return {
    PATH: pathWithTestNode("/usr/bin:/bin"),
    CNI_COMMAND: call.command,
    CNI_CONTAINERID: call.containerId ?? "",
    CNI_NETNS: call.command === "ADD" || call.command === "CHECK" ? "/var/run/netns/weft-test" : "",
    CNI_IFNAME: call.ifName ?? "",
    CNI_PATH: "/usr/lib/cni",
    CNI_ARGS: call.args ?? "",
    ...extra,
  };
}

function outcome(status: number | null, stdout: string, stderr: string): Outcome {
  let json: Record<string, unknown> | undefined;
  try {
    json = stdout.trim() ? (JSON.parse(stdout) as Record<string, unknown>) : undefined;
  } catch {
    json = undefined;
  }
  return { status, stdout, stderr, json };
}

export function run(binary: string, call: Call, extraEnv: Record<string, string> = {}): Outcome {
  const out = spawnSync(binary, [], { env: environment(call, extraEnv), input: JSON.stringify(call.config), encoding: "utf8" });
  return outcome(out.status, out.stdout, out.stderr);
}

export function runAsync(binary: string, call: Call, extraEnv: Record<string, string> = {}): Promise<Outcome> {
  return new Promise((resolve, reject) => {
    const child = spawn(binary, [], { env: environment(call, extraEnv), stdio: ["pipe", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (d: string) => (stdout += d));
    child.stderr.setEncoding("utf8").on("data", (d: string) => (stderr += d));
    child.on("error", reject);
    child.on("close", (status) => resolve(outcome(status, stdout, stderr)));
    child.stdin.end(JSON.stringify(call.config));
  });
}

/** The addresses of an ADD result, "10.1.2.3/24" etc. */
export function addressesOf(result: Outcome): string[] {
  const ips = (result.json?.ips ?? []) as { address: string }[];
  return ips.map((ip) => ip.address);
}

export interface FileState {
  mode: string;
  content: string;
}

/** Every entry of a store directory: name -> mode and exact content (JSON-escaped, so \r shows). */
export function snapshot(dir: string): Record<string, FileState> {
  const out: Record<string, FileState> = {};
  if (!existsSync(dir)) return out;
  for (const name of readdirSync(dir).sort()) {
    const path = join(dir, name);
    const stats = lstatSync(path);
    out[name] = {
      mode: (stats.mode & 0o7777).toString(8),
      content: stats.isFile() ? JSON.stringify(readFileSync(path, "latin1")) : `<${stats.isDirectory() ? "dir" : "other"}>`,
    };
  }
  return out;
}
