import { execFileSync } from "node:child_process";
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync } from "node:fs";
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
});

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
    expect(readdirSync(join(cache, weftAddon.sha256))).toEqual(["weft.node"]);
    expect(weftAddon.sha256).toMatch(/^[0-9a-f]{64}$/);
  });

  it("refuse a cache directory that others can write to", () => {
    const cache = join(root, "shared");
    mkdirSync(cache, { mode: 0o700 });
    chmodSync(cache, 0o777);
    process.env.WEFT_CACHE_DIR = cache;
    expect(() => loadEmbeddedAddon({ ...weftAddon, sha256: "0".repeat(64) })).toThrow(
      expect.objectContaining({ code: 5, message: expect.stringContaining("is not a private directory") }),
    );
  });

  it("survive many first runs at once: every bundled process loads a whole file", async () => {
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
    const cache = join(root, "race");
    const runs = Array.from({ length: 8 }, () => `node ${bundle} &`).join("\n");
    const out = execFileSync("bash", ["-c", `${runs}\nwait`], {
      encoding: "utf8",
      env: { PATH: process.env.PATH, WEFT_CACHE_DIR: cache },
    });
    expect(out.trim().split("\n")).toEqual(Array(8).fill("loaded setns,flock,flockAsync,pollFd,netlinkSocket,netlinkRequest,netlinkJoin,wakeFd,netlinkReceive netlink"));
    expect(readdirSync(cache).length).toBe(2);
    for (const hashDir of readdirSync(cache)) expect(readdirSync(join(cache, hashDir))).toHaveLength(1);
  });
});
