import { chmodSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import * as esbuild from "esbuild";
// @ts-expect-error: plain JavaScript module shared with the esbuild build
import { esbuildNativeAddons } from "../scripts/native-addons.mjs";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import type { NetConf } from "../lib/cni/config.js";
import { CniError } from "../lib/errors/cni.js";
import { readWeftBanner } from "../lib/executable/banner.js";
import { weftProgramOf } from "../lib/executable/identity.js";
import { delegate, execPlugin, type DelegateOptions, type InProcessPlugins } from "../lib/cni/invoke.js";
import type { Plugin } from "../lib/cni/skel.js";

/**
 * A small plugin whose answers depend on everything a delegate is given (environment, stdin,
 * prevResult), built from this one source both into a weft-style executable and into the registry,
 * so the two ways of running it can be compared. It refers to nothing outside itself: its source
 * text is what the executable is built from.
 */
function makeEchoPlugin(Err: typeof CniError): Plugin<NetConf & { fail?: { code: number; msg: string; details?: string } }> {
  return {
    type: "echo",
    validate: (data: unknown) => typeof data === "object" && data !== null && typeof (data as { name?: unknown }).name === "string",
    async add(request) {
      if (request.config.fail) throw new Err(request.config.fail.code, request.config.fail.msg, request.config.fail.details);
      request.log("adding");
      return {
        cniVersion: request.version,
        interfaces: [{ name: request.env.ifName, sandbox: request.env.netns }],
        ips: [{ interface: 0, address: "10.1.2.3/24", gateway: "10.1.2.1" }],
        routes: [{ dst: "0.0.0.0/0" }],
        dns: { nameservers: [request.env.containerId], search: [request.env.args, request.env.path.join(",")] },
      };
    },
    async del(request) {
      if (request.config.fail) throw new Err(request.config.fail.code, request.config.fail.msg, request.config.fail.details);
    },
    async check(request) {
      if (!request.prevResult) throw new Err(7, "required prevResult missing");
      if (request.prevResult.ips?.[0]?.address !== "10.1.2.3/24") throw new Err(999, `unexpected ${JSON.stringify(request.prevResult)}`);
    },
    async status() {
      throw new Err(50, "echo is not ready", "waiting for nothing");
    },
  };
}

const VERSION = "9.9.9-test";
let dir: string;
const loads = vi.fn(async () => makeEchoPlugin(CniError));
/** In-process plugins of the build `version`, recognising that build's executables as the product does. */
function inProcessOf(version: string, plugins: InProcessPlugins["plugins"]): InProcessPlugins {
  return { version, plugins, identify: (path) => weftProgramOf(path, version) };
}
const registry = inProcessOf(VERSION, { echo: loads });
/** The same executable with this registry of another version: executed, never in-process. */
const otherBuild = inProcessOf("0.0.0-other", { echo: loads });

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "weft-inprocess-"));
  const cni = new URL("../lib/cni/", import.meta.url).pathname;
  await esbuild.build({
    stdin: {
      contents: [
        `import { runPlugin } from ${JSON.stringify(join(cni, "skel.ts"))};`,
        `import { CniError } from ${JSON.stringify(join(cni, "../errors/cni.ts"))};`,
        `runPlugin((${makeEchoPlugin.toString()})(CniError));`,
      ].join("\n"),
      loader: "ts",
      resolveDir: cni,
    },
    bundle: true,
    platform: "node",
    format: "cjs",
    target: "node20",
    banner: { js: `#!/usr/bin/env node\n// weft ${VERSION} echo` },
    outfile: join(dir, "echo"),
    // The core's stdio waits on poll(2) from weft's addon, embedded as in the real executables.
    plugins: [esbuildNativeAddons(join(cni, "../.."))],
    logLevel: "error",
  });
  chmodSync(join(dir, "echo"), 0o755);
  // A foreign plugin that merely mentions weft's banner further down is not weft's.
  writeFileSync(
    join(dir, "misplaced-banner"),
    `#!/bin/sh\necho '{"cniVersion":"1.0.0","code":4,"msg":"foreign"}'; exit 1\n// weft ${VERSION} echo\n`,
    { mode: 0o755 },
  );
});

afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

const ENV = {
  CNI_CONTAINERID: "ctr-1",
  CNI_NETNS: "/run/netns/x",
  CNI_IFNAME: "eth0",
  CNI_ARGS: "IgnoreUnknown=1;K8S_POD_NAME=p",
  CNI_PATH: "/a:/b",
  // The executed copy runs on the Node.js running the test, as the in-process one does: engines word
  // JSON.parse's errors differently, and this compares the two ways of delegating, not two engines.
  PATH: `${dirname(process.execPath)}:/usr/bin:/bin`,
};
const PREV = { cniVersion: "1.0.0", interfaces: [{ name: "eth0" }], ips: [{ interface: 0, address: "10.1.2.3/24" }] };

type Outcome = { stdout: string } | { error: { name: string; code: unknown; message: string; details: unknown } };

async function outcome(inProcess: InProcessPlugins, options: Omit<DelegateOptions, "inProcess">, file = "echo"): Promise<Outcome> {
  try {
    return { stdout: (await execPlugin(join(dir, file), { ...options, inProcess })).toString("utf8") };
  } catch (err) {
    const e = err as CniError;
    return { error: { name: e.name, code: e.code, message: e.message.replace(dir, "<dir>"), details: e.details } };
  }
}

