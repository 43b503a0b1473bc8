import { spawnSync } from "node:child_process";
import { afterEach, describe, expect, it } from "vitest";
import { pathWithTestNode, weftProgram } from "../helpers/executables.js";
import { netnsPool } from "../helpers/netns.js";

/** weft's loopback (WEFT_BIN) against Debian's /usr/lib/cni/loopback, each in a pod namespace of its own. */

const WEFT = weftProgram("loopback");
const REF = "/usr/lib/cni/loopback";
const PATH = pathWithTestNode("/usr/sbin:/usr/bin:/sbin:/bin");
const pool = netnsPool();
afterEach(() => pool.cleanup());

function run(plugin: string, verb: string, netns: string, version = "1.0.0", extraEnv: string[] = []) {
  const p = spawnSync(
    "env",
    [
      "-i",
      `PATH=${PATH}`,
      `CNI_COMMAND=${verb}`,
      "CNI_CONTAINERID=lo-test",
      `CNI_NETNS=${netns}`,
      "CNI_IFNAME=eth0",
      "CNI_PATH=/usr/lib/cni",
      ...extraEnv,
      plugin,
    ],
    {
      input: JSON.stringify({ cniVersion: version, name: "lo", type: "loopback" }),
      encoding: "utf8",
    },
  );
  return {
    code: p.status ?? -1,
    out: p.stdout,
    err: p.stderr,
    json: p.stdout.trim() ? (JSON.parse(p.stdout) as Record<string, unknown>) : undefined,
  };
}

/** A namespace as a runtime hands it over: lo down, no addresses. */
function freshPod() {
  const pod = pool.create("weft-lo-");
  pod.exec("ip", ["link", "set", "lo", "down"]);
  return pod;
}

function loState(pod: ReturnType<typeof freshPod>) {
  const [lo] = pod.ipJson<Array<{ flags: string[]; addr_info: Array<{ local: string; prefixlen: number }> }>>("addr", "show", "lo");
  return { up: lo!.flags.includes("UP"), addrs: lo!.addr_info.map((a) => `${a.local}/${a.prefixlen}`) };
}

describe("loopback", () => {
  it("brings lo up with 127.0.0.1/8 and ::1, and returns the reference's result (1.0.0)", () => {
    const [a, b] = [freshPod(), freshPod()];
    const weft = run(WEFT, "ADD", a.path);
    const ref = run(REF, "ADD", b.path);
    expect(weft.code, weft.out + weft.err).toBe(0);
    expect(loState(a)).toEqual({ up: true, addrs: ["127.0.0.1/8", "::1/128"] });
    expect(loState(a)).toEqual(loState(b));
    // Debian's Go library (1.1.2) adds an empty "dns"; newer ones, and weft, leave it out.
    const { dns, ...refRest } = ref.json!;
    expect(dns).toEqual({});
    const sandboxed = (r: Record<string, unknown>, path: string) => JSON.parse(JSON.stringify(r).replaceAll(path, "<netns>"));
    expect(sandboxed(weft.json!, a.path)).toEqual(sandboxed(refRest, b.path));
    expect(weft.json).toEqual({
      cniVersion: "1.0.0",
      interfaces: [{ name: "lo", mac: "00:00:00:00:00:00", sandbox: a.path }],
      ips: [
        { interface: 0, address: "127.0.0.1/8" },
        { interface: 0, address: "::1/128" },
      ],
    });
  });

  it("prints older versions as the spec converts them (the reference mislabels its 1.0 shape)", () => {
    const pod = freshPod();
    const v040 = run(WEFT, "ADD", pod.path, "0.4.0").json;
    expect(v040).toEqual({
      cniVersion: "0.4.0",
      interfaces: [{ name: "lo", mac: "00:00:00:00:00:00", sandbox: pod.path }],
      ips: [
        { version: "4", interface: 0, address: "127.0.0.1/8" },
        { version: "6", interface: 0, address: "::1/128" },
      ],
      dns: {},
    });
    expect(run(WEFT, "ADD", pod.path, "0.2.0").json).toEqual({ cniVersion: "0.2.0", ip4: { ip: "127.0.0.1/8" }, ip6: { ip: "::1/128" }, dns: {} });
    // The reference's 0.4.0 output is the same minus the per-IP "version" the 0.4.0 schema has.
    const ref = run(REF, "ADD", pod.path, "0.4.0").json as { ips: Array<Record<string, unknown>> };
    expect({ ...ref, ips: ref.ips.map((ip) => ({ version: (ip.address as string).includes(":") ? "6" : "4", ...ip })) }).toEqual(v040);
  });

  it("CHECK verifies lo is up; DEL sets it down and is idempotent, also when the namespace is gone", () => {
    const pod = freshPod();
    expect(run(WEFT, "ADD", pod.path).code).toBe(0);
    expect(run(WEFT, "CHECK", pod.path).code).toBe(0);
    pod.exec("ip", ["link", "set", "lo", "down"]);
    const check = run(WEFT, "CHECK", pod.path);
    expect(check.code).toBe(1);
    expect(check.json!.msg as string).toMatch(/loopback interface is down/);
    expect(run(WEFT, "ADD", pod.path).code).toBe(0);
    expect(run(WEFT, "DEL", pod.path).code).toBe(0);
    expect(loState(pod).up).toBe(false);
    expect(run(WEFT, "DEL", pod.path).code).toBe(0);
    expect(run(WEFT, "DEL", "").code).toBe(0);
    expect(run(WEFT, "DEL", "/run/netns/weft-lo-does-not-exist").code).toBe(0);
  });

  it("refuses the plugin's own namespace (code 8), so a recycled path cannot take the host's lo down", () => {
    const node = pool.create("weft-lo-node-");
    const p = spawnSync(
      "ip",
      [
        "netns",
        "exec",
        node.name,
        "env",
        "-i",
        `PATH=${PATH}`,
        "CNI_COMMAND=DEL",
        "CNI_CONTAINERID=x",
        "CNI_NETNS=/proc/self/ns/net",
        "CNI_IFNAME=eth0",
        "CNI_PATH=/usr/lib/cni",
        WEFT,
      ],
      {
        input: '{"cniVersion":"1.0.0","name":"lo","type":"loopback"}',
        encoding: "utf8",
      },
    );
    expect(p.status).toBe(1);
    expect(JSON.parse(p.stdout).code).toBe(8);
    expect(loState(node).up).toBe(true);
  });
});
