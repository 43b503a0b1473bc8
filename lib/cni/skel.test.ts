import { describe, expect, it } from "vitest";
import { netconf } from "../../gen/validators.js";
import { MAX_STDIN_BYTES, type NetConf } from "./config.js";
import { CniError } from "../errors/cni.js";
import type { Result } from "./result.js";
import { dispatch, type GcRequest, type Plugin, type Request } from "./skel.js";
import { SUPPORTED_VERSIONS } from "./version.js";

const ADD_ENV = {
  CNI_COMMAND: "ADD",
  CNI_CONTAINERID: "c0ffee",
  CNI_NETNS: "/var/run/netns/pod",
  CNI_IFNAME: "eth0",
  CNI_PATH: "/opt/cni/bin",
};

const RESULT: Result = { interfaces: [{ name: "eth0", sandbox: "/var/run/netns/pod" }], ips: [{ interface: 0, address: "10.1.0.2/24" }] };

function recordingPlugin() {
  const calls: Request<NetConf>[] = [];
  const record = async (request: Request<NetConf>) => {
    calls.push(request);
  };
  const plugin: Plugin<NetConf> = {
    type: "test",
    validate: netconf,
    argsKeys: ["MAC"],
    add: async (request) => {
      calls.push(request);
      return RESULT;
    },
    del: record,
    check: record,
    gc: record,
    status: record,
  };
  return { plugin, calls };
}

async function run(plugin: Plugin<NetConf>, env: Record<string, string>, stdin: string | object) {
  let stdout = "";
  let stderr = "";
  const code = await dispatch(plugin, {
    getenv: (name) => env[name],
    readStdin: () => Buffer.from(typeof stdin === "string" ? stdin : JSON.stringify(stdin)),
    stdout: (t) => (stdout += t),
    stderr: (t) => (stderr += t),
  });
  return { code, stdout, stderr, error: code === 0 ? undefined : (JSON.parse(stdout) as Record<string, unknown>) };
}

const config = (extra: object = {}) => ({ cniVersion: "1.0.0", name: "net", type: "test", ...extra });

describe("VERSION", () => {
  it("lists all seven versions and echoes a supported requested version", async () => {
    const { plugin } = recordingPlugin();
    const out = await run(plugin, { CNI_COMMAND: "VERSION" }, { cniVersion: "0.4.0" });
    expect(out.code).toBe(0);
    expect(JSON.parse(out.stdout)).toEqual({ cniVersion: "0.4.0", supportedVersions: [...SUPPORTED_VERSIONS] });
    expect(out.stdout.endsWith("\n")).toBe(true);
  });

  it("answers with the newest version when stdin is empty or unknown", async () => {
    const { plugin } = recordingPlugin();
    for (const stdin of ["", "{", { cniVersion: "7.0.0" }]) {
      const out = await run(plugin, { CNI_COMMAND: "VERSION" }, stdin);
      expect(JSON.parse(out.stdout).cniVersion).toBe("1.1.0");
    }
  });

  it("prints the about text on stderr and exits 0 when CNI_COMMAND is unset", async () => {
    const { plugin } = recordingPlugin();
    const out = await run(plugin, {}, "");
    expect(out.code).toBe(0);
    expect(out.stdout).toBe("");
    expect(out.stderr).toContain("CNI protocol versions supported: 0.1.0, 0.2.0, 0.3.0, 0.3.1, 0.4.0, 1.0.0, 1.1.0");
  });
});

