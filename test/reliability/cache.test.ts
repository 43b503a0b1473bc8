import { execFileSync, spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { chmodSync, chownSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { pathWithTestNode, ROOT, scriptProgram } from "../helpers/executables.js";
import { all, command, rootUser } from "../helpers/prerequisites.js";
import { uniqueName } from "../helpers/netns.js";

/**
 * weft's cache (lib/native/cache.ts, scripts/loader.ts, lib/native/native.ts) is only an
 * optimisation: whatever is wrong with it, a plugin runs without it, with the same result and one line
 * on stderr, and never loads what it does not trust. Each case runs bin/loopback (which carries the
 * native addon) for real, killed with its process group after HARD_TIMEOUT_MS: the script form's
 * loader, whatever form WEFT_BIN selects; the last case builds a Node.js single executable of its own.
 */

const HARD_TIMEOUT_MS = 20_000;
const need = all(rootUser(), command("gcc"), command("unshare", "util-linux"));
const ADDON_SHA = createHash("sha256")
  .update(readFileSync(join(ROOT, "build/native/weft.node")))
  .digest("hex");

let work: string;
let netns: string;
let planted: string;
let marker: string;
let expected: string;

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs `command args` in its own process group, with TMPDIR of its own; the group is killed after HARD_TIMEOUT_MS. */
function run(command: string, args: string[], env: Record<string, string>, stdin: string, tmp: string): Promise<Run> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(command, args, {
      detached: true,
      env: { PATH: pathWithTestNode("/usr/sbin:/usr/bin:/sbin:/bin"), TMPDIR: tmp, ...env },
      stdio: ["pipe", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => (stdout += d));
    child.stderr.on("data", (d) => (stderr += d));
    const timer = setTimeout(() => {
      try {
        process.kill(-child.pid!, "SIGKILL");
      } catch {
        // already gone
      }
      reject(new Error(`${command} ${args.join(" ")} did not end within ${HARD_TIMEOUT_MS} ms (killed): ${stderr}`));
    }, HARD_TIMEOUT_MS);
    child.on("error", reject);
    child.on("close", (code) => {
      clearTimeout(timer);
      resolvePromise({ code, stdout, stderr });
    });
    child.stdin.end(stdin);
  });
}

const CONF = JSON.stringify({ cniVersion: "1.0.0", name: "lo", type: "loopback" });

function cniEnv(cache: string): Record<string, string> {
  return {
    WEFT_CACHE_DIR: cache,
    CNI_COMMAND: "ADD",
    CNI_CONTAINERID: "cache-test",
    CNI_NETNS: `/run/netns/${netns}`,
    CNI_IFNAME: "lo",
    CNI_PATH: "/nonexistent",
  };
}

/** A loopback ADD with WEFT_CACHE_DIR=cache, optionally inside `unshare -m sh -c <setup>; exec ...`. */
async function loopbackAdd(cache: string, setup?: string, exe = scriptProgram("loopback")): Promise<Run> {
  const tmp = mkdtempSync(join(work, "tmp-"));
  try {
    const result = setup
      ? await run("unshare", ["-m", "--propagation", "private", "sh", "-ec", `${setup}\nexec "$0"`, exe], cniEnv(cache), CONF, tmp)
      : await run(exe, [], cniEnv(cache), CONF, tmp);
    // The private copy of the addon is removed once loaded.
    expect(readdirSync(tmp)).toEqual([]);
    return result;
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

/** Exit 0, the same result as with a good cache, exactly one stderr line naming why, nothing planted run. */
function expectRanWithout(result: Run, cache: string, why: RegExp | string): void {
  expect(result.code, result.stderr).toBe(0);
  expect(result.stdout).toBe(expected);
  const lines = result.stderr.split("\n").filter(Boolean);
  expect(lines).toHaveLength(1);
  expect(lines[0]).toContain(`weft: cache ${cache} not used: `);
  expect(lines[0]).toMatch(why);
  expect(lines[0]).toMatch(/; running without it$/);
  expect(existsSync(marker)).toBe(false);
}

/** A case's own directory under the file's work directory. */
function caseDir(name: string): string {
  const dir = join(work, name);
  mkdirSync(dir, { mode: 0o700 });
  return dir;
}

/** <dir>/<addon sha>/weft.node: a library whose constructor writes the marker when loaded. */
function plant(dir: string, mode = 0o700): void {
  mkdirSync(join(dir, ADDON_SHA), { mode });
  writeFileSync(join(dir, ADDON_SHA, "weft.node"), readFileSync(planted), { mode: 0o500 });
}

describe.skipIf(need.skip)(need.title("the cache is only an optimisation"), () => {
  beforeAll(async () => {
    work = mkdtempSync(join(tmpdir(), "weft-cache-test-"));
    chmodSync(work, 0o700);
    marker = join(work, "planted-ran");
    writeFileSync(
      join(work, "planted.c"),
      `#include <stdio.h>\n__attribute__((constructor)) static void planted(void) { FILE *f = fopen(${JSON.stringify(marker)}, "w"); if (f) fclose(f); }\n`,
    );
    planted = join(work, "planted.so");
    execFileSync("gcc", ["-shared", "-fPIC", "-o", planted, join(work, "planted.c")]);
    netns = uniqueName("wcache-");
    execFileSync("ip", ["netns", "add", netns]);
    const good = await loopbackAdd(caseDir("good"));
    expect(good.code, good.stderr).toBe(0);
    expect(good.stderr).toBe("");
    expected = good.stdout;
    expect(JSON.parse(expected).interfaces[0].name).toBe("lo");
  }, 60_000);

  afterAll(() => {
    if (netns) execFileSync("ip", ["netns", "delete", netns]);
    if (work) rmSync(work, { recursive: true, force: true });
  });

  it("a second run uses the cache the first wrote, silently", async () => {
    const cache = caseDir("reuse");
    for (let i = 0; i < 2; i++) {
      const result = await loopbackAdd(cache);
      expect(result.code, result.stderr).toBe(0);
      expect(result.stderr).toBe("");
      expect(result.stdout).toBe(expected);
    }
    // The bundle's directory and the addon's.
    expect(readdirSync(cache)).toHaveLength(2);
    expect(readdirSync(cache)).toContain(ADDON_SHA);
  });

  it("under /proc/self (a symlink) it runs without the cache and ends", async () => {
    expectRanWithout(await loopbackAdd("/proc/self/weft"), "/proc/self/weft", "/proc/self is a symbolic link");
  });

  it("where the root cannot be looked up or made (/proc/1/fdinfo/x) it runs without the cache and ends", async () => {
    expectRanWithout(await loopbackAdd("/proc/1/fdinfo/x"), "/proc/1/fdinfo/x", /(lstat|mkdir) \/proc\/1\/fdinfo\/x: E[A-Z]+/);
  });

  it("a read-only cache directory", async () => {
    const cache = caseDir("readonly");
    expectRanWithout(await loopbackAdd(cache, `mount -t tmpfs -o ro,mode=0700 weft-cache-test "${cache}"`), cache, "EROFS");
    expect(readdirSync(cache)).toEqual([]);
  });

  it("a full cache file system", async () => {
    const cache = caseDir("full");
    expectRanWithout(await loopbackAdd(cache, `mount -t tmpfs -o size=4k,mode=0700 weft-cache-test "${cache}"`), cache, "ENOSPC");
  });

  it("a cache full only when the code cache is written at exit", async () => {
    const cache = caseDir("full-at-exit");
    // Room for bundle.js and the addon (about 100 kB), not for the code cache (about 80 kB more).
    expectRanWithout(
      await loopbackAdd(cache, `mount -t tmpfs -o size=150k,mode=0700 weft-cache-test "${cache}"`),
      cache,
      /write .*\.jscache: ENOSPC/,
    );
  });

  it("a cache root owned by another user", async () => {
    const cache = caseDir("foreign");
    chownSync(cache, 65534, 65534);
    plant(cache);
    chownSync(join(cache, ADDON_SHA), 65534, 65534);
    expectRanWithout(await loopbackAdd(cache), cache, "is owned by uid 65534");
  });

  it("a cache root that is a regular file", async () => {
    const cache = join(work, "file");
    writeFileSync(cache, "not a directory\n");
    expectRanWithout(await loopbackAdd(cache), cache, "is not a directory");
    expect(readFileSync(cache, "utf8")).toBe("not a directory\n");
  });

  it("a cache root that is a symlink to a private directory holding a planted addon", async () => {
    const target = caseDir("symlink-target");
    plant(target);
    const cache = join(work, "symlink");
    symlinkSync(target, cache);
    expectRanWithout(await loopbackAdd(cache), cache, `${cache} is a symbolic link`);
  });

  it("an addon's <sha256> directory that is a symlink to a private directory holding a planted addon", async () => {
    const cache = caseDir("sha-symlink");
    const target = caseDir("sha-symlink-target");
    writeFileSync(join(target, "weft.node"), readFileSync(planted), { mode: 0o500 });
    symlinkSync(target, join(cache, ADDON_SHA));
    expectRanWithout(await loopbackAdd(cache), cache, `${ADDON_SHA} is a symbolic link`);
  });

  it("a world-writable cache root holding a planted addon", async () => {
    const cache = caseDir("world");
    plant(cache);
    chmodSync(cache, 0o777);
    expectRanWithout(await loopbackAdd(cache), cache, "is writable by group or others (mode 777)");
  });

  it("a group-writable cache root", async () => {
    const cache = caseDir("group");
    chmodSync(cache, 0o770);
    expectRanWithout(await loopbackAdd(cache), cache, "is writable by group or others (mode 770)");
  });

  it("a cache under a world-writable directory without the sticky bit", async () => {
    const parent = caseDir("open-parent");
    chmodSync(parent, 0o777);
    const cache = join(parent, "cache");
    expectRanWithout(await loopbackAdd(cache), cache, `${parent} is writable by group or others`);
    expect(readdirSync(parent)).toEqual([]);
  });

  it("an addon in a trusted chain whose bytes are not the addon's is never loaded, and is removed", async () => {
    const cache = caseDir("mismatch");
    plant(cache);
    expectRanWithout(await loopbackAdd(cache), cache, `${ADDON_SHA}/weft.node does not match its sha256`);
    expect(existsSync(join(cache, ADDON_SHA, "weft.node"))).toBe(false);
    const again = await loopbackAdd(cache);
    expect(again.code, again.stderr).toBe(0);
    expect(again.stderr).toBe("");
  });

  it("a bundle.js that is not the bundle is never run, and is removed", async () => {
    const cache = caseDir("bundle-mismatch");
    const first = await loopbackAdd(cache);
    expect(first.stderr).toBe("");
    const bundleDir = readdirSync(cache).find((name) => existsSync(join(cache, name, "bundle.js")))!;
    const bundle = join(cache, bundleDir, "bundle.js");
    const original = readFileSync(bundle, "latin1");
    // It was hashed in full and stamped: the stamp must not vouch for other bytes.
    expect(existsSync(`${bundle}.verified`)).toBe(true);
    // Same length, different text: what a check by length alone would have run.
    writeFileSync(bundle, `require("fs").writeFileSync(${JSON.stringify(marker)}, "");`.padEnd(original.length, " "), { mode: 0o600 });
    expectRanWithout(await loopbackAdd(cache), cache, "bundle.js does not match its sha256");
    expect(existsSync(bundle)).toBe(false);
    expect(existsSync(`${bundle}.verified`)).toBe(false);
  });

  it("many first runs at once on one cache all succeed, silently, with whole files", async () => {
    const cache = caseDir("race");
    const results = await Promise.all(Array.from({ length: 8 }, () => loopbackAdd(cache)));
    for (const result of results) {
      expect(result.code, result.stderr).toBe(0);
      expect(result.stderr).toBe("");
      expect(result.stdout).toBe(expected);
    }
    const again = await loopbackAdd(cache);
    expect(again.stderr).toBe("");
    for (const dir of readdirSync(cache)) for (const file of readdirSync(join(cache, dir))) expect(file).not.toMatch(/\.tmp$/);
  });

  it("an addon replaced by a planted library while runs load it is never run", { timeout: 120_000 }, async () => {
    const cache = caseDir("swap");
    expect((await loopbackAdd(cache)).stderr).toBe("");
    const file = join(cache, ADDON_SHA, "weft.node");
    const good = readFileSync(file);
    writeFileSync(join(work, "good.node"), good, { mode: 0o500 });
    // Swap the good file and the planted one back and forth by rename(2), as fast as it goes, during
    // the runs: a run that hashed one file and then loaded another by its path would run the planted one.
    writeFileSync(
      join(work, "swapper.c"),
      `#include <stdio.h>\n#include <unistd.h>\nint main(int c, char **v) { char a[4096], b[4096]; snprintf(a, sizeof a, "%s.a", v[3]); snprintf(b, sizeof b, "%s.b", v[3]);\n` +
        `for (;;) { unlink(a); if (link(v[1], a) == 0) rename(a, v[3]); unlink(b); if (link(v[2], b) == 0) rename(b, v[3]); } }\n`,
    );
    execFileSync("gcc", ["-O2", "-o", join(work, "swapper"), join(work, "swapper.c")]);
    const swapper = spawn(join(work, "swapper"), [planted, join(work, "good.node"), file], { detached: true, stdio: "ignore" });
    try {
      // A run loses the race now and then, not every time: 60 runs, 6 at a time.
      for (let batch = 0; batch < 10; batch++) {
        const results = await Promise.all(Array.from({ length: 6 }, () => loopbackAdd(cache)));
        for (const result of results) {
          expect(result.code, result.stderr).toBe(0);
          expect(result.stdout).toBe(expected);
          expect(result.stderr.split("\n").filter(Boolean).length).toBeLessThanOrEqual(1);
        }
        expect(existsSync(marker)).toBe(false);
      }
    } finally {
      const exited = new Promise((done) => swapper.once("exit", done));
      process.kill(-swapper.pid!, "SIGKILL");
      await exited;
    }
    expect(existsSync(marker)).toBe(false);
  });

  it("the single executable (scripts/standalone.mjs) starts with the same loader and behaves the same", { timeout: 180_000 }, async () => {
    const out = join(work, "standalone");
    execFileSync(process.execPath, [join(ROOT, "scripts/standalone.mjs"), "--out", out], {
      cwd: ROOT,
      stdio: "ignore",
      timeout: 150_000,
      killSignal: "SIGKILL",
    });
    const exe = join(out, "loopback");
    const good = caseDir("standalone-good");
    for (let i = 0; i < 2; i++) {
      const result = await loopbackAdd(good, undefined, exe);
      expect(result.code, result.stderr).toBe(0);
      expect(result.stderr).toBe("");
      expect(result.stdout).toBe(expected);
    }
    expectRanWithout(await loopbackAdd("/proc/self/weft", undefined, exe), "/proc/self/weft", "/proc/self is a symbolic link");
    const world = caseDir("standalone-world");
    plant(world);
    chmodSync(world, 0o777);
    expectRanWithout(await loopbackAdd(world, undefined, exe), world, "is writable by group or others (mode 777)");
    const mismatch = caseDir("standalone-mismatch");
    plant(mismatch);
    expectRanWithout(await loopbackAdd(mismatch, undefined, exe), mismatch, `${ADDON_SHA}/weft.node does not match its sha256`);
  });
});
