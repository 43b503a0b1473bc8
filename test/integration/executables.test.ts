import { spawnSync } from "node:child_process";
import { chmodSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, utimesSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { CNI_TYPES } from "../../plugins/registry.js";
import { pathWithTestNode, scriptProgram, WEFT_FORM, WEFT_RUNTIME, weftProgram } from "../helpers/executables.js";
import { createNetns, removeNetns } from "../helpers/netns.js";
import { command } from "../helpers/prerequisites.js";

const PLUGINS = CNI_TYPES;
const ALL_VERSIONS = ["0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"];

/**
 * Runs an executable of the form under test (WEFT_BIN) the way a kubelet does: a clean environment
 * with PATH and the CNI_ variables.
 */
function runPlugin(type: string, env: Record<string, string>, stdin: string) {
  const out = spawnSync(weftProgram(type), [], {
    env: { PATH: pathWithTestNode("/usr/local/bin:/usr/bin:/bin"), ...env },
    input: stdin,
    encoding: "utf8",
  });
  return { status: out.status, stdout: out.stdout, stderr: out.stderr };
}

const codeCacheFiles = (cache: string) => readdirSync(cache).flatMap((dir) => readdirSync(join(cache, dir)).filter((f) => f.endsWith(".jscache")));

const ADD = { CNI_COMMAND: "ADD", CNI_CONTAINERID: "exec-test", CNI_NETNS: "/proc/self/ns/net", CNI_IFNAME: "eth0", CNI_PATH: "/nonexistent" };

// The script form's file itself: bin/ whatever the form under test.
describe.each(PLUGINS)("bin/%s", (type) => {
  it("is one self-contained file: no require of anything but Node's own modules", () => {
    const source = readFileSync(scriptProgram(type), "utf8");
    expect(source.startsWith("#!/usr/bin/env node\n")).toBe(true);
    // (ajv's runtime modules carry their own require call as a string: that one is text, not code.)
    const required = [...source.matchAll(/(?<!['"])\brequire\("([^"]+)"\)/g)].map((m) => m[1]);
    expect(required.filter((name) => !name!.startsWith("node:") && !/^[a-z_]+$/.test(name!))).toEqual([]);
    // The loader compiles the bundle with vm.Script, where import() has no loader on Node 20.
    expect(source).not.toMatch(/\bimport\(["'`]/);
  });

  it("runs from a directory with no node_modules anywhere above it", () => {
    const dir = mkdtempSync(join(tmpdir(), "weft-lonely-"));
    try {
      copyFileSync(scriptProgram(type), join(dir, type));
      chmodSync(join(dir, type), 0o755);
      const out = spawnSync(join(dir, type), [], {
        env: { PATH: pathWithTestNode("/usr/bin:/bin"), ...ADD },
        input: JSON.stringify({ cniVersion: "1.0.0", name: "n", type, dns: { nameservers: 1 } }),
        encoding: "utf8",
      });
      expect(out.stderr).not.toContain("Cannot find module");
      expect(JSON.parse(out.stdout)).toMatchObject({ code: 7, msg: expect.stringContaining("dns.nameservers") });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

// What every form does alike: the form under test.
describe.each(PLUGINS)(`%s (${WEFT_FORM} form)`, (type) => {
  it("answers VERSION with all seven versions", () => {
    const out = runPlugin(type, { CNI_COMMAND: "VERSION" }, '{"cniVersion":"1.1.0"}');
    expect(out.status).toBe(0);
    expect(JSON.parse(out.stdout)).toEqual({ cniVersion: "1.1.0", supportedVersions: ALL_VERSIONS });
  });

  const codeCache =
    WEFT_RUNTIME === "bun"
      ? "writes no code cache: its bytecode is in the executable"
      : "keeps a V8 code cache of a verb only from a run of it that succeeded";
  it(codeCache, () => {
    const cache = mkdtempSync(join(tmpdir(), "weft-codecache-"));
    try {
      // A failed first run compiles only its error path: a cache of it would slow every later run.
      const failed = runPlugin(type, { ...ADD, WEFT_CACHE_DIR: cache }, "this is not json");
      expect(failed.status).toBe(1);
      expect(codeCacheFiles(cache)).toEqual([]);
      const answered = runPlugin(type, { CNI_COMMAND: "VERSION", WEFT_CACHE_DIR: cache }, '{"cniVersion":"1.1.0"}');
      expect(answered.status).toBe(0);
      expect(codeCacheFiles(cache)).toEqual(WEFT_RUNTIME === "bun" ? [] : [`${type}.VERSION.jscache`]);
    } finally {
      rmSync(cache, { recursive: true, force: true });
    }
  });

  it("answers garbage on stdin with a code 6 error JSON and exit 1", () => {
    const out = runPlugin(type, ADD, "this is not json");
    expect(out.status).toBe(1);
    expect(JSON.parse(out.stdout)).toMatchObject({ code: 6, msg: expect.stringContaining("error decoding network config") });
  });

  it("answers cniVersion 9.9.9 with code 1", () => {
    const out = runPlugin(type, ADD, JSON.stringify({ cniVersion: "9.9.9", name: "n", type }));
    expect(out.status).toBe(1);
    expect(JSON.parse(out.stdout)).toMatchObject({ code: 1, msg: "incompatible CNI versions" });
  });

  it("names every missing variable with code 4", () => {
    const out = runPlugin(type, { CNI_COMMAND: "ADD" }, JSON.stringify({ cniVersion: "1.0.0", name: "n", type }));
    expect(out.status).toBe(1);
    expect(JSON.parse(out.stdout)).toMatchObject({
      code: 4,
      msg: "required env variables [CNI_CONTAINERID,CNI_NETNS,CNI_IFNAME,CNI_PATH] missing",
    });
  });

  it("prints its name and versions on stderr when run bare", () => {
    const out = runPlugin(type, {}, "");
    expect(out.status).toBe(0);
    expect(out.stdout).toBe("");
    expect(out.stderr).toContain(`weft CNI plugin ${type}`);
  });
});

describe("the cache under WEFT_CACHE_DIR", () => {
  const daysAgo = (days: number) => new Date(Date.now() - days * 24 * 3600 * 1000);
  const plant = (cache: string, name: string, days: number) => {
    mkdirSync(join(cache, name), { mode: 0o700 });
    writeFileSync(join(cache, name, "bundle.js"), "");
    utimesSync(join(cache, name), daysAgo(days), daysAgo(days));
  };
  const version = (cache: string) => runPlugin("loopback", { CNI_COMMAND: "VERSION", WEFT_CACHE_DIR: cache }, '{"cniVersion":"1.1.0"}');

  const bundlePrune =
    WEFT_RUNTIME === "bun"
      ? "prunes nothing at a run that writes no addon: the Bun form has no bundle entry"
      : "loses, at a bundle's first run, the entries nothing changed for 30 days, and only those";
  it(bundlePrune, () => {
    const cache = mkdtempSync(join(tmpdir(), "weft-prune-"));
    try {
      plant(cache, "a".repeat(64), 40);
      plant(cache, "b".repeat(64), 1);
      plant(cache, "not-weft", 40);
      // VERSION loads no addon: in the Node.js forms, this is the loader's bundle entry alone.
      expect(version(cache).status).toBe(0);
      const after = readdirSync(cache);
      if (WEFT_RUNTIME === "bun") expect(after).toContain("a".repeat(64));
      else expect(after).not.toContain("a".repeat(64));
      expect(after).toContain("b".repeat(64));
      expect(after).toContain("not-weft");
      // Only a first run prunes: the build's own entry exists now.
      plant(cache, "c".repeat(64), 40);
      expect(version(cache).status).toBe(0);
      expect(readdirSync(cache)).toContain("c".repeat(64));
    } finally {
      rmSync(cache, { recursive: true, force: true });
    }
  });

  it("loses, when an addon is first written, the entries nothing changed for 30 days, and only those", () => {
    const cache = mkdtempSync(join(tmpdir(), "weft-prune-"));
    const ns = createNetns("weft-prune-");
    try {
      const add = () =>
        runPlugin(
          "loopback",
          { ...ADD, CNI_NETNS: ns.path, CNI_IFNAME: "lo", WEFT_CACHE_DIR: cache },
          JSON.stringify({ cniVersion: "1.0.0", name: "lo", type: "loopback" }),
        );
      // The Node.js forms' loader makes (and prunes at) the bundle's entry first: the addon's is then the new one.
      expect(version(cache).status).toBe(0);
      plant(cache, "a".repeat(64), 40);
      plant(cache, "b".repeat(64), 1);
      plant(cache, "not-weft", 40);
      const first = add();
      expect(first.stderr).toBe("");
      expect(first.status).toBe(0);
      const after = readdirSync(cache);
      expect(after.some((name) => existsSync(join(cache, name, "weft.node")))).toBe(true);
      expect(after).not.toContain("a".repeat(64));
      expect(after).toContain("b".repeat(64));
      expect(after).toContain("not-weft");
      plant(cache, "c".repeat(64), 40);
      expect(add().status).toBe(0);
      expect(readdirSync(cache)).toContain("c".repeat(64));
    } finally {
      removeNetns(ns);
      rmSync(cache, { recursive: true, force: true });
    }
  });
});

describe("stdio handed over non-blocking", () => {
  const strace = command("strace");
  // Node's spawn makes a child's stdio blocking, so perl (Debian's perl-base is essential) hands the
  // plugin a non-blocking pipe, and a forked writer puts the config in it after the plugin started.
  const nonBlockingStdin = `
    use Fcntl;
    pipe(my $r, my $w) or die "pipe: $!";
    fcntl($r, F_SETFL, fcntl($r, F_GETFL, 0) | O_NONBLOCK) or die "fcntl: $!";
    my $pid = fork() // die "fork: $!";
    if ($pid == 0) { close $r; select(undef, undef, undef, 0.4); syswrite($w, $ENV{CONFIG}); exit 0; }
    close $w;
    open(STDIN, "<&", $r) or die "dup: $!";
    close $r;
    exec @ARGV or die "exec: $!";`;

  it.skipIf(strace.skip)(strace.title("waits in poll(2) for a config that arrives late, without retrying the read"), () => {
    const dir = mkdtempSync(join(tmpdir(), "weft-nonblock-"));
    try {
      const trace = join(dir, "trace");
      const out = spawnSync("perl", ["-e", nonBlockingStdin, "strace", "-f", "-qq", "-e", "trace=read,poll", "-o", trace, weftProgram("loopback")], {
        env: { PATH: pathWithTestNode("/usr/bin:/bin"), CNI_COMMAND: "VERSION", CONFIG: '{"cniVersion":"1.0.0"}' },
        encoding: "utf8",
      });
      expect(out.status, out.stderr).toBe(0);
      expect(JSON.parse(out.stdout)).toMatchObject({ cniVersion: "1.0.0", supportedVersions: ALL_VERSIONS });
      const lines = readFileSync(trace, "utf8").split("\n");
      // A retry every millisecond, as before, made hundreds of reads in the 0.4 s.
      expect(lines.filter((l) => /\bread\(0,.*EAGAIN/.test(l)).length).toBeLessThanOrEqual(2);
      expect(lines.some((l) => /\bpoll\(\[\{fd=0, events=POLLIN\}\]/.test(l))).toBe(true);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