describe("environment errors (code 4, or 3 for a missing container id)", () => {
  it.each([
    ["ADD", {}, "required env variables [CNI_CONTAINERID,CNI_NETNS,CNI_IFNAME,CNI_PATH] missing"],
    ["DEL", {}, "required env variables [CNI_CONTAINERID,CNI_IFNAME,CNI_PATH] missing"],
    ["CHECK", { CNI_CONTAINERID: "a" }, "required env variables [CNI_NETNS,CNI_IFNAME,CNI_PATH] missing"],
    ["GC", {}, "required env variables [CNI_PATH] missing"],
  ])("%s with %j: %s", async (command, vars, msg) => {
    const { plugin, calls } = recordingPlugin();
    const out = await run(plugin, { CNI_COMMAND: command, ...vars }, config({ cniVersion: "1.1.0" }));
    expect(out.code).toBe(1);
    expect(out.error).toMatchObject({ code: 4, msg });
    expect(calls).toHaveLength(0);
  });

  it("STATUS needs no attachment variables and no CNI_PATH", async () => {
    const { plugin, calls } = recordingPlugin();
    const out = await run(plugin, { CNI_COMMAND: "STATUS" }, config({ cniVersion: "1.1.0" }));
    expect(out.code).toBe(0);
    expect(calls).toHaveLength(1);
  });

  it("rejects an unknown command", async () => {
    const { plugin } = recordingPlugin();
    const out = await run(plugin, { ...ADD_ENV, CNI_COMMAND: "REMOVE" }, config());
    expect(out.error).toMatchObject({ code: 4, msg: "unknown CNI_COMMAND: REMOVE" });
  });

  it.each([
    [{ CNI_CONTAINERID: "bad/id" }, 4, "invalid characters in containerID"],
    [{ CNI_CONTAINERID: "-leading" }, 4, "invalid characters in containerID"],
    [{ CNI_CONTAINERID: "a\nb" }, 4, "invalid characters in containerID"],
    [{ CNI_CONTAINERID: "x".repeat(4000) }, 4, "CNI_CONTAINERID is 4000 characters long; at most 200 are allowed"],
    [{ CNI_IFNAME: "eth0123456789012" }, 4, "interface name is too long"],
    [{ CNI_IFNAME: ".." }, 4, "interface name is . or .."],
    [{ CNI_IFNAME: "eth/0" }, 4, "interface name contains / or : or whitespace characters"],
    [{ CNI_IFNAME: "eth 0" }, 4, "interface name contains / or : or whitespace characters"],
    [{ CNI_IFNAME: "eth:0" }, 4, "interface name contains / or : or whitespace characters"],
    [{ CNI_IFNAME: "eth\u00000" }, 4, "interface name contains / or : or whitespace characters"],
    [{ CNI_NETNS: "relative/path" }, 4, 'CNI_NETNS "relative/path" is not an absolute path to a network namespace'],
    [{ CNI_ARGS: "IgnoreUnknown=1;broken" }, 4, 'CNI_ARGS: invalid pair "broken": expected KEY=VALUE'],
    [{ CNI_ARGS: "K8S_POD_NAME=x" }, 4, "CNI_ARGS: unknown args [K8S_POD_NAME]"],
  ])("ADD with %j gives code %i: %s", async (vars, code, msg) => {
    const { plugin, calls } = recordingPlugin();
    const out = await run(plugin, { ...ADD_ENV, ...vars }, config());
    expect(out.code).toBe(1);
    expect(out.error).toMatchObject({ code, msg });
    expect(calls).toHaveLength(0);
  });

  it("answers in the config's version once the config is decoded", async () => {
    const { plugin } = recordingPlugin();
    const out = await run(plugin, { ...ADD_ENV, CNI_IFNAME: "bad/name" }, config({ cniVersion: "0.4.0" }));
    expect(out.error).toMatchObject({ cniVersion: "0.4.0", code: 4 });
  });

  it("DEL may come without a netns (the runtime lost it)", async () => {
    const { plugin, calls } = recordingPlugin();
    const out = await run(plugin, { ...ADD_ENV, CNI_COMMAND: "DEL", CNI_NETNS: "" }, config());
    expect(out).toMatchObject({ code: 0, stdout: "" });
    expect(calls[0]?.env.netns).toBe("");
  });

  it("parses CNI_ARGS with IgnoreUnknown as kubelet sends them", async () => {
    const { plugin, calls } = recordingPlugin();
    const args = "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web;MAC=0a:58:0a:f4:01:02";
    await run(plugin, { ...ADD_ENV, CNI_ARGS: args }, config());
    expect(calls[0]?.cniArgs.get("MAC")).toBe("0a:58:0a:f4:01:02");
    expect(calls[0]?.cniArgs.get("K8S_POD_NAME")).toBe("web");
  });
});

