import { describe, expect, it } from "vitest";
import { netconf } from "../../gen/validators.js";
import { bridgeSettings } from "../../plugins/bridge/config.js";
import type { BridgeConf } from "../../plugins/bridge/config.js";
import type { NetConf } from "../../lib/cni/config.js";
import { dispatch, type Plugin, type Request } from "../../lib/cni/skel.js";

/**
 * The input boundaries the fuzz suite found weak, each at the lowest layer that shows it: the
 * protocol core (nesting depth, interface names, an ADD whose result cannot be printed in the
 * requested version) and the bridge's config (its name becomes a netlink attribute and sysctl path).
 */

const ENV = { CNI_COMMAND: "ADD", CNI_CONTAINERID: "c1", CNI_NETNS: "/run/netns/p", CNI_IFNAME: "eth0", CNI_PATH: "/opt/cni/bin" };

function fakePlugin(result: () => Record<string, unknown>) {
  const calls: string[] = [];
  const plugin: Plugin<NetConf> = {
    type: "fake",
    validate: netconf,
    add: async () => {
      calls.push("add");
      return result();
    },
    del: async (r: Request<NetConf>) => {
      calls.push(`del ${r.env.containerId}`);
    },
    check: async () => undefined,
  };
  return { plugin, calls };
}

async function run(plugin: Plugin<NetConf>, env: Record<string, string>, stdin: string) {
  let stdout = "";
  let stderr = "";
  const code = await dispatch(plugin, {
    getenv: (n) => env[n],
    readStdin: () => Buffer.from(stdin),
    stdout: (t) => (stdout += t),
    stderr: (t) => (stderr += t),
  });
  return { code, stdout, stderr, json: stdout ? (JSON.parse(stdout) as { code: number; msg: string }) : undefined };
}

describe("nesting depth", () => {
  it.each([65, 5000, 200_000])("a config nested %i deep is code 6, not a stack overflow", async (depth) => {
    const { plugin, calls } = fakePlugin(() => ({}));
    const stdin = `{"cniVersion":"1.0.0","name":"n","x":${"[".repeat(depth)}${"]".repeat(depth)}}`;
    const out = await run(plugin, ENV, stdin);
    expect(out.code).toBe(1);
    expect(out.json).toMatchObject({ code: 6, msg: expect.stringContaining("nested more than 64 levels deep") });
    expect(out.stderr).not.toContain("internal error");
    expect(calls).toEqual([]);
  });

  it("a config 64 deep is fine", async () => {
    const { plugin } = fakePlugin(() => ({ ips: [{ address: "10.0.0.2/24" }] }));
    const stdin = `{"cniVersion":"1.0.0","name":"n","x":${"[".repeat(63)}${"]".repeat(63)}}`;
    expect((await run(plugin, ENV, stdin)).code).toBe(0);
  });
});

describe("interface names", () => {
  it.each(["e%d", "eth%s%n", "eth$(id)", "eth`id`", "e;rm", "e|x", "e&x", "e'x", 'e"x', "e*", "e\u00e9", "e\u202e", "-eth0", "_x", ".eth0"])(
    "CNI_IFNAME %j is code 4 before the plugin runs",
    async (ifName) => {
      const { plugin, calls } = fakePlugin(() => ({}));
      const out = await run(plugin, { ...ENV, CNI_IFNAME: ifName }, '{"cniVersion":"1.0.0","name":"n"}');
      expect(out.json?.code).toBe(4);
      expect(calls).toEqual([]);
    },
  );

  it.each(["eth0", "net1", "eth0.100", "veth_a-b", "E"])("CNI_IFNAME %j is accepted", async (ifName) => {
    const { plugin } = fakePlugin(() => ({ ips: [{ address: "10.0.0.2/24" }] }));
    expect((await run(plugin, { ...ENV, CNI_IFNAME: ifName }, '{"cniVersion":"1.0.0","name":"n"}')).code).toBe(0);
  });
});

describe("network names", () => {
  it("over 200 characters is code 7 (it names host-local's directory), 200 is fine", async () => {
    const { plugin, calls } = fakePlugin(() => ({ ips: [{ address: "10.0.0.2/24" }] }));
    const long = await run(plugin, ENV, JSON.stringify({ cniVersion: "1.0.0", name: "n".repeat(201) }));
    expect(long.json).toMatchObject({ code: 7, msg: expect.stringContaining("at most 200") });
    expect(calls).toEqual([]);
    expect((await run(plugin, ENV, JSON.stringify({ cniVersion: "1.0.0", name: "n".repeat(200) }))).code).toBe(0);
  });
});

describe("an ADD whose result cannot be printed in the requested version", () => {
  it("is undone with the plugin's DEL before the error is reported (spec R2: no IP, no 0.2.0 result)", async () => {
    const { plugin, calls } = fakePlugin(() => ({ interfaces: [{ name: "eth0" }] }));
    const out = await run(plugin, ENV, '{"cniVersion":"0.2.0","name":"n"}');
    expect(out.json).toMatchObject({ code: 1, msg: "cannot convert: no valid IP addresses" });
    expect(calls).toEqual(["add", "del c1"]);
  });
});

describe("bridge names", () => {
  const conf = (bridge: string) =>
    ({ name: "n", bridge, vlan: 0, hairpinMode: false, promiscMode: false, disableContainerInterface: false }) as unknown as BridgeConf;
  it.each(["..", ".", "br\u0000x", "br%d", "br$(x)", "br;x", "br\u00e9", "", "br/x", "a".repeat(16)])("%j is refused with code 7", (bridge) => {
    expect(() => bridgeSettings(conf(bridge), new Map())).toThrow(expect.objectContaining({ code: 7 }));
  });

  it.each(["cni0", "br-int", "br_0.1"])("%j is accepted", (bridge) => {
    expect(bridgeSettings(conf(bridge), new Map()).conf.bridge).toBe(bridge);
  });
});
