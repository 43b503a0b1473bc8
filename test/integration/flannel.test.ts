import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { pathWithTestNode, weftProgram } from "../helpers/executables.js";
import { all, referencePlugins, rootUser } from "../helpers/prerequisites.js";

/**
 * weft's flannel (WEFT_BIN) through its executable, with Debian's reference bridge and host-local
 * behind it. Each test has a node namespace of its own (cni0 lives and dies there), pod namespaces,
 * and a temp directory for subnet.env, flannel's dataDir and host-local's store: nothing of the host
 * is touched.
 */
const REFERENCE_PLUGINS = "/usr/lib/cni";
const FLANNEL = weftProgram("flannel");
const needs = all(rootUser(), referencePlugins("bridge", "host-local"));

const SUBNET_ENV_V4 = "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.1.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n";
const SUBNET_ENV_DUAL =
  "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.1.1/24\nFLANNEL_IPV6_NETWORK=fd00:10:244::/56\n" +
  "FLANNEL_IPV6_SUBNET=fd00:10:244:1::1/64\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n";

let work: string;
let nodeNs: string;
let namespaces: string[];
let serial = 0;

function ip(...args: string[]): string {
  return execFileSync("ip", args, { encoding: "utf8" });
}

function addNamespace(role: string): string {
  const name = `wft-fl-${process.pid}-${++serial}-${role}`;
  ip("netns", "add", name);
  namespaces.push(name);
  return name;
}

beforeEach(() => {
  work = mkdtempSync(join(tmpdir(), "weft-flannel-it-"));
  namespaces = [];
  nodeNs = addNamespace("node");
  ip("-n", nodeNs, "link", "set", "lo", "up");
  // CNI_PATH as a node has it: weft's flannel first (alone: weft's bridge and host-local stay out),
  // the reference plugins after.
  mkdirSync(join(work, "bin"));
  symlinkSync(FLANNEL, join(work, "bin", "flannel"));
  writeFileSync(join(work, "subnet.env"), SUBNET_ENV_V4);
});

afterEach(() => {
  for (const ns of namespaces.reverse()) spawnSync("ip", ["netns", "delete", ns]);
  rmSync(work, { recursive: true, force: true });
});

function netconf(extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    cniVersion: "1.0.0",
    name: "cbr0",
    type: "flannel",
    subnetFile: join(work, "subnet.env"),
    dataDir: join(work, "flannel"),
    delegate: { hairpinMode: true, isDefaultGateway: true },
    ipam: { dataDir: join(work, "networks") },
    ...extra,
  };
}

interface Run {
  status: number | null;
  stdout: string;
  stderr: string;
  json: any;
}

/** One invocation as a runtime makes it: a clean environment, run in the node namespace. */
function cni(verb: string, containerId: string, podNs: string | undefined, conf: unknown, env: Record<string, string> = {}): Run {
  const out = spawnSync("ip", ["netns", "exec", nodeNs, join(work, "bin", "flannel")], {
    env: {
      PATH: pathWithTestNode("/usr/bin:/bin"),
      CNI_COMMAND: verb,
      CNI_CONTAINERID: containerId,
      CNI_NETNS: podNs ? `/run/netns/${podNs}` : "",
      CNI_IFNAME: "eth0",
      CNI_PATH: `${join(work, "bin")}:${REFERENCE_PLUGINS}`,
      ...env,
    },
    input: typeof conf === "string" ? conf : JSON.stringify(conf),
    encoding: "utf8",
  });
  let json: unknown;
  try {
    json = JSON.parse(out.stdout);
  } catch {
    json = undefined;
  }
  return { status: out.status, stdout: out.stdout, stderr: out.stderr, json };
}

function reservations(): string[] {
  const dir = join(work, "networks", "cbr0");
  if (!existsSync(dir)) return [];
  return readdirSync(dir)
    .filter((f) => f !== "lock" && !f.startsWith("last_reserved_ip"))
    .sort();
}

function savedFiles(): string[] {
  return existsSync(join(work, "flannel")) ? readdirSync(join(work, "flannel")) : [];
}

