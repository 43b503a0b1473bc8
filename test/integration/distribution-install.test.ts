import { spawn } from "node:child_process";
import { cpSync, existsSync, linkSync, lstatSync, mkdirSync, readdirSync, readFileSync, statSync, utimesSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AGENTS, buildStandalone, ROOT, run, tempDir, TYPES, version } from "./distribution-helpers.js";

// scripts/install, weft's one installer, against temp CNI dirs, run directly and through `make
// install`: atomic replacement while plugins are being executed, and the conflist rules. Two sources
// of each form (standalone with and without V8's code cache; bin/ and a copy of it), so that every
// install in the loop replaces every name with a new file.
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
 * `loops` processes each running VERSION through all five names until `stop` exists (or a minute
 * passed, so that nothing outlives a failed test); resolves to the successes and the failures (with
 * what failed) once they end. Each run appends "." (a success) or "F" (a failure) to `progress`.
 */
function versionLoops(bin: string, loops: number, stop: string, progress: string): Promise<{ ok: number; failures: string[] }> {
  const script = `
    ok=0
    until [ -e "${stop}" ] || [ $SECONDS -ge 60 ]; do
      for t in ${TYPES.join(" ")}; do
        if out=$(CNI_COMMAND=VERSION "${bin}/$t" </dev/null 2>&1) && [[ $out == *supportedVersions* ]]; then
          ok=$((ok + 1))
          printf . >>"${progress}"
        else
          echo "FAIL $t: $(printf '%s' "$out" | tr '\n' '|')"
          printf F >>"${progress}"
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

/** What the loops have appended to `progress` so far. */
function progressOf(progress: string): string {
  return existsSync(progress) ? readFileSync(progress, "utf8") : "";
}

/** Waits until `done` holds for the loops' progress; fails after a minute (a loop that stopped). */
async function untilProgress(progress: string, what: string, done: (runs: string) => boolean): Promise<void> {
  for (let tries = 0; tries < 3000; tries++) {
    if (done(progressOf(progress))) return;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  throw new Error(`the VERSION loops never ${what}: ${progressOf(progress).length} runs`);
}

describe("scripts/install", () => {
  it("installs the standalone executable once under the CNI names (the node agent not among them), and the conflist when absent", async () => {
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

  it("reads the names from the build's lists: programs for the CNI bin dir, agents for --agent-dir only", () => {
    for (const dir of [standalone, join(ROOT, "bin")]) {
      expect(readFileSync(join(dir, "programs"), "utf8")).toBe(TYPES.map((t) => `${t}\n`).join(""));
      expect(readFileSync(join(dir, "agents"), "utf8")).toBe(AGENTS.map((t) => `${t}\n`).join(""));
    }
  });

  it("installs the node agent into --agent-dir alone, the standalone form as another link of the same file, and runs its --version", async () => {
    const bin = join(tmp.dir, "agent/bin");
    const agents = join(tmp.dir, "agent/sbin");
    const { stdout } = await install(["--from", standalone, "--bin-dir", bin, "--agent-dir", agents, "--no-conf"]);
    expect(stdout).toContain(`installed the node agent ${AGENTS.join(" ")} into ${agents}\n`);
    expect(readdirSync(bin).sort()).toEqual([...TYPES].sort());
    expect(readdirSync(agents)).toEqual(["flanneld"]);
    expect(statSync(join(agents, "flanneld")).ino).toBe(statSync(join(bin, "flannel")).ino);
    expect(staged(agents)).toEqual([]);
    // Environment alone, as the image's entrypoint takes it; the script form is a copy of bin/'s file.
    const scriptAgents = join(tmp.dir, "agent/script-sbin");
    await install([], {
      WEFT_FROM: join(ROOT, "bin"),
      WEFT_BIN_DIR: join(tmp.dir, "agent/script-bin"),
      WEFT_AGENT_DIR: scriptAgents,
      WEFT_NO_CONF: "1",
    });
    expect(readFileSync(join(scriptAgents, "flanneld")).equals(readFileSync(join(ROOT, "bin/flanneld")))).toBe(true);
    expect(statSync(join(scriptAgents, "flanneld")).mode & 0o777).toBe(0o755);
    const { stdout: version } = await run(join(scriptAgents, "flanneld"), ["--version"], { env: { PATH: "/usr/bin:/bin", ...CACHE } });
    expect(version).toMatch(/^\d+\.\d+\.\d+\+[0-9a-f]{12}\n$/);
  });

  it("fails an install whose agent does not run, naming it", async () => {
    // bin/ with a flanneld cut short, as a broken build or copy would leave it.
    const broken = join(tmp.dir, "broken-build");
    mkdirSync(broken, { recursive: true });
    for (const name of [...TYPES, "programs", "agents", "package.json"]) linkSync(join(ROOT, "bin", name), join(broken, name));
    writeFileSync(join(broken, "flanneld"), readFileSync(join(ROOT, "bin/flanneld")).subarray(0, 4096), { mode: 0o755 });
    const agents = join(tmp.dir, "broken/sbin");
    await expect(install(["--from", broken, "--bin-dir", join(tmp.dir, "broken/bin"), "--agent-dir", agents, "--no-conf"])).rejects.toMatchObject({
      stderr: expect.stringContaining(`weft install: ${agents}/flanneld does not run on this node: `),
    });
  });

  it("refuses --agent-dir from a build that lists no agent, before installing anything", async () => {
    // A build from before the agent: its executable and programs file, no agents file.
    const old = join(tmp.dir, "old-build");
    mkdirSync(old, { recursive: true });
    for (const name of ["weft", "programs"]) linkSync(join(standalone, name), join(old, name));
    const bin = join(tmp.dir, "old/bin");
    const agents = join(tmp.dir, "old/agents");
    await expect(install(["--from", old, "--bin-dir", bin, "--agent-dir", agents, "--no-conf"])).rejects.toMatchObject({
      stderr: expect.stringContaining("has no agents file"),
    });
    expect([existsSync(bin), existsSync(agents)]).toEqual([false, false]);
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
  ])(
    "replaces the %s executables under concurrent VERSION loops with zero failures",
    async (_form, a, b) => {
      const bin = join(tmp.dir, `live-${_form}/bin`);
      await install(["--from", a, "--bin-dir", bin, "--no-conf"]);
      const stop = join(tmp.dir, `stop-${_form}`);
      const progress = join(tmp.dir, `progress-${_form}`);
      const loops = versionLoops(bin, 4, stop, progress);
      // Counted in VERSION runs, not time: each install starts once the loops have run again since the
      // last one, and they keep running while it replaces the files.
      const INSTALLS = 8;
      const RUNS_BETWEEN = 10;
      try {
        for (let installs = 0; installs < INSTALLS; installs++) {
          const before = progressOf(progress).length;
          await untilProgress(progress, "ran between two installs", (runs) => runs.length >= before + RUNS_BETWEEN);
          await install(["--from", installs % 2 ? a : b, "--bin-dir", bin, "--no-conf", "--no-verify"]);
        }
        const after = progressOf(progress).length;
        await untilProgress(progress, "ran after the last install", (runs) => runs.length >= after + RUNS_BETWEEN);
      } finally {
        writeFileSync(stop, "");
      }
      const { ok, failures } = await loops;
      expect(failures).toEqual([]);
      expect(ok).toBeGreaterThanOrEqual((INSTALLS + 1) * RUNS_BETWEEN);
      expect(staged(bin)).toEqual([]);
    },
    120_000,
  );

  it("(control) the same loops catch an install that writes the files in place", async () => {
    const bin = join(tmp.dir, "inplace/bin");
    await install(["--from", join(ROOT, "bin"), "--bin-dir", bin, "--no-conf"]);
    const stop = join(tmp.dir, "stop-inplace");
    const progress = join(tmp.dir, "progress-inplace");
    const loops = versionLoops(bin, 4, stop, progress);
    let copyFailures = 0;
    try {
      await untilProgress(progress, "started", (runs) => runs.length > 0);
      // Copy in place until a copy or a VERSION run fails; 200 rounds is far beyond what that takes.
      for (let i = 0; i < 200 && copyFailures === 0 && !progressOf(progress).includes("F"); i++) {
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
  }, 120_000);
});

describe("make install", () => {
  // The Makefile's install targets run scripts/install. -o: the suite has built bin/ already, and
  // the standalone form comes from this file's own build (FROM).
  const make = (args: string[]) =>
    run("make", ["-s", "-C", ROOT, "-o", "build", "-o", "standalone", ...args], { env: { PATH: "/usr/bin:/bin", ...CACHE } });
  const defaultConflist = () => readFileSync(join(ROOT, "conf/10-flannel.conflist"), "utf8");

  it("installs bin/ (the script form) under DESTDIR and PREFIX through scripts/install, the conflist only when absent", async () => {
    const dest = join(tmp.dir, "make-script");
    const args = ["install", `DESTDIR=${dest}`, "PREFIX=/opt/weft"];
    const bin = join(dest, "opt/weft/bin");
    const conflist = join(dest, "etc/cni/net.d/10-flannel.conflist");
    const { stdout } = await make(args);
    expect(stdout).toContain(`installed ${TYPES.join(" ")} into ${bin} (script form`);
    expect(readdirSync(bin).sort()).toEqual([...TYPES].sort());
    for (const t of TYPES) {
      expect(readFileSync(join(bin, t)).equals(readFileSync(join(ROOT, "bin", t))), t).toBe(true);
      expect(statSync(join(bin, t)).mode & 0o777).toBe(0o755);
    }
    expect(readFileSync(conflist, "utf8")).toBe(defaultConflist());
    // The node agent: into AGENTDIR, never beside the CNI plugins.
    const agentDir = join(dest, "usr/local/bin");
    expect(stdout).toContain(`installed the node agent ${AGENTS.join(" ")} into ${agentDir}`);
    expect(readdirSync(agentDir).sort()).toEqual([...AGENTS].sort());
    for (const a of AGENTS) expect(readFileSync(join(agentDir, a)).equals(readFileSync(join(ROOT, "bin", a))), a).toBe(true);

    const mine = '{"name":"operator-edited"}\n';
    writeFileSync(conflist, mine);
    expect((await make(args)).stdout).toContain("kept the existing");
    expect(readFileSync(conflist, "utf8")).toBe(mine);
    await make([...args, "FORCE_CONF=1"]);
    expect(readFileSync(conflist, "utf8")).toBe(defaultConflist());
    expect(staged(bin)).toEqual([]);
  });

  it("installs the standalone form the same way: one file under the five names", async () => {
    const dest = join(tmp.dir, "make-standalone");
    const bin = join(dest, "opt/cni/bin");
    const { stdout } = await make(["install", `DESTDIR=${dest}`, `FROM=${standalone}`]);
    expect(stdout).toContain(`installed ${TYPES.join(" ")} into ${bin} (standalone form`);
    expect(new Set(TYPES.map((t) => statSync(join(bin, t)).ino)).size).toBe(1);
    expect(readdirSync(bin).sort()).toEqual([...TYPES].sort());
    for (const t of TYPES) expect((await version(join(bin, t), CACHE)).ok).toBe(true);
    expect(readFileSync(join(dest, "etc/cni/net.d/10-flannel.conflist"), "utf8")).toBe(defaultConflist());
    // FORM=standalone builds dist/standalone and installs that, through the same installer.
    const { stdout: plan } = await run("make", ["-n", "-C", ROOT, "install", "FORM=standalone", `DESTDIR=${dest}`]);
    expect(plan).toContain("node scripts/standalone.mjs");
    expect(plan).toContain(`sh scripts/install --standalone --bin-dir ${bin}`);
  });

  it("install-conf writes only the conflist, by the same rule", async () => {
    const dest = join(tmp.dir, "make-conf");
    const conflist = join(dest, "etc/cni/net.d/10-flannel.conflist");
    await make(["install-conf", `DESTDIR=${dest}`]);
    expect(readdirSync(dest)).toEqual(["etc"]);
    expect(readFileSync(conflist, "utf8")).toBe(defaultConflist());
    writeFileSync(conflist, "{}\n");
    expect((await make(["install-conf", `DESTDIR=${dest}`])).stdout).toContain("kept the existing");
    expect(readFileSync(conflist, "utf8")).toBe("{}\n");
  });
});