describe("config errors", () => {
  it.each([
    ["garbage", 6, /^error decoding network config from stdin: /],
    ["[1,2]", 6, /expected a JSON object/],
    ["", 6, /^error decoding network config from stdin: /],
    [JSON.stringify({ cniVersion: "1.0.0" }), 7, /^missing network name$/],
    [JSON.stringify({ cniVersion: "1.0.0", name: "x y" }), 7, /^invalid characters found in network name$/],
    [JSON.stringify({ cniVersion: "1.0.0", name: 5 }), 7, /^network name must be a string, got 5$/],
    [JSON.stringify({ cniVersion: 1, name: "n" }), 6, /^cniVersion must be a string, got 1$/],
    [JSON.stringify({ cniVersion: "9.9.9", name: "n" }), 1, /^incompatible CNI versions$/],
    [
      JSON.stringify({ cniVersion: "1.0.0", name: "n", dns: { nameservers: "8.8.8.8" } }),
      7,
      /^invalid network config: dns.nameservers must be array \(got "8.8.8.8"\)$/,
    ],
    [JSON.stringify({ cniVersion: "1.0.0", name: "n", ipam: { type: 7 } }), 7, /^invalid network config: ipam.type must be string \(got 7\)$/],
    [
      JSON.stringify({ cniVersion: "1.0.0", name: "n", prevResult: { cniVersion: "1.0.0", ips: [{ address: "x" }] } }),
      6,
      /^invalid prevResult: ips\[0\].address/,
    ],
  ])("%s gives code %i", async (stdin, code, msg) => {
    const { plugin, calls } = recordingPlugin();
    const out = await run(plugin, ADD_ENV, stdin);
    expect(out.code).toBe(1);
    expect(out.error?.code).toBe(code);
    expect(out.error?.msg).toMatch(msg);
    expect(calls).toHaveLength(0);
  });

  it.each([
    [
      "stdin over 1 MiB",
      () => JSON.stringify({ cniVersion: "1.0.0", name: "n", pad: "x".repeat(MAX_STDIN_BYTES) }),
      /^network config on stdin is larger than 1048576 bytes \(1 MiB\)$/,
    ],
    [
      "a prevResult with 1025 ips",
      () => JSON.stringify({ cniVersion: "1.0.0", name: "n", prevResult: { cniVersion: "1.0.0", ips: Array(1025).fill({ address: "x" }) } }),
      /^invalid prevResult: ips has 1025 entries; at most 1024 are allowed$/,
    ],
    [
      "a 0.2.0 prevResult with 1025 routes",
      () =>
        JSON.stringify({
          cniVersion: "0.2.0",
          name: "n",
          prevResult: { cniVersion: "0.2.0", ip4: { ip: "10.0.0.2/24", routes: Array(1025).fill({ dst: "x" }) } },
        }),
      /^invalid prevResult: ip4.routes has 1025 entries/,
    ],
    [
      "a prevResult with 1025 dns search domains",
      () => JSON.stringify({ cniVersion: "1.0.0", name: "n", prevResult: { cniVersion: "1.0.0", dns: { search: Array(1025).fill("x") } } }),
      /^invalid prevResult: dns.search has 1025 entries/,
    ],
  ])("%s is refused with code 7 before the handler", async (_what, stdin, msg) => {
    const { plugin, calls } = recordingPlugin();
    const out = await run(plugin, ADD_ENV, stdin());
    expect(out.error?.code).toBe(7);
    expect(out.error?.msg).toMatch(msg);
    expect(calls).toHaveLength(0);
  });

  it("names the versions it supports when the config's is unknown", async () => {
    const { plugin } = recordingPlugin();
    const out = await run(plugin, ADD_ENV, config({ cniVersion: "9.9.9" }));
    expect(out.error).toMatchObject({
      code: 1,
      details: 'config is "9.9.9", plugin supports ["0.1.0" "0.2.0" "0.3.0" "0.3.1" "0.4.0" "1.0.0" "1.1.0"]',
    });
  });

  it.each([
    ["CHECK", "0.3.1"],
    ["GC", "1.0.0"],
    ["STATUS", "1.0.0"],
  ])("%s with a %s config is code 1", async (command, version) => {
    const { plugin, calls } = recordingPlugin();
    const out = await run(plugin, { ...ADD_ENV, CNI_COMMAND: command }, config({ cniVersion: version }));
    expect(out.error).toMatchObject({ code: 1, msg: `config version does not allow ${command}` });
    expect(calls).toHaveLength(0);
  });

  it("a config without cniVersion is 0.1.0", async () => {
    const { plugin } = recordingPlugin();
    const out = await run(plugin, ADD_ENV, { name: "net" });
    expect(JSON.parse(out.stdout)).toEqual({ cniVersion: "0.1.0", ip4: { ip: "10.1.0.2/24" }, dns: {} });
  });

  it("tolerates capabilities in the request (libcni leaves them in) and unknown keys", async () => {
    const { plugin, calls } = recordingPlugin();
    const out = await run(plugin, ADD_ENV, config({ capabilities: { portMappings: true }, somethingElse: [1] }));
    expect(out.code).toBe(0);
    expect(calls[0]?.rawConfig.somethingElse).toEqual([1]);
  });
});