function nodeVeths(): string[] {
  return ip("-n", nodeNs, "-o", "link", "show", "type", "veth")
    .split("\n")
    .filter(Boolean)
    .map((line) => line.split(":")[1]!.trim().split("@")[0]!);
}

function podLink(podNs: string): { mtu: number; addresses: string[] } {
  const [link] = JSON.parse(ip("-n", podNs, "-j", "addr", "show", "dev", "eth0")) as {
    mtu: number;
    addr_info: { family: string; local: string; prefixlen: number; scope: string }[];
  }[];
  return {
    mtu: link!.mtu,
    addresses: link!.addr_info.filter((a) => a.scope === "global").map((a) => `${a.local}/${a.prefixlen}`),
  };
}

function podRoutes(podNs: string, family: "-4" | "-6"): string[] {
  return ip("-n", podNs, family, "route", "show")
    .split("\n")
    .filter((l) => l && !l.startsWith("fe80"))
    .map((l) => l.replace(/ (proto kernel|metric \d+|pref medium|scope link|src \S+)/g, "").trim());
}

describe.skipIf(needs.skip)(needs.title("flannel -> reference bridge -> host-local, through weft's flannel"), () => {
  it("ADD sets up the pod from subnet.env (address, MTU 1450, routes) and saves the Go plugin's delegate file; DEL undoes all of it", () => {
    const pod = addNamespace("pod");
    const add = cni("ADD", "ctr-a", pod, netconf());
    expect(add.status, add.stdout + add.stderr).toBe(0);
    expect(add.json).toMatchObject({
      cniVersion: "1.0.0",
      interfaces: [{ name: "cni0" }, { name: expect.stringMatching(/^veth/) }, { name: "eth0", sandbox: `/run/netns/${pod}` }],
      ips: [{ address: "10.244.1.2/24", gateway: "10.244.1.1", interface: 2 }],
      routes: [{ dst: "10.244.0.0/16" }, { dst: "0.0.0.0/0", gw: "10.244.1.1" }],
    });
    expect(podLink(pod)).toEqual({ mtu: 1450, addresses: ["10.244.1.2/24"] });
    expect(podRoutes(pod, "-4")).toEqual(["default via 10.244.1.1 dev eth0", "10.244.0.0/16 via 10.244.1.1 dev eth0", "10.244.1.0/24 dev eth0"]);
    expect(ip("-n", nodeNs, "-j", "link", "show", "cni0")).toContain('"mtu":1450');
    expect(readFileSync(join(work, "flannel", "ctr-a"), "utf8")).toBe(
      `{"cniVersion":"1.0.0","hairpinMode":true,"ipMasq":false,"ipam":{"dataDir":"${join(work, "networks")}",` +
        `"ranges":[[{"subnet":"10.244.1.0/24"}]],"routes":[{"dst":"10.244.0.0/16"}],"type":"host-local"},` +
        `"isDefaultGateway":true,"isGateway":true,"mtu":1450,"name":"cbr0","type":"bridge"}`,
    );
    expect(reservations()).toEqual(["10.244.1.2"]);
    expect(nodeVeths()).toHaveLength(1);

    const del = cni("DEL", "ctr-a", pod, netconf());
    expect(del.status, del.stdout + del.stderr).toBe(0);
    expect(del.stdout).toBe("");
    expect(reservations()).toEqual([]);
    expect(savedFiles()).toEqual([]);
    expect(nodeVeths()).toEqual([]);
    // A repeated DEL succeeds.
    expect(cni("DEL", "ctr-a", pod, netconf()).status).toBe(0);
  });

  it("a dual-stack subnet.env gives the pod both families", () => {
    writeFileSync(join(work, "subnet.env"), SUBNET_ENV_DUAL);
    const pod = addNamespace("pod");
    const add = cni("ADD", "ctr-d", pod, netconf());
    expect(add.status, add.stdout + add.stderr).toBe(0);
    expect(add.json.ips).toEqual([
      { address: "10.244.1.2/24", gateway: "10.244.1.1", interface: 2 },
      { address: "fd00:10:244:1::2/64", gateway: "fd00:10:244:1::1", interface: 2 },
    ]);
    expect(podLink(pod)).toEqual({ mtu: 1450, addresses: ["10.244.1.2/24", "fd00:10:244:1::2/64"] });
    expect(podRoutes(pod, "-6")).toEqual([
      "fd00:10:244:1::/64 dev eth0",
      "fd00:10:244::/56 via fd00:10:244:1::1 dev eth0",
      "default via fd00:10:244:1::1 dev eth0",
    ]);
    expect(reservations()).toEqual(["10.244.1.2", "fd00:10:244:1::2"]);
    expect(cni("DEL", "ctr-d", pod, netconf()).status).toBe(0);
    expect(reservations()).toEqual([]);
  });

  it("DEL of a pod the Go flannel plugin added (its saved file, its delegate bytes) releases everything", () => {
    const pod = addNamespace("pod");
    // What flannel-io/cni-plugin writes to dataDir/<containerID> and hands to bridge (observed).
    const goBytes =
      `{"cniVersion":"1.0.0","hairpinMode":true,"ipMasq":false,"ipam":{"dataDir":"${join(work, "networks")}",` +
      `"ranges":[[{"subnet":"10.244.1.0/24"}],[{"subnet":"fd00:10:244:1::/64"}]],"routes":[{"dst":"10.244.0.0/16"},{"dst":"fd00:10:244::/56"}],` +
      `"type":"host-local"},"isDefaultGateway":true,"isGateway":true,"mtu":1450,"name":"cbr0","type":"bridge"}`;
    const goAdd = spawnSync("ip", ["netns", "exec", nodeNs, join(REFERENCE_PLUGINS, "bridge")], {
      env: {
        PATH: "/usr/bin:/bin",
        CNI_COMMAND: "ADD",
        CNI_CONTAINERID: "go-ctr",
        CNI_NETNS: `/run/netns/${pod}`,
        CNI_IFNAME: "eth0",
        CNI_PATH: REFERENCE_PLUGINS,
      },
      input: goBytes,
      encoding: "utf8",
    });
    expect(goAdd.status, goAdd.stdout).toBe(0);
    mkdirSync(join(work, "flannel"), { mode: 0o700 });
    writeFileSync(join(work, "flannel", "go-ctr"), goBytes, { mode: 0o600 });
    expect(reservations()).toEqual(["10.244.1.2", "fd00:10:244:1::2"]);

    const del = cni("DEL", "go-ctr", pod, netconf());
    expect(del.status, del.stdout + del.stderr).toBe(0);
    expect(reservations()).toEqual([]);
    expect(savedFiles()).toEqual([]);
    expect(nodeVeths()).toEqual([]);
  });

  it("a pod weft added is deleted by the Go plugin's DEL (it reads dataDir/<id> and delegates its bytes to its type)", () => {
    const pod = addNamespace("pod");
    expect(cni("ADD", "ctr-g", pod, netconf()).status).toBe(0);
    // flannel_linux.go doCmdDel, step by step: read the file, take its "type", delegate DEL with the bytes.
    const saved = readFileSync(join(work, "flannel", "ctr-g"));
    const type = (JSON.parse(saved.toString("utf8")) as { type: string }).type;
    const goDel = spawnSync("ip", ["netns", "exec", nodeNs, join(REFERENCE_PLUGINS, type)], {
      env: {
        PATH: "/usr/bin:/bin",
        CNI_COMMAND: "DEL",
        CNI_CONTAINERID: "ctr-g",
        CNI_NETNS: `/run/netns/${pod}`,
        CNI_IFNAME: "eth0",
        CNI_PATH: REFERENCE_PLUGINS,
      },
      input: saved,
      encoding: "utf8",
    });
    expect(goDel.status, goDel.stdout).toBe(0);
    expect(reservations()).toEqual([]);
    expect(nodeVeths()).toEqual([]);
  });

  it("a failed delegate DEL keeps the saved file, so the retried DEL still releases the address", () => {
    const pod = addNamespace("pod");
    expect(cni("ADD", "ctr-r", pod, netconf()).status).toBe(0);
    // A netns path that is not a netns (a stale bind mount): the reference bridge refuses (unknown FS magic).
    writeFileSync(join(work, "not-a-netns"), "");
    const failed = cni("DEL", "ctr-r", undefined, netconf(), { CNI_NETNS: join(work, "not-a-netns") });
    expect(failed.status).toBe(1);
    expect(failed.json.msg).toMatch(/^failed to delegate del: /);
    expect(savedFiles()).toEqual(["ctr-r"]);
    expect(reservations()).toEqual(["10.244.1.2"]);

    const retried = cni("DEL", "ctr-r", pod, netconf());
    expect(retried.status, retried.stdout + retried.stderr).toBe(0);
    expect(savedFiles()).toEqual([]);
    expect(reservations()).toEqual([]);
    expect(nodeVeths()).toEqual([]);
  });

  it("DEL with no saved file (dataDir wiped) still releases, rebuilding the delegate config from subnet.env", () => {
    const pod = addNamespace("pod");
    expect(cni("ADD", "ctr-w", pod, netconf()).status).toBe(0);
    rmSync(join(work, "flannel"), { recursive: true });
    const del = cni("DEL", "ctr-w", pod, netconf());
    expect(del.status, del.stdout + del.stderr).toBe(0);
    expect(reservations()).toEqual([]);
    expect(nodeVeths()).toEqual([]);
  });

  it("DEL with a truncated saved file releases too, and removes the file", () => {
    const pod = addNamespace("pod");
    expect(cni("ADD", "ctr-t", pod, netconf()).status).toBe(0);
    writeFileSync(join(work, "flannel", "ctr-t"), '{"cniVersion":"1.0.0","hairp');
    const del = cni("DEL", "ctr-t", pod, netconf());
    expect(del.status, del.stdout + del.stderr).toBe(0);
    expect(del.stderr).toContain("is not JSON");
    expect(reservations()).toEqual([]);
    expect(savedFiles()).toEqual([]);
  });

  it("DEL with neither a saved file nor subnet.env succeeds (nothing it can release)", () => {
    rmSync(join(work, "subnet.env"));
    const del = cni("DEL", "ctr-none", undefined, netconf());
    expect(del.status, del.stdout + del.stderr).toBe(0);
  });

  describe("a failed ADD leaves no saved file, address or veth", () => {
    it("bad CNI_NETNS", () => {
      const add = cni("ADD", "ctr-bad", undefined, netconf(), { CNI_NETNS: "/run/netns/wft-fl-does-not-exist" });
      expect(add.status).toBe(1);
      expect(add.json.msg).toMatch(/^failed to delegate add: /);
      expect(savedFiles()).toEqual([]);
      expect(reservations()).toEqual([]);
      expect(nodeVeths()).toEqual([]);
    });

    it("exhausted range: the second pod of a /30 fails, the first is untouched", () => {
      writeFileSync(join(work, "subnet.env"), SUBNET_ENV_V4.replace("10.244.1.1/24", "10.244.1.1/30"));
      const first = addNamespace("pod");
      const second = addNamespace("pod");
      expect(cni("ADD", "ctr-1", first, netconf()).status).toBe(0);
      const add = cni("ADD", "ctr-2", second, netconf());
      expect(add.status).toBe(1);
      expect(add.json.msg).toContain("no IP addresses available in range set");
      expect(savedFiles()).toEqual(["ctr-1"]);
      expect(reservations()).toEqual(["10.244.1.2"]);
      expect(nodeVeths()).toHaveLength(1);
      expect(ip("-n", second, "-o", "link", "show")).not.toContain("eth0");
    });

    it("a delegate that is not installed", () => {
      const pod = addNamespace("pod");
      const add = cni("ADD", "ctr-x", pod, netconf({ delegate: { type: "weft-no-such-plugin" } }));
      expect(add.status).toBe(1);
      expect(add.json).toMatchObject({ code: 4, msg: expect.stringContaining('failed to find plugin "weft-no-such-plugin"') });
      expect(savedFiles()).toEqual([]);
    });
  });

  it("a missing subnet.env is code 11 on ADD (retry: flanneld not ready) and 50 on STATUS", () => {
    rmSync(join(work, "subnet.env"));
    const pod = addNamespace("pod");
    const add = cni("ADD", "ctr-n", pod, netconf());
    expect(add.json).toMatchObject({ code: 11, msg: expect.stringContaining("flanneld is not running or not ready on this node") });
    expect(savedFiles()).toEqual([]);
    const status = cni("STATUS", "", undefined, netconf({ cniVersion: "1.1.0" }));
    expect(status.status).toBe(1);
    expect(status.json).toMatchObject({ code: 50, msg: expect.stringContaining("does not exist") });
    writeFileSync(join(work, "subnet.env"), SUBNET_ENV_V4);
    const ready = cni("STATUS", "", undefined, netconf({ cniVersion: "1.1.0" }));
    expect(ready.status, ready.stdout).toBe(0);
  });

  it("a config error is reported even when subnet.env is missing (the Go plugin reads subnet.env first)", () => {
    rmSync(join(work, "subnet.env"));
    const add = cni("ADD", "ctr-c", addNamespace("pod"), netconf({ delegate: { name: "x" } }));
    expect(add.json).toMatchObject({ code: 7, msg: expect.stringContaining("delegate.name must not be set") });
  });

  it("CHECK delegates with the saved config and prevResult, and really checks", () => {
    const pod = addNamespace("pod");
    const add = cni("ADD", "ctr-k", pod, netconf());
    expect(add.status).toBe(0);
    const check = (prevResult = add.json) => cni("CHECK", "ctr-k", pod, { ...netconf(), prevResult });
    // Debian's bridge (plugins 1.1.1) cannot CHECK a route without gw, which flannel always asks for:
    // its CHECK compares the route literally and the kernel holds it via the gateway.
    const withoutGwLess = { ...add.json, routes: add.json.routes.filter((r: { gw?: string }) => r.gw) };
    expect(check().json.msg).toContain("Expected Route {Dst:{IP:10.244.0.0 Mask:ffff0000} GW:\u003cnil\u003e} not found");
    const ok = check(withoutGwLess);
    expect(ok.status, ok.stdout + ok.stderr).toBe(0);

    // The MTU flanneld now announces is not the pod's.
    writeFileSync(join(work, "subnet.env"), SUBNET_ENV_V4.replace("1450", "1400"));
    expect(check(withoutGwLess).json).toMatchObject({ msg: expect.stringContaining("was set up with mtu 1450, now 1400") });
    writeFileSync(join(work, "subnet.env"), SUBNET_ENV_V4);

    // The pod lost its address: the delegate's CHECK sees it.
    ip("-n", pod, "addr", "del", "10.244.1.2/24", "dev", "eth0");
    const broken = check(withoutGwLess);
    expect(broken.status).toBe(1);
    expect(broken.json.msg).toMatch(/^failed to delegate check: /);

    const unknown = cni("CHECK", "ctr-unknown", pod, { ...netconf(), prevResult: add.json });
    expect(unknown.json).toMatchObject({ code: 3, msg: expect.stringContaining("no saved delegate config for container ctr-unknown") });
  });

  it("GC removes the saved files of this network's containers that are not valid any more", () => {
    const pods = [addNamespace("pod"), addNamespace("pod")];
    // Debian's bridge speaks up to 1.0.0: the pods are added with it, GC comes as 1.1.0.
    expect(cni("ADD", "ctr-keep", pods[0], netconf()).status).toBe(0);
    expect(cni("ADD", "ctr-gone", pods[1], netconf()).status).toBe(0);
    mkdirSync(join(work, "flannel"), { recursive: true });
    writeFileSync(join(work, "flannel", "other-net"), '{"name":"other","type":"bridge"}');
    const gc = cni("GC", "", undefined, {
      ...netconf({ cniVersion: "1.1.0" }),
      "cni.dev/valid-attachments": [{ containerID: "ctr-keep", ifname: "eth0" }],
    });
    expect(gc.status, gc.stdout + gc.stderr).toBe(0);
    expect(gc.stderr).toContain("delegate bridge predates CNI 1.1.0 and has no GC");
    expect(savedFiles().sort()).toEqual(["ctr-keep", "other-net"]);
  });

  it("answers VERSION itself", () => {
    const out = cni("VERSION", "", undefined, '{"cniVersion":"1.0.0"}');
    expect(out.json).toEqual({ cniVersion: "1.0.0", supportedVersions: ["0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"] });
  });
});
