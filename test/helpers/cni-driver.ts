import { execFile, execFileSync, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync } from "node:fs";
import { join } from "node:path";
import { pathWithTestNode, ROOT, WEFT_BIN } from "./executables.js";
import { prerequisite, type Prerequisite } from "./prerequisites.js";

/**
 * The conformance suite's libcni driver (conformance/driver: a container runtime's CNI side on
 * Debian's libcni) for tests: built once per source into a cache dir, run inside a node namespace
 * against a conf dir, a libcni cache dir and weft's plugins under test (WEFT_BIN, executables.ts) as
 * CNI_PATH, as a runtime on that node would.
 */

const SOURCE = join(ROOT, "conformance/driver/main.go");
/** Debian's Go sources (golang-github-appc-cni-dev puts libcni there), built in GOPATH mode. */
const GOPATH = "/usr/share/gocode";
const LIBCNI = join(GOPATH, "src/github.com/containernetworking/cni/libcni");
const CACHE = join(ROOT, "node_modules/.cache/weft-cni-driver");
const BUILD_TIMEOUT_MS = 240_000;

const haveGo = () => spawnSync("sh", ["-c", "command -v go"], { stdio: "ignore" }).status === 0;

/** What building the driver needs: go and Debian's libcni sources (scripts/setup installs both). */
export const cniDriverPrerequisite = (): Prerequisite =>
  prerequisite("go and libcni (Debian packages golang-go, golang-github-appc-cni-dev) for the libcni driver", haveGo() && existsSync(LIBCNI));

let built: string | undefined;

/**
 * The driver's path, built first when this source has not been built yet (by this process or an
 * earlier one: the file is named after the source's hash, written beside its name and renamed, so
 * test files building at once never run half a file).
 */
export function cniDriver(): string {
  if (built) return built;
  if (!haveGo()) throw new Error("libcni driver: no go on PATH (Debian package golang-go; scripts/setup installs it)");
  if (!existsSync(LIBCNI))
    throw new Error(`libcni driver: no libcni sources at ${LIBCNI} (Debian package golang-github-appc-cni-dev; scripts/setup installs it)`);
  const hash = createHash("sha256").update(readFileSync(SOURCE)).digest("hex").slice(0, 16);
  const path = join(CACHE, `driver-${hash}`);
  if (!existsSync(path)) {
    mkdirSync(CACHE, { recursive: true });
    const partial = `${path}.${process.pid}.tmp`;
    try {
      execFileSync("go", ["build", "-o", partial, "./conformance/driver"], {
        cwd: ROOT,
        env: { ...process.env, GO111MODULE: "off", GOPATH, GOFLAGS: "", GOCACHE: join(CACHE, "gocache") },
        stdio: "pipe",
        timeout: BUILD_TIMEOUT_MS,
        killSignal: "SIGKILL",
      });
      renameSync(partial, path);
    } catch (err) {
      rmSync(partial, { force: true });
      const stderr = (err as { stderr?: Buffer }).stderr?.toString().trim();
      throw new Error(`libcni driver: go build ./conformance/driver failed: ${stderr || (err as Error).message}`, { cause: err });
    }
  }
  built = path;
  return path;
}

export interface DriverCall {
  /** The node namespace the driver runs in (a runtime's host). */
  node: string;
  /** NETCONFPATH: the dir holding the network's conflist. */
  confDir: string;
  /** libcni's cache dir (never the host's /var/lib/cni). */
  cacheDir: string;
  network: string;
  containerId: string;
  /** The pod's namespace path, e.g. /run/netns/<name>. */
  podNetns: string;
  ifName?: string;
  /** Plugin dirs; default weft's plugins under test (WEFT_BIN). */
  cniPath?: string;
  timeoutMs?: number;
}

/** A CNI error as the driver reports it. */
export class DriverError extends Error {
  constructor(
    readonly verb: string,
    readonly code: number,
    readonly detail: string,
  ) {
    super(`driver ${verb}: ${detail}`);
  }
}

export interface CniResult {
  cniVersion: string;
  interfaces?: Array<{ name: string; mac?: string; sandbox?: string }>;
  ips?: Array<{ address: string; gateway?: string; interface?: number }>;
  routes?: Array<{ dst: string; gw?: string }>;
  dns?: unknown;
}

/** `driver add`: the parsed result. */
export async function driverAdd(call: DriverCall): Promise<CniResult> {
  return JSON.parse(await runDriver("add", call)) as CniResult;
}

/** `driver del`. */
export async function driverDel(call: DriverCall): Promise<void> {
  await runDriver("del", call);
}

async function runDriver(verb: "add" | "del", call: DriverCall): Promise<string> {
  const driver = cniDriver();
  // A script-form plugin (#!/usr/bin/env node) runs on the test's own Node.
  const path = pathWithTestNode();
  const argv = ["netns", "exec", call.node, driver, verb, call.network, call.containerId, call.podNetns, call.ifName ?? "eth0"];
  const env = { PATH: path, NETCONFPATH: call.confDir, CNI_PATH: call.cniPath ?? WEFT_BIN, CNI_CACHE_DIR: call.cacheDir };
  return await new Promise((resolve, reject) => {
    execFile("ip", argv, { env, timeout: call.timeoutMs ?? 30_000, killSignal: "SIGKILL" }, (err, stdout, stderr) => {
      if (!err) return resolve(stdout);
      let failure: { code?: number; error?: string; msg?: string } = {};
      try {
        failure = JSON.parse(stdout) as typeof failure;
      } catch {
        // Not the driver's JSON: killed, or it never ran.
      }
      const detail = failure.error ?? failure.msg ?? (stderr.trim() || err.message);
      reject(new DriverError(verb, failure.code ?? -1, `${detail} (pod ${call.containerId} in node ${call.node})`));
    });
  });
}
