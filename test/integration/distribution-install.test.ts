import { spawn } from "node:child_process";
import { cpSync, existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, statSync, utimesSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildStandalone, ROOT, run, tempDir, TYPES, version } from "./distribution-helpers.js";

// scripts/install against temp CNI dirs: atomic replacement while plugins are being executed, and
// the conflist rules. Two sources of each form (standalone with and without V8's code cache; bin/
// and a copy of it), so that every install in the loop replaces every name with a new file.
const INSTALL = join(ROOT, "scripts/install");
const tmp = tempDir("weft-install-");
const standalone = join(tmp.dir, "standalone");
const standaloneB = join(tmp.dir, "standalone-b");
const binCopy = join(tmp.dir, "bin-copy");

beforeAll(async () => {
  await Promise.all([buildStandalone(standalone), buildStandalone(standaloneB, "--no-code-cache")]);
  cpSync(join(ROOT, "bin"), binCopy, { recursive: true });
}, 120_000);
afterAll(() => tmp.remove());

// bin/'s loader keeps V8 code caches beside the native addon cache: this test's own, not the host's.
const CACHE = { WEFT_CACHE_DIR: join(tmp.dir, "cache") };

function install(args: string[], env: Record<string, string> = {}) {
  return run(INSTALL, args, { env: { PATH: "/usr/bin:/bin", ...CACHE, ...env } });
}

/** Files the installer stages beside their final names: none may be left behind. */
function staged(dir: string): string[] {
  return readdirSync(dir).filter((name) => name.includes("weft-new"));
}

/**
 * `loops` processes each running VERSION through all five names until `stop` exists; resolves to
 * the successes and the failures (with what failed) once they end.
 */
function versionLoops(bin: string, loops: number, stop: string): Promise<{ ok: number; failures: string[] }> {
  const script = `
    ok=0
    until [ -e "${stop}" ] || [ $SECONDS -ge 60 ]; do
      for t in ${TYPES.join(" ")}; do
        if out=$(CNI_COMMAND=VERSION "${bin}/$t" </dev/null 2>&1) && [[ $out == *supportedVersions* ]]; then
          ok=$((ok + 1))
        else
          echo "FAIL $t: $(printf '%s' "$out" | tr '\n' '|')"
        fi
      done
    done
    echo "OK $ok"`;
  const one = () =>
    new Promise<{ ok: number; failures: string[] }>((resolve, reject) => {
      const child = spawn("bash", ["--norc", "-c", script], { env: { PATH: "/usr/bin:/bin", ...CACHE }, stdio: ["ignore", "pipe", "inherit"] });
      let out = "";
      child.stdout.on("data", (chunk: Buffer) => (out += chunk.toString()));
      child.on("error", reject);
      child.on("close", () => {
        const lines = out.split("\n");
        resolve({
          ok: Number(lines.find((l) => l.startsWith("OK "))?.slice(3) ?? 0),
          failures: lines.filter((l) => l.startsWith("FAIL ")),
        });
      });
    });
  return Promise.all(Array.from({ length: loops }, one)).then((all) => ({
    ok: all.reduce((n, r) => n + r.ok, 0),
    failures: all.flatMap((r) => r.failures),
  }));
}

