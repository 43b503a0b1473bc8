import { execFileSync, spawn, spawnSync, type ChildProcess } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import { pathWithTestNode, weftProgram } from "../helpers/executables.js";
import { netnsPool, type TestNetns } from "../helpers/netns.js";

/**
 * weft's portmap (WEFT_BIN) as a runtime runs it: chained after Debian's reference bridge +
 * host-local, driven by the conformance suite's libcni driver (Debian's libcni, as containerd uses
 * it) or executed directly. Each test builds a node namespace (so cni0, the nat rules and the nft
 * tables die with it), a "client" namespace wired to the node by a veth (another host), and pod
 * namespaces with a TCP server on port 80 that answers with the address it sees the connection from.
 */

const WEFT_PORTMAP = weftProgram("portmap");
const REF = "/usr/lib/cni";
const PATH = pathWithTestNode("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
const NET = "pmnet";
const NODE_V4 = "192.168.77.1";
const NODE_V6 = "fd77::1";
const CLIENT_V4 = "192.168.77.2";
const CLIENT_V6 = "fd77::2";
const GW_V4 = "10.88.1.1";

const SERVER = "require('net').createServer((s) => s.end('hello ' + s.remoteAddress.replace(/^::ffff:/, '') + '\\n')).listen(80, '::')";
const CLIENT =
  "const [host, port] = process.argv.slice(1); const s = require('net').connect({ host, port: +port, timeout: 1500 }); let d = '';" +
  "s.on('data', (c) => (d += c)); s.on('end', () => { process.stdout.write(d); process.exit(0); });" +
  "s.on('timeout', () => process.exit(2)); s.on('error', (e) => { process.stderr.write(e.code); process.exit(1); });";

const pool = netnsPool();
const servers: ChildProcess[] = [];
let work: string;
let driver: string;

beforeAll(() => {
  work = mkdtempSync(join(tmpdir(), "weft-portmap-"));
  driver = join(work, "driver");
  // The conformance suite's libcni driver, built from Debian's Go sources (no downloads).
  execFileSync("go", ["build", "-o", driver, "./conformance/driver"], {
    env: { ...process.env, GO111MODULE: "off", GOPATH: "/usr/share/gocode", GOFLAGS: "", GOCACHE: join(tmpdir(), "weft-portmap-gocache") },
    stdio: "pipe",
  });
  return () => rmSync(work, { recursive: true, force: true });
}, 300_000);

afterEach(() => {
  for (const s of servers.splice(0)) s.kill("SIGKILL");
  pool.cleanup();
});

interface Node {
  ns: TestNetns;
  client: TestNetns;
  dir: string;
  bin: string;
}

/** A node namespace with a conflist [reference bridge, portmap] and a client namespace on a veth. */
function makeNode(portmap: string, portmapConf: Record<string, unknown> = {}): Node {
  const ns = pool.create("weft-pm-node-");
  const client = pool.create("weft-pm-cli-");
  ns.exec("ip", ["link", "add", "up0", "type", "veth", "peer", "name", "up1", "netns", client.name]);
  ns.exec("ip", ["addr", "add", `${NODE_V4}/24`, "dev", "up0"]);
  ns.exec("ip", ["addr", "add", `${NODE_V6}/64`, "dev", "up0", "nodad"]);
  ns.exec("ip", ["link", "set", "up0", "up"]);
  client.exec("ip", ["addr", "add", `${CLIENT_V4}/24`, "dev", "up1"]);
  client.exec("ip", ["addr", "add", `${CLIENT_V6}/64`, "dev", "up1", "nodad"]);
  client.exec("ip", ["link", "set", "up1", "up"]);
  const dir = mkdtempSync(join(work, "node-"));
  const bin = join(dir, "bin");
  mkdirSync(bin);
  mkdirSync(join(dir, "conf"));
  symlinkSync(`${REF}/bridge`, join(bin, "bridge"));
  symlinkSync(`${REF}/host-local`, join(bin, "host-local"));
  symlinkSync(portmap, join(bin, "portmap"));
  const conflist = {
    cniVersion: "1.0.0",
    name: NET,
    plugins: [
      {
        type: "bridge",
        bridge: "cni0",
        isGateway: true,
        isDefaultGateway: true,
        hairpinMode: true,
        ipam: { type: "host-local", ranges: [[{ subnet: "10.88.1.0/24" }], [{ subnet: "fd88::/64" }]], dataDir: join(dir, "ipam") },
      },
      { type: "portmap", capabilities: { portMappings: true }, ...portmapConf },
    ],
  };
  writeFileSync(join(dir, "conf", `${NET}.conflist`), JSON.stringify(conflist));
  return { ns, client, dir, bin };
}

interface Mapping {
  hostPort: number;
  containerPort: number;
  protocol: string;
  hostIP?: string;
}

function drv(node: Node, args: string[], mappings: Mapping[] = []): { code: number; out: string; err: string } {
  const p = spawnSync(
    "ip",
    [
      "netns",
      "exec",
      node.ns.name,
      "env",
      "-i",
      `PATH=${PATH}`,
      `NETCONFPATH=${join(node.dir, "conf")}`,
      `CNI_PATH=${node.bin}`,
      `CNI_CACHE_DIR=${join(node.dir, "cache")}`,
      `CAP_ARGS=${JSON.stringify({ portMappings: mappings })}`,
      driver,
      ...args,
    ],
    { encoding: "utf8" },
  );
  return { code: p.status ?? -1, out: p.stdout, err: p.stderr };
}

function drvOk(node: Node, args: string[], mappings: Mapping[] = []): string {
  const r = drv(node, args, mappings);
  expect(r, `driver ${args.join(" ")}\nstdout: ${r.out}\nstderr: ${r.err}`).toMatchObject({ code: 0 });
  return r.out;
}

/** A pod attached through the driver, with a server on port 80. */
function addPod(node: Node, id: string, mappings: Mapping[]): TestNetns {
  const pod = pool.create("weft-pm-pod-");
  drvOk(node, ["add", NET, id, pod.path, "eth0"], mappings);
  servers.push(spawn("ip", ["netns", "exec", pod.name, process.execPath, "-e", SERVER], { stdio: "ignore" }));
  return pod;
}

function fetchOnce(from: TestNetns, host: string, port: number): { code: number; out: string } {
  const p = spawnSync("ip", ["netns", "exec", from.name, process.execPath, "-e", CLIENT, host, String(port)], { encoding: "utf8", timeout: 5000 });
  return { code: p.status ?? -1, out: p.stdout.trim() };
}

/** Retries while the server starts and IPv6 settles; returns what the server said. */
function fetch(from: TestNetns, host: string, port: number): string {
  const deadline = Date.now() + 8000;
  let last = fetchOnce(from, host, port);
  while (last.code !== 0 && Date.now() < deadline) {
    spawnSync("sleep", ["0.2"]);
    last = fetchOnce(from, host, port);
  }
  expect(last, `connect from ${from.name} to ${host}:${port}`).toMatchObject({ code: 0 });
  return last.out;
}

/** The commented rules of the nftables layouts portmap uses: the Go plugin's shared tables, and older weft's per-network ones. */
function nftRules(node: Node): Array<{ table: string; chain: string; comment?: string; handle: number }> {
  const listing = JSON.parse(node.ns.exec("nft", ["-j", "list", "ruleset"], { maxBuffer: 256 << 20 })).nftables as Array<{
    rule?: { family: string; table: string; chain: string; comment?: string; handle: number };
  }>;
  return listing.flatMap((i) => {
    const r = i.rule;
    if (!r?.comment || !(r.table === "cni_hostport" || r.table.startsWith("weft_portmap_"))) return [];
    return [{ table: `${r.family} ${r.table}`, chain: r.chain, comment: r.comment, handle: r.handle }];
  });
}

function natRules(node: Node, tool: "iptables-save" | "ip6tables-save"): string[] {
  return node.ns
    .exec(tool, ["-t", "nat"])
    .split("\n")
    .filter((l) => l && !l.startsWith("#"));
}

const M8080 = [{ hostPort: 8080, containerPort: 80, protocol: "tcp" }];
const M8081 = [{ hostPort: 8081, containerPort: 80, protocol: "tcp" }];

describe.each<[string, Record<string, string>]>([
  ["iptables (the default where iptables is installed)", {}],
  ["nftables", { backend: "nftables" }],
])("portmap through libcni, %s", (_label, portmapConf) => {
  it("forwards the host port from another host and from the node itself, v4 and v6, with hairpin; DEL removes only that pod's rules", () => {
    const node = makeNode(WEFT_PORTMAP, portmapConf);
    const pod1 = addPod(node, "pod1", M8080);
    const pod2 = addPod(node, "pod2", M8081);

    // From another host: the source is kept.
    expect(fetch(node.client, NODE_V4, 8080)).toBe(`hello ${CLIENT_V4}`);
    expect(fetch(node.client, NODE_V6, 8080)).toBe(`hello ${CLIENT_V6}`);
    expect(fetch(node.client, NODE_V4, 8081)).toBe(`hello ${CLIENT_V4}`);
    // From the node itself: its own address, and 127.0.0.1 (route_localnet, masqueraded to the bridge).
    expect(fetch(node.ns, NODE_V4, 8080)).toMatch(/^hello /);
    expect(fetch(node.ns, NODE_V6, 8080)).toMatch(/^hello /);
    expect(fetch(node.ns, "127.0.0.1", 8080)).toBe(`hello ${GW_V4}`);
    expect(node.ns.exec("sysctl", ["-n", "net.ipv4.conf.cni0.route_localnet"]).trim()).toBe("1");
    // Hairpin: the pod to its own host port, and a pod of the same subnet to another's.
    expect(fetch(pod1, NODE_V4, 8080)).toBe(`hello ${GW_V4}`);
    expect(fetch(pod2, NODE_V4, 8080)).toBe(`hello ${GW_V4}`);

    drvOk(node, ["check", NET, "pod1", pod1.path, "eth0"], M8080);
    drvOk(node, ["check", NET, "pod2", pod2.path, "eth0"], M8081);

    const before = { nft: nftRules(node), v4: natRules(node, "iptables-save"), v6: natRules(node, "ip6tables-save") };
    drvOk(node, ["del", NET, "pod1", pod1.path, "eth0"], M8080);
    expect(fetchOnce(node.client, NODE_V4, 8080).code).not.toBe(0);
    expect(fetchOnce(node.client, NODE_V6, 8080).code).not.toBe(0);
    expect(fetch(node.client, NODE_V4, 8081)).toBe(`hello ${CLIENT_V4}`);
    expect(fetch(node.client, NODE_V6, 8081)).toBe(`hello ${CLIENT_V6}`);
    // Exactly pod1's rules went: pod2's are all still there, unchanged.
    const after = { nft: nftRules(node), v4: natRules(node, "iptables-save"), v6: natRules(node, "ip6tables-save") };
    if (portmapConf.backend === "nftables") {
      expect(before.nft.filter((r) => r.comment === "pod1").length).toBeGreaterThan(0);
      expect(after.nft).toEqual(before.nft.filter((r) => r.comment !== "pod1"));
      expect(after.v4).toEqual(before.v4);
    } else {
      expect(after.nft).toEqual([]);
      for (const family of ["v4", "v6"] as const) {
        const pod1Chain = before[family].find((l) => l.includes('id: \\"pod1\\"'))!.split(" -j ")[1]!;
        expect(after[family]).toEqual(before[family].filter((l) => !l.includes(pod1Chain)));
      }
    }
    drvOk(node, ["check", NET, "pod2", pod2.path, "eth0"], M8081);
    // DEL again: nothing left, still success.
    drvOk(node, ["del", NET, "pod1", pod1.path, "eth0"], M8080);
  });
});

// ---------------------------------------------------------------------------------------------

function prevResultOf(node: Node, id: string, pod: TestNetns): Record<string, unknown> {
  return JSON.parse(drvOk(node, ["add", NET, id, pod.path, "eth0"], [])) as Record<string, unknown>;
}

/** weft's portmap (or the reference) executed directly in the node namespace. */
function exec(node: Node, plugin: string, verb: string, conf: Record<string, unknown>, id: string, netns: string) {
  const p = spawnSync(
    "ip",
    [
      "netns",
      "exec",
      node.ns.name,
      "env",
      "-i",
      `PATH=${PATH}`,
      `CNI_COMMAND=${verb}`,
      `CNI_CONTAINERID=${id}`,
      `CNI_NETNS=${netns}`,
      "CNI_IFNAME=eth0",
      `CNI_PATH=${node.bin}`,
      plugin,
    ],
    { input: JSON.stringify(conf), encoding: "utf8" },
  );
  return { code: p.status ?? -1, out: p.stdout, err: p.stderr };
}

/** As exec, under /usr/bin/time and a hard timeout: also the plugin's peak RSS in MiB. */
function execMeasured(node: Node, plugin: string, verb: string, conf: Record<string, unknown>, id: string, netns: string) {
  const rss = join(node.dir, `rss-${verb}-${id}`);
  const p = spawnSync(
    "ip",
    [
      "netns",
      "exec",
      node.ns.name,
      "/usr/bin/time",
      "-f",
      "%M",
      "-o",
      rss,
      "env",
      "-i",
      `PATH=${PATH}`,
      `CNI_COMMAND=${verb}`,
      `CNI_CONTAINERID=${id}`,
      `CNI_NETNS=${netns}`,
      "CNI_IFNAME=eth0",
      `CNI_PATH=${node.bin}`,
      plugin,
    ],
    { input: JSON.stringify(conf), encoding: "utf8", timeout: 60_000, killSignal: "SIGKILL" },
  );
  return { code: p.status ?? -1, out: p.stdout, err: p.stderr, rssMiB: Number(readFileSync(rss, "utf8").trim().split("\n").pop()) / 1024 };
}

function portmapConf(
  prevResult: Record<string, unknown> | undefined,
  mappings: Mapping[] | undefined,
  extra: Record<string, unknown> = {},
  version = "1.0.0",
) {
  return {
    cniVersion: version,
    name: NET,
    type: "portmap",
    capabilities: { portMappings: true },
    ...extra,
    ...(mappings ? { runtimeConfig: { portMappings: mappings } } : {}),
    ...(prevResult ? { prevResult } : {}),
  };
}

describe("portmap executed directly", () => {
  it("passes prevResult through untouched when there are no mappings, as the reference does, and touches no rule", () => {
    const node = makeNode(WEFT_PORTMAP);
    const pod = pool.create("weft-pm-pod-");
    const prev = prevResultOf(node, "p", pod);
    const natBefore = natRules(node, "iptables-save");
    for (const mappings of [undefined, []]) {
      const weft = exec(node, WEFT_PORTMAP, "ADD", portmapConf(prev, mappings), "p", pod.path);
      const ref = exec(node, `${REF}/portmap`, "ADD", portmapConf(prev, mappings), "p", pod.path);
      expect(weft.code, weft.out + weft.err).toBe(0);
      // The Go library 1.1.2 prints an empty "dns": {} in 1.x results, later ones (and weft) leave it out.
      const withoutEmptyDns = (r: Record<string, unknown>) => {
        const { dns, ...rest } = r;
        return dns && Object.keys(dns).length ? r : rest;
      };
      expect(withoutEmptyDns(JSON.parse(weft.out))).toEqual(withoutEmptyDns(JSON.parse(ref.out)));
      expect(withoutEmptyDns(JSON.parse(weft.out))).toEqual(withoutEmptyDns(prev));
    }
    expect(nftRules(node)).toEqual([]);
    expect(natRules(node, "iptables-save")).toEqual(natBefore);
    // Without prevResult there is nothing to chain after.
    const lone = exec(node, WEFT_PORTMAP, "ADD", portmapConf(undefined, M8080), "p", pod.path);
    expect(lone.code).toBe(1);
    expect(JSON.parse(lone.out).msg).toBe("must be called as chained plugin");
  });

  it.each([
    ["nftables", { backend: "nftables" }],
    ["iptables (the default)", {}],
  ])("%s: DEL removes the pod's rules even without runtimeConfig or backend; CHECK notices a missing rule", (_b, extra: Record<string, string>) => {
    const node = makeNode(WEFT_PORTMAP);
    const pod = pool.create("weft-pm-pod-");
    const prev = prevResultOf(node, "p1", pod);
    const add = exec(node, WEFT_PORTMAP, "ADD", portmapConf(prev, M8080, extra), "p1", pod.path);
    expect(add.code, add.out + add.err).toBe(0);
    expect(exec(node, WEFT_PORTMAP, "CHECK", portmapConf(prev, M8080, extra), "p1", pod.path).code).toBe(0);
    // Take one rule away behind the plugin's back.
    if (extra.backend === "nftables") {
      const victim = nftRules(node).find((r) => r.chain === "masquerading" && r.comment === "p1")!;
      node.ns.exec("nft", ["delete", "rule", ...victim.table.split(" "), "masquerading", "handle", String(victim.handle)]);
    } else {
      const chain = natRules(node, "iptables-save")
        .find((l) => l.startsWith(":CNI-DN-"))!
        .slice(1)
        .split(" ")[0]!;
      node.ns.exec("iptables", ["-t", "nat", "-D", chain, "1"]);
    }
    const check = exec(node, WEFT_PORTMAP, "CHECK", portmapConf(prev, M8080, extra), "p1", pod.path);
    expect(check.code).toBe(1);
    expect(JSON.parse(check.out).msg).toBe("missing hostport rules for container p1");
    // DEL as a runtime that did not resend portMappings (plugins#683), and with no prevResult either.
    const del = exec(node, WEFT_PORTMAP, "DEL", portmapConf(undefined, undefined), "p1", pod.path);
    expect(del.code, del.out + del.err).toBe(0);
    expect(nftRules(node)).toEqual([]);
    expect(natRules(node, "iptables-save").filter((l) => l.includes("CNI-DN-"))).toEqual([]);
    expect(natRules(node, "ip6tables-save").filter((l) => l.includes("CNI-DN-"))).toEqual([]);
    expect(exec(node, WEFT_PORTMAP, "DEL", portmapConf(undefined, undefined, extra), "p1", "").code).toBe(0);
  });

  it.each([
    ["nftables", { backend: "nftables" }],
    ["iptables (the default)", {}],
  ])("%s: refuses more than 1024 mappings with code 7 and touches nothing; 1024 are added and deleted whole", (_b, extra: Record<string, string>) => {
    const node = makeNode(WEFT_PORTMAP);
    const pod = pool.create("weft-pm-pod-");
    const prev = prevResultOf(node, "many", pod);
    const mappings = (n: number) =>
      Array.from({ length: n }, (_, i) => ({ hostPort: 20000 + i, containerPort: 80, protocol: i % 2 ? "udp" : "tcp" }));
    const natBefore = natRules(node, "iptables-save");
    const refused = execMeasured(node, WEFT_PORTMAP, "ADD", portmapConf(prev, mappings(1025), extra), "many", pod.path);
    expect(refused.code).toBe(1);
    expect(refused.rssMiB).toBeLessThan(100);
    expect(JSON.parse(refused.out)).toMatchObject({ code: 7, msg: "runtimeConfig.portMappings has 1025 mappings: at most 1024 per pod" });
    expect(nftRules(node)).toEqual([]);
    expect(natRules(node, "iptables-save")).toEqual(natBefore);

    const added = execMeasured(node, WEFT_PORTMAP, "ADD", portmapConf(prev, mappings(1024), extra), "many", pod.path);
    expect(added.code, added.out + added.err).toBe(0);
    expect(added.rssMiB).toBeLessThan(150);
    // Per mapping: a DNAT and two masquerades (subnet, 127.0.0.1) for IPv4, a DNAT and one masquerade for IPv6.
    if (extra.backend === "nftables") expect(nftRules(node).filter((r) => r.comment === "many")).toHaveLength(1024 * 5);
    else expect(natRules(node, "iptables-save").filter((l) => l.includes("DNAT --to-destination"))).toHaveLength(1024);
    const deleted = execMeasured(node, WEFT_PORTMAP, "DEL", portmapConf(undefined, undefined), "many", pod.path);
    expect(deleted.code, deleted.out + deleted.err).toBe(0);
    expect(deleted.rssMiB).toBeLessThan(150);
    expect(nftRules(node)).toEqual([]);
    expect(natRules(node, "iptables-save").filter((l) => l.includes("CNI-DN-"))).toEqual([]);
  });

  it("GC removes the iptables rules of attachments not in the valid list, and only those; it leaves the Go layout's shared nftables tables to DEL", () => {
    const node = makeNode(WEFT_PORTMAP);
    const pods = ["g1", "g2", "n1"].map((id) => {
      const pod = pool.create("weft-pm-pod-");
      const prev = prevResultOf(node, id, pod);
      const mappings = id === "g1" ? M8080 : id === "g2" ? M8081 : [{ hostPort: 8082, containerPort: 80, protocol: "tcp" }];
      const extra = id === "n1" ? { backend: "nftables" } : {};
      expect(exec(node, WEFT_PORTMAP, "ADD", portmapConf(prev, mappings, extra), id, pod.path).code).toBe(0);
      return { id, pod, prev, mappings, extra };
    });
    const gcConf = { ...portmapConf(undefined, undefined, {}, "1.1.0"), "cni.dev/valid-attachments": [{ containerID: "g2", ifname: "eth0" }] };
    const gc = spawnSync("ip", ["netns", "exec", node.ns.name, "env", "-i", `PATH=${PATH}`, "CNI_COMMAND=GC", `CNI_PATH=${node.bin}`, WEFT_PORTMAP], {
      input: JSON.stringify(gcConf),
      encoding: "utf8",
    });
    expect(gc.status, gc.stdout + gc.stderr).toBe(0);
    const [g1, g2, n1] = pods as [(typeof pods)[0], (typeof pods)[0], (typeof pods)[0]];
    expect(exec(node, WEFT_PORTMAP, "CHECK", portmapConf(g1.prev, g1.mappings), "g1", g1.pod.path).code).toBe(1);
    expect(exec(node, WEFT_PORTMAP, "CHECK", portmapConf(g2.prev, g2.mappings), "g2", g2.pod.path).code).toBe(0);
    expect(natRules(node, "iptables-save").some((l) => l.includes('id: \\"g1\\"'))).toBe(false);
    // The shared tables name no network: a rule there may be another network's pod, so GC keeps it.
    expect(exec(node, WEFT_PORTMAP, "CHECK", portmapConf(n1.prev, n1.mappings, n1.extra), "n1", n1.pod.path).code).toBe(0);
    expect(exec(node, WEFT_PORTMAP, "DEL", portmapConf(undefined, undefined), "n1", n1.pod.path).code).toBe(0);
    expect(nftRules(node)).toEqual([]);
  });

  it("DEL and GC remove the rules an older weft made in its per-network nftables table", () => {
    const node = makeNode(WEFT_PORTMAP);
    const table = `weft_portmap_${createHash("sha256").update(NET).digest("hex").slice(0, 16)}`;
    const otherNet = `weft_portmap_${createHash("sha256").update("othernet").digest("hex").slice(0, 16)}`;
    const rules = (t: string) => [
      `add table inet ${t}`,
      `add chain inet ${t} hostports`,
      ...["old1", "old2", "old3"].map(
        (id, i) => `add rule inet ${t} hostports meta l4proto tcp th dport ${9000 + i} dnat ip to 10.88.1.${10 + i}:80 comment "${id}"`,
      ),
    ];
    node.ns.exec("nft", ["-f", "-"], { input: [...rules(table), ...rules(otherNet), ""].join("\n") });
    expect(exec(node, WEFT_PORTMAP, "DEL", portmapConf(undefined, undefined), "old1", "").code).toBe(0);
    const gcConf = { ...portmapConf(undefined, undefined, {}, "1.1.0"), "cni.dev/valid-attachments": [{ containerID: "old3", ifname: "eth0" }] };
    const gc = spawnSync("ip", ["netns", "exec", node.ns.name, "env", "-i", `PATH=${PATH}`, "CNI_COMMAND=GC", `CNI_PATH=${node.bin}`, WEFT_PORTMAP], {
      input: JSON.stringify(gcConf),
      encoding: "utf8",
    });
    expect(gc.status, gc.stdout + gc.stderr).toBe(0);
    const left = nftRules(node).map((r) => `${r.table.split(" ")[1] === table ? "mine" : "other"}:${r.comment}`);
    expect(left.sort()).toEqual(["mine:old3", "other:old1", "other:old2", "other:old3"]);
  });
});

// ---------------------------------------------------------------------------------------------

describe("weft vs Debian's reference portmap (iptables)", () => {
  /** The nat tables of both families after the same requests; weft with backend iptables. */
  function natAfter(portmap: string, steps: (node: Node, pods: Map<string, TestNetns>) => void): { v4: string[]; v6: string[] } {
    const node = makeNode(portmap, { backend: "iptables", conditionsV4: ["!", "-d", "10.0.0.0/8"] });
    const pods = new Map<string, TestNetns>();
    steps(node, pods);
    return { v4: natRules(node, "iptables-save"), v6: natRules(node, "ip6tables-save") };
  }
  const MANY = [
    { hostPort: 8080, containerPort: 80, protocol: "tcp" },
    { hostPort: 8053, containerPort: 53, protocol: "udp" },
    { hostPort: 9132, containerPort: 132, protocol: "sctp" },
    { hostPort: 9090, containerPort: 90, protocol: "tcp", hostIP: NODE_V4 },
    { hostPort: 9091, containerPort: 91, protocol: "tcp", hostIP: NODE_V6 },
    { hostPort: 9092, containerPort: 92, protocol: "tcp", hostIP: "0.0.0.0" },
  ];
  const addTwo = (node: Node, pods: Map<string, TestNetns>) => {
    for (const [id, mappings] of [
      ["r1", MANY],
      ["r2", M8081],
    ] as const) {
      const pod = pool.create("weft-pm-pod-");
      drvOk(node, ["add", NET, id, pod.path, "eth0"], mappings);
      pods.set(id, pod);
    }
  };

  it("makes the same rules for one pod, the same set for two (newest pod's jumps first), and the same after DEL", () => {
    const one = (node: Node, pods: Map<string, TestNetns>) => {
      const pod = pool.create("weft-pm-pod-");
      drvOk(node, ["add", NET, "r1", pod.path, "eth0"], MANY);
      pods.set("r1", pod);
    };
    expect(natAfter(WEFT_PORTMAP, one)).toEqual(natAfter(`${REF}/portmap`, one));

    const weftTwo = natAfter(WEFT_PORTMAP, addTwo);
    const refTwo = natAfter(`${REF}/portmap`, addTwo);
    for (const family of ["v4", "v6"] as const) {
      expect([...weftTwo[family]].sort()).toEqual([...refTwo[family]].sort());
      // Intended difference: weft puts the newest pod's jumps first, so it wins a contested host port.
      const entries = (rules: string[]) => rules.filter((l) => l.startsWith("-A CNI-HOSTPORT-DNAT")).map((l) => l.match(/id: \\"(\w+)\\"/)![1]);
      expect(entries(weftTwo[family])[0]).toBe("r2");
      expect(entries(refTwo[family])[0]).toBe("r1");
    }

    const delFirst = (node: Node, pods: Map<string, TestNetns>) => {
      addTwo(node, pods);
      drvOk(node, ["del", NET, "r1", pods.get("r1")!.path, "eth0"], MANY);
    };
    expect(natAfter(WEFT_PORTMAP, delFirst)).toEqual(natAfter(`${REF}/portmap`, delFirst));
  });
});
