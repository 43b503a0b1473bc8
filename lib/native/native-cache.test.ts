import { execFileSync, spawnSync } from "node:child_process";
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import * as esbuild from "esbuild";
import * as weftAddon from "weft-native:weft";
// @ts-expect-error: plain JavaScript module shared with the build
import { esbuildNativeAddons } from "../../scripts/native-addons.mjs";
import { loadEmbeddedAddon } from "./native.js";

let root: string;
const saved = process.env.WEFT_CACHE_DIR;

beforeEach(() => {
  root = mkdtempSync(join(tmpdir(), "weft-cache-"));
  // The cache is chosen once per process (lib/native/cache.ts); each test here picks its own.
  delete (globalThis as Record<symbol, unknown>)[Symbol.for("weft.cache")];
});

/** test/fixtures/load-addons.ts bundled as the executables bundle it, but without the loader. */
async function bundleFixture(): Promise<string> {
  const bundle = join(root, "load-addons.cjs");
  await esbuild.build({
    entryPoints: [join(process.cwd(), "test/fixtures/load-addons.ts")],
    bundle: true,
    platform: "node",
    format: "cjs",
    outfile: bundle,
    plugins: [esbuildNativeAddons(process.cwd())],
    logLevel: "error",
  });
  return bundle;
}

const LOADED =
  "loaded setns,flock,flockAsync,pollFd,netlinkSocket,netlinkRequest,netlinkJoin,wakeFd,netlinkReceive,tunOpen,udpOpen,carrierReceive,udpSendBatch,tunWriteBatch";

/** <cache>/<sha256 of weft's addon>/weft.node: a library whose constructor creates marker. */
function plantAddon(cache: string, marker: string): void {
  writeFileSync(
    join(root, "planted.c"),
    `#include <stdio.h>\n__attribute__((constructor)) static void planted(void) { FILE *f = fopen(${JSON.stringify(marker)}, "w"); if (f) fclose(f); }\n`,
  );
  mkdirSync(join(cache, weftAddon.sha256), { recursive: true, mode: 0o700 });
  execFileSync("gcc", ["-shared", "-fPIC", "-o", join(cache, weftAddon.sha256, "weft.node"), join(root, "planted.c")]);
}

/** The fixture run with WEFT_CACHE_DIR=cache and TMPDIR of its own, bounded. */
function runFixture(bundle: string, cache: string) {
  const tmp = mkdtempSync(join(root, "tmp-"));
  const result = spawnSync("node", [bundle], {
    encoding: "utf8",
    timeout: 20_000,
    killSignal: "SIGKILL",
    env: { PATH: process.env.PATH, WEFT_CACHE_DIR: cache, TMPDIR: tmp },
  });
  expect(result.signal).toBeNull();
  expect(readdirSync(tmp)).toEqual([]);
  return result;
}

afterEach(() => {
  if (saved === undefined) delete process.env.WEFT_CACHE_DIR;
  else process.env.WEFT_CACHE_DIR = saved;
  rmSync(root, { recursive: true, force: true });
});

describe("embedded native addons", () => {
  it("are written once to <cache>/<sha256>/<name>.node in private directories and then loaded", () => {
    const cache = join(root, "cache");
    process.env.WEFT_CACHE_DIR = cache;
    const addon = loadEmbeddedAddon<{ setns: unknown; flock: unknown }>(weftAddon);
    expect(typeof addon.flock).toBe("function");
    expect(readdirSync(cache)).toEqual([weftAddon.sha256]);
    const file = join(cache, weftAddon.sha256, "weft.node");
    expect(statSync(cache).mode & 0o777).toBe(0o700);
    expect(statSync(join(cache, weftAddon.sha256)).mode & 0o777).toBe(0o700);
    expect(statSync(file).mode & 0o777).toBe(0o500);
    // The stamp says the file was hashed in full, so that later starts need not load node:crypto.
    expect(readdirSync(join(cache, weftAddon.sha256)).sort()).toEqual(["weft.node", "weft.node.verified"]);
    expect(weftAddon.sha256).toMatch(/^[0-9a-f]{64}$/);
  });

  it("are never loaded from a cache root others can write to: they load from a private copy, with one line on stderr", async () => {
    const bundle = await bundleFixture();
    const cache = join(root, "shared");
    const marker = join(root, "planted-ran");
    plantAddon(cache, marker);
    chmodSync(cache, 0o777);
    const result = runFixture(bundle, cache);
    expect(result.status, result.stderr).toBe(0);
    expect(result.stdout.trim()).toBe(LOADED);
    expect(result.stderr).toBe(`weft: cache ${cache} not used: ${cache} is writable by group or others (mode 777); running without it\n`);
    expect(existsSync(marker)).toBe(false);
  });

  it("are loaded from a trusted cache only when the file's sha256 is theirs; a mismatch is removed", async () => {
    const bundle = await bundleFixture();
    const cache = join(root, "private");
    const marker = join(root, "planted-ran");
    plantAddon(cache, marker);
    const result = runFixture(bundle, cache);
    expect(result.status, result.stderr).toBe(0);
    expect(result.stdout.trim()).toBe(LOADED);
    expect(result.stderr).toMatch(/^weft: cache .* not used: .*\/weft\.node does not match its sha256 \(removed\); running without it\n$/);
    expect(existsSync(marker)).toBe(false);
    const again = runFixture(bundle, cache);
    expect(again.stderr).toBe("");
    expect(again.stdout.trim()).toBe(LOADED);
  });

  it("survive many first runs at once: every bundled process loads a whole file", async () => {
    const bundle = await bundleFixture();
    const cache = join(root, "race");
    const runs = Array.from({ length: 8 }, () => `node ${bundle} &`).join("\n");
    const out = execFileSync("bash", ["-c", `${runs}\nwait`], {
      encoding: "utf8",
      env: { PATH: process.env.PATH, WEFT_CACHE_DIR: cache },
    });
    expect(out.trim().split("\n")).toEqual(Array(8).fill(LOADED));
    expect(readdirSync(cache)).toEqual([weftAddon.sha256]);
    for (const hashDir of readdirSync(cache)) expect(readdirSync(join(cache, hashDir))).toHaveLength(2);
  });
});