describe("scripts/install", () => {
  it("installs the standalone executable once under the five names, and the conflist when absent", async () => {
    const bin = join(tmp.dir, "fresh/bin");
    const conf = join(tmp.dir, "fresh/net.d");
    const { stdout } = await install(["--from", standalone, "--bin-dir", bin, "--conf-dir", conf]);
    expect(stdout).toContain("standalone form");
    const inodes = new Set(TYPES.map((t) => statSync(join(bin, t)).ino));
    expect(inodes.size).toBe(1);
    expect(statSync(join(bin, "flannel")).mode & 0o777).toBe(0o755);
    expect(readdirSync(bin).sort()).toEqual([...TYPES].sort());
    expect(readFileSync(join(conf, "10-flannel.conflist"), "utf8")).toBe(readFileSync(join(ROOT, "conf/10-flannel.conflist"), "utf8"));
    expect(statSync(join(conf, "10-flannel.conflist")).mode & 0o777).toBe(0o644);
    expect(staged(conf)).toEqual([]);
    for (const t of TYPES) expect((await version(join(bin, t), CACHE)).ok).toBe(true);
  });

  it("leaves an existing conflist alone unless asked, and takes its settings from the environment too", async () => {
    const bin = join(tmp.dir, "conf/bin");
    const conf = join(tmp.dir, "conf/net.d");
    mkdirSync(conf, { recursive: true });
    const mine = '{"name":"operator-edited"}\n';
    writeFileSync(join(conf, "10-flannel.conflist"), mine);
    const before = lstatSync(join(conf, "10-flannel.conflist"));
    const env = { WEFT_FROM: join(ROOT, "bin"), WEFT_BIN_DIR: bin, WEFT_CONF_DIR: conf };
    const { stdout } = await install([], env);
    expect(stdout).toContain("kept the existing");
    expect(stdout).toContain("script form");
    const after = lstatSync(join(conf, "10-flannel.conflist"));
    expect([after.ino, after.mtimeMs, readFileSync(join(conf, "10-flannel.conflist"), "utf8")]).toEqual([before.ino, before.mtimeMs, mine]);

    await install(["--force-conf"], env);
    expect(readFileSync(join(conf, "10-flannel.conflist"), "utf8")).toBe(readFileSync(join(ROOT, "conf/10-flannel.conflist"), "utf8"));

    const none = join(tmp.dir, "conf/none");
    await install(["--no-conf"], { ...env, WEFT_CONF_DIR: none });
    expect(existsSync(none)).toBe(false);
  });

  it("removes what an installer killed an hour ago left staged, and nothing newer", async () => {
    const bin = join(tmp.dir, "stale/bin");
    mkdirSync(bin, { recursive: true });
    const old = join(bin, ".bridge.weft-new.4242");
    const fresh = join(bin, ".bridge.weft-new.4343");
    writeFileSync(old, "");
    writeFileSync(fresh, "");
    utimesSync(old, new Date(Date.now() - 2 * 3600_000), new Date(Date.now() - 2 * 3600_000));
    await install(["--from", join(ROOT, "bin"), "--bin-dir", bin, "--no-conf", "--no-verify"]);
    expect(staged(bin)).toEqual([".bridge.weft-new.4343"]);
  });

  it("fails without touching the target when the source has nothing to install", async () => {
    const bin = join(tmp.dir, "bad/bin");
    await install(["--from", standalone, "--bin-dir", bin, "--no-conf"]);
    const before = statSync(join(bin, "bridge")).ino;
    await expect(install(["--from", join(tmp.dir, "nothing"), "--bin-dir", bin, "--no-conf"])).rejects.toMatchObject({
      stderr: expect.stringContaining("nothing to install"),
    });
    expect(statSync(join(bin, "bridge")).ino).toBe(before);
    expect(staged(bin)).toEqual([]);
  });

  // A script is opened more than once by path (by the kernel for its #! line, by node, and by bin/'s
  // loader for its bundle): replaced by a file of another kind in between, the later opens get that
  // file. So each form is replaced by its own kind here; switching forms on a live node is the one
  // window the installer cannot close (README).
  it.each([
    ["standalone", standalone, standaloneB],
    ["script", join(ROOT, "bin"), binCopy],
  ])("replaces the %s executables under concurrent VERSION loops with zero failures", async (_form, a, b) => {
    const bin = join(tmp.dir, `live-${_form}/bin`);
    await install(["--from", a, "--bin-dir", bin, "--no-conf"]);
    const stop = join(tmp.dir, `stop-${_form}`);
    const loops = versionLoops(bin, 4, stop);
    let installs = 0;
    const until = Date.now() + 4_000;
    try {
      while (Date.now() < until || installs < 6) {
        await install(["--from", installs % 2 ? a : b, "--bin-dir", bin, "--no-conf", "--no-verify"]);
        installs++;
      }
    } finally {
      writeFileSync(stop, "");
    }
    const { ok, failures } = await loops;
    expect(failures).toEqual([]);
    expect(ok).toBeGreaterThan(20);
    expect(staged(bin)).toEqual([]);
  }, 60_000);

  it("(control) the same loops catch an install that writes the files in place", async () => {
    const bin = join(tmp.dir, "inplace/bin");
    await install(["--from", join(ROOT, "bin"), "--bin-dir", bin, "--no-conf"]);
    const stop = join(tmp.dir, "stop-inplace");
    const loops = versionLoops(bin, 4, stop);
    let copyFailures = 0;
    const until = Date.now() + 2_500;
    try {
      for (let i = 0; Date.now() < until || i < 4; i++) {
        for (const t of TYPES) {
          const from = i % 2 ? join(ROOT, "bin", t) : join(standalone, "weft");
          await run("cp", [from, join(bin, t)]).catch(() => copyFailures++);
        }
      }
    } finally {
      writeFileSync(stop, "");
    }
    const { failures } = await loops;
    expect(failures.length + copyFailures).toBeGreaterThan(0);
  }, 60_000);
});
