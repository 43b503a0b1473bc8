import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { referencePlugins } from "../../test/helpers/prerequisites.js";
import { delegate, findInPath } from "./invoke.js";

let dir: string;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "weft-delegate-"));
});

afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

function fakePlugin(name: string, body: string, where = dir): string {
  const path = join(where, name);
  writeFileSync(path, `#!/bin/sh\n${body}\n`, { mode: 0o755 });
  return path;
}

/** Ends the process whose pid a fake plugin wrote, if it still runs (a test that failed). */
function killIfAlive(pidFile: string): void {
  if (!existsSync(pidFile)) return;
  try {
    process.kill(Number(readFileSync(pidFile, "utf8")), "SIGKILL");
  } catch {
    // already gone
  }
}

describe("findInPath", () => {
  it("takes the first directory that has an executable of that name", () => {
    const first = mkdtempSync(join(dir, "a-"));
    const second = mkdtempSync(join(dir, "b-"));
    writeFileSync(join(first, "ipam"), "not executable", { mode: 0o644 });
    const expected = fakePlugin("ipam", "exit 0", second);
    expect(findInPath("ipam", [first, second])).toBe(expected);
  });

  it.each([
    ["", [], 7, "no plugin name provided"],
    ["../bridge", ["/usr/lib/cni"], 7, 'invalid plugin name "../bridge": it must not be a path'],
    ["bridge", [], 4, "CNI_PATH is empty: cannot find plugins"],
    ["nonexistent-plugin", ["/nonexistent"], 4, 'failed to find plugin "nonexistent-plugin" in path [/nonexistent]'],
  ])("%j in %j is code %i", (type, paths, code, msg) => {
    expect(() => findInPath(type, paths)).toThrow(expect.objectContaining({ code, message: msg }));
  });
});

describe("delegate: a real child process", () => {
  it("runs the delegate with the caller's environment, the verb, and the config on stdin, and parses its result", async () => {
    fakePlugin(
      "fake-ipam",
      `cat > "${dir}/stdin"; env > "${dir}/env"
echo '{"cniVersion":"0.4.0","ips":[{"version":"4","address":"10.22.0.5/16","gateway":"10.22.0.1"}],"routes":[{"dst":"0.0.0.0/0"}],"dns":{}}'`,
    );
    const stdin = '{"cniVersion":"0.4.0","name":"n","ipam":{"type":"fake-ipam"}}';
    const result = await delegate("fake-ipam", {
      verb: "ADD",
      stdin,
      env: { CNI_COMMAND: "DEL", CNI_CONTAINERID: "abc", CNI_IFNAME: "eth0", PATH: process.env.PATH },
      paths: [dir],
    });
    expect(result).toEqual({
      cniVersion: "0.4.0",
      interfaces: [],
      ips: [{ address: "10.22.0.5/16", gateway: "10.22.0.1" }],
      routes: [{ dst: "0.0.0.0/0" }],
    });
    expect(readFileSync(join(dir, "stdin"), "utf8")).toBe(stdin);
    const env = readFileSync(join(dir, "env"), "utf8");
    expect(env).toContain("CNI_COMMAND=ADD\n");
    expect(env).toContain("CNI_CONTAINERID=abc\n");
  });

  it("passes on the delegate's CNI error with its code, msg and details", async () => {
    fakePlugin("failing", `echo '{"cniVersion":"1.0.0","code":11,"msg":"lock busy","details":"held by 42"}'; exit 1`);
    await expect(delegate("failing", { verb: "ADD", stdin: "{}", env: {}, paths: [dir] })).rejects.toMatchObject({
      code: 11,
      message: "lock busy",
      details: "held by 42",
    });
  });

  it("describes a delegate that failed without an error JSON", async () => {
    // Its stderr (the delegate's log, passed through to the runtime's) goes to a file: this crash is expected.
    fakePlugin("crashing", `exec 2>${join(dir, "crashing.stderr")}; echo 'panic: runtime error' >&2; echo 'not json'; exit 2`);
    await expect(delegate("crashing", { verb: "DEL", stdin: "{}", env: {}, paths: [dir] })).rejects.toMatchObject({
      code: 999,
      message: expect.stringMatching(/^netplugin failed: plugin .*crashing exited with status 2: "not json"$/),
    });
  });

  it("kills a delegate that hangs and answers code 11 (try again)", async () => {
    const pidFile = join(dir, "hanging.pid");
    fakePlugin("hanging", `echo $$ > ${pidFile}; exec sleep 600`);
    try {
      // A delegate waited out instead of killed fails on the test's timeout.
      await expect(delegate("hanging", { verb: "ADD", stdin: "{}", env: {}, paths: [dir], timeoutMs: 300 })).rejects.toMatchObject({
        code: 11,
        message: expect.stringContaining("did not finish ADD within 300 ms"),
      });
      expect(existsSync(`/proc/${readFileSync(pidFile, "utf8").trim()}`), "the delegate's process is gone").toBe(false);
    } finally {
      killIfAlive(pidFile);
    }
  });

  it("a delegate's result that is not JSON is code 6", async () => {
    fakePlugin("babbling", "echo hello");
    await expect(delegate("babbling", { verb: "ADD", stdin: "{}", env: {}, paths: [dir] })).rejects.toMatchObject({ code: 6 });
  });

  const needs = referencePlugins("host-local");
  it.skipIf(needs.skip)(needs.title("delegates ADD and DEL to the reference host-local"), async () => {
    const dataDir = join(dir, "ipam");
    const stdin = JSON.stringify({
      cniVersion: "1.0.0",
      name: "delegation-test",
      ipam: { type: "host-local", dataDir, ranges: [[{ subnet: "10.23.0.0/24" }]] },
    });
    const env = { CNI_CONTAINERID: "ctr1", CNI_NETNS: "/proc/self/ns/net", CNI_IFNAME: "eth0", CNI_PATH: "/usr/lib/cni", PATH: process.env.PATH };
    const result = await delegate("host-local", { verb: "ADD", stdin, env, paths: ["/usr/lib/cni"] });
    expect(result?.ips).toEqual([{ address: "10.23.0.2/24", gateway: "10.23.0.1" }]);
    expect(readdirSync(join(dataDir, "delegation-test")).sort()).toEqual(["10.23.0.2", "last_reserved_ip.0", "lock"]);
    await delegate("host-local", { verb: "DEL", stdin, env, paths: ["/usr/lib/cni"] });
    expect(readdirSync(join(dataDir, "delegation-test")).sort()).toEqual(["last_reserved_ip.0", "lock"]);
  });
});