const CASES: [string, Omit<DelegateOptions, "inProcess">][] = [
  ["ADD", { verb: "ADD", stdin: '{"cniVersion":"1.0.0","name":"n"}', env: ENV }],
  ["ADD printed as 0.3.1", { verb: "ADD", stdin: '{"cniVersion":"0.3.1","name":"n"}', env: ENV }],
  ["ADD printed as 0.2.0", { verb: "ADD", stdin: '{"cniVersion":"0.2.0","name":"n"}', env: ENV }],
  [
    "ADD failing with details",
    { verb: "ADD", stdin: '{"cniVersion":"1.0.0","name":"n","fail":{"code":11,"msg":"busy","details":"lock"}}', env: ENV },
  ],
  ["DEL", { verb: "DEL", stdin: '{"cniVersion":"1.0.0","name":"n"}', env: ENV }],
  ["DEL failing", { verb: "DEL", stdin: '{"cniVersion":"1.0.0","name":"n","fail":{"code":5,"msg":"io"}}', env: ENV }],
  ["CHECK with prevResult", { verb: "CHECK", stdin: JSON.stringify({ cniVersion: "1.0.0", name: "n", prevResult: PREV }), env: ENV }],
  ["CHECK without prevResult", { verb: "CHECK", stdin: '{"cniVersion":"1.0.0","name":"n"}', env: ENV }],
  ["CHECK of a 0.3.1 config", { verb: "CHECK", stdin: '{"cniVersion":"0.3.1","name":"n"}', env: ENV }],
  ["STATUS", { verb: "STATUS", stdin: '{"cniVersion":"1.1.0","name":"n"}', env: ENV }],
  ["GC with nothing to collect", { verb: "GC", stdin: '{"cniVersion":"1.1.0","name":"n"}', env: ENV }],
  ["VERSION", { verb: "VERSION", stdin: '{"cniVersion":"0.4.0"}', env: {} }],
  ["missing environment", { verb: "ADD", stdin: '{"cniVersion":"1.0.0","name":"n"}', env: { PATH: "/usr/bin:/bin" } }],
  ["garbage on stdin", { verb: "ADD", stdin: "not json", env: ENV }],
  ["config the schema refuses", { verb: "ADD", stdin: '{"cniVersion":"1.0.0","name":"n","type":"echo","x":1,"name2":[]}', env: ENV }],
  ["unknown CNI_ARGS", { verb: "ADD", stdin: '{"cniVersion":"1.0.0","name":"n"}', env: { ...ENV, CNI_ARGS: "K8S_POD_NAME=p" } }],
  ["unsupported version", { verb: "ADD", stdin: '{"cniVersion":"2.0.0","name":"n"}', env: ENV }],
];

describe("in-process delegation of a weft executable", () => {
  it("reads the banner scripts/build.mjs writes on line 2", () => {
    expect(readWeftBanner(join(dir, "echo"))).toEqual({ version: VERSION, type: "echo" });
    expect(readWeftBanner("/bin/sh")).toBeUndefined();
    expect(readWeftBanner(join(dir, "misplaced-banner"))).toBeUndefined();
    expect(readWeftBanner(join(dir, "does-not-exist"))).toBeUndefined();
  });

  it.each(CASES)("%s: the same stdout, exit status and error as executing it", async (_, options) => {
    loads.mockClear();
    const executed = await outcome(otherBuild, options);
    expect(loads).not.toHaveBeenCalled();
    const inProcess = await outcome(registry, options);
    expect(loads).toHaveBeenCalledTimes(1);
    expect(inProcess).toEqual(executed);
  });

  it("delegate() parses an in-process ADD result exactly as an executed one", async () => {
    const options = { verb: "ADD" as const, stdin: '{"cniVersion":"0.4.0","name":"n"}', env: ENV, paths: [dir] };
    const executed = await delegate("echo", { ...options, inProcess: otherBuild });
    const inProcess = await delegate("echo", { ...options, inProcess: registry });
    expect(inProcess).toEqual(executed);
    expect(inProcess?.dns).toEqual({ nameservers: ["ctr-1"], search: ["IgnoreUnknown=1;K8S_POD_NAME=p", "/a,/b"] });
  });

  it("executes a file that is not weft's, or whose type the bundle does not carry", async () => {
    loads.mockClear();
    const options = { verb: "ADD" as const, stdin: '{"cniVersion":"1.0.0","name":"n"}', env: ENV };
    expect(await outcome(registry, options, "misplaced-banner")).toEqual({
      error: { name: "CniError", code: 4, message: "foreign", details: undefined },
    });
    const withoutEcho = inProcessOf(VERSION, { other: loads });
    expect(await outcome(withoutEcho, options)).toEqual(await outcome(otherBuild, options));
    expect(loads).not.toHaveBeenCalled();
  });

  it("gives up on an in-process delegate that does not answer in time with code 11", async () => {
    const hanging = inProcessOf(VERSION, { echo: async () => ({ ...makeEchoPlugin(CniError), add: () => new Promise(() => undefined) }) });
    await expect(
      execPlugin(join(dir, "echo"), { verb: "ADD", stdin: '{"cniVersion":"1.0.0","name":"n"}', env: ENV, timeoutMs: 50, inProcess: hanging }),
    ).rejects.toMatchObject({ code: 11, message: expect.stringContaining("did not finish ADD within 50 ms") });
  });
});