describe("dispatching verbs", () => {
  it.each(SUPPORTED_VERSIONS)("ADD prints the result in the config's version %s", async (version) => {
    const { plugin } = recordingPlugin();
    const out = await run(plugin, ADD_ENV, config({ cniVersion: version }));
    expect(out.code).toBe(0);
    expect(JSON.parse(out.stdout).cniVersion).toBe(version);
  });

  it("passes the prevResult, converted to the 1.1.0 shape", async () => {
    const { plugin, calls } = recordingPlugin();
    const prevResult = { cniVersion: "0.4.0", ips: [{ version: "4", address: "10.1.0.5/24", interface: 0 }], interfaces: [{ name: "eth0" }] };
    await run(plugin, { ...ADD_ENV, CNI_COMMAND: "CHECK" }, config({ cniVersion: "0.4.0", prevResult }));
    expect(calls[0]?.prevResult).toEqual({
      cniVersion: "0.4.0",
      interfaces: [{ name: "eth0" }],
      ips: [{ interface: 0, address: "10.1.0.5/24" }],
      routes: [],
    });
  });

  it("hands the handler the injected environment, for its delegates to inherit, and the process's when none is injected", async () => {
    const { plugin, calls } = recordingPlugin();
    const environment = { ...ADD_ENV, PATH: "/injected/bin" };
    const io = {
      getenv: (name: string) => environment[name as keyof typeof environment],
      readStdin: () => Buffer.from(JSON.stringify(config())),
      stdout: () => undefined,
      stderr: () => undefined,
    };
    expect(await dispatch(plugin, { ...io, environment })).toBe(0);
    expect(calls[0]?.environment).toBe(environment);
    expect(await dispatch(plugin, io)).toBe(0);
    expect(calls[1]?.environment).toBe(process.env);
  });

  it.each(["DEL", "CHECK"])("%s prints nothing on success", async (command) => {
    const { plugin, calls } = recordingPlugin();
    const out = await run(plugin, { ...ADD_ENV, CNI_COMMAND: command }, config());
    expect(out).toMatchObject({ code: 0, stdout: "" });
    expect(calls[0]?.verb).toBe(command);
  });

  it("GC gets the valid attachments under either key", async () => {
    for (const key of ["cni.dev/valid-attachments", "cni.dev/attachments"]) {
      const { plugin, calls } = recordingPlugin();
      const attachments = [{ containerID: "a", ifname: "eth0" }];
      const out = await run(plugin, { CNI_COMMAND: "GC", CNI_PATH: "/opt/cni/bin" }, config({ cniVersion: "1.1.0", [key]: attachments }));
      expect(out).toMatchObject({ code: 0, stdout: "" });
      expect((calls[0] as GcRequest<NetConf>).validAttachments).toEqual(attachments);
    }
  });

  it("GC refuses a malformed attachment list with code 7", async () => {
    const { plugin } = recordingPlugin();
    const out = await run(
      plugin,
      { CNI_COMMAND: "GC", CNI_PATH: "/x" },
      config({ cniVersion: "1.1.0", "cni.dev/valid-attachments": [{ containerID: 1 }] }),
    );
    expect(out.error).toMatchObject({ code: 7 });
  });

  it("a plugin's CniError reaches stdout with its code, msg and details", async () => {
    const { plugin } = recordingPlugin();
    plugin.add = async () => {
      throw new CniError(11, "try later", "the lock is busy");
    };
    const out = await run(plugin, ADD_ENV, config({ cniVersion: "0.4.0" }));
    expect(out.stdout).toBe('{\n    "cniVersion": "0.4.0",\n    "code": 11,\n    "msg": "try later",\n    "details": "the lock is busy"\n}');
  });

  it("an unexpected exception is code 999 on stdout with its stack only on stderr", async () => {
    const { plugin } = recordingPlugin();
    plugin.del = async () => {
      throw new TypeError("boom");
    };
    const out = await run(plugin, { ...ADD_ENV, CNI_COMMAND: "DEL" }, config());
    expect(out.error).toEqual({ cniVersion: "1.0.0", code: 999, msg: "boom" });
    expect(out.stdout).not.toContain("at ");
    expect(out.stderr).toContain("TypeError: boom");
  });
});
