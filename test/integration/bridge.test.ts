import { spawn, spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import { pathWithTestNode, weftProgram } from "../helpers/executables.js";
import { netnsPool, uniqueName, type TestNetns } from "../helpers/netns.js";

/**
 * weft's bridge (WEFT_BIN) as a runtime runs it: a fresh process with a clean environment, the node
 * side in a namespace of its own (so cni0 and its firewall rules die with it), the pod in another.
 * IPAM is the reference host-local from /usr/lib/cni until weft's lands.
 */

const WEFT_BRIDGE = weftProgram("bridge");
const REFERENCE_BRIDGE = "/usr/lib/cni/bridge";
const PATH = pathWithTestNode("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");

const pool = netnsPool();
let work: string;
let cniPath: string;

beforeAll(() => {
  work = mkdtempSync(join(tmpdir(), "weft-bridge-"));
  cniPath = join(work, "bin");
  mkdirSync(cniPath);
  symlinkSync(WEFT_BRIDGE, join(cniPath, "bridge"));
  return () => rmSync(work, { recursive: true, force: true });
});

afterEach(() => pool.cleanup());

interface Run {
  code: number;
  stdout: string;
  stderr: string;
  json: Record<string, unknown>;
}

interface Attach {
  node: TestNetns;
  netns: string;
  containerId: string;
  ifName?: string;
  args?: string;
  plugin?: string;
  extraEnv?: Record<string, string>;
}

function run(verb: string, conf: object, a: Attach): Run {
  const env = [
    `PATH=${PATH}`,
    `CNI_COMMAND=${verb}`,
    `CNI_CONTAINERID=${a.containerId}`,
    `CNI_NETNS=${a.netns}`,
    `CNI_IFNAME=${a.ifName ?? "eth0"}`,
    `CNI_PATH=${cniPath}:/usr/lib/cni`,
    `WEFT_CACHE_DIR=${join(work, "cache")}`,
    ...(a.args ? [`CNI_ARGS=${a.args}`] : []),
    ...Object.entries(a.extraEnv ?? {}).map(([k, v]) => `${k}=${v}`),
  ];
  const p = spawnSync("ip", ["netns", "exec", a.node.name, "env", "-i", ...env, a.plugin ?? WEFT_BRIDGE], {
    input: JSON.stringify(conf),
    encoding: "utf8",
  });
  let json: Record<string, unknown> = {};
  try {
    json = p.stdout.trim() ? JSON.parse(p.stdout) : {};
  } catch {
    // not JSON: the assertions below show stdout
  }
  return { code: p.status ?? -1, stdout: p.stdout, stderr: p.stderr, json };
}

function ok(r: Run): Record<string, unknown> {
  expect(r, `stdout: ${r.stdout}\nstderr: ${r.stderr}`).toMatchObject({ code: 0 });
  return r.json;
}

/** A flannel-style delegate config (what flannel renders from subnet.env), dual-stack, MTU 1450. */
function flannelConf(dataDir: string, extra: Record<string, unknown> = {}, version = "1.0.0") {
  return {
    cniVersion: version,
    name: "cbr0",
    type: "bridge",
    mtu: 1450,
    isGateway: true,
    isDefaultGateway: true,
    hairpinMode: true,
    ipMasq: false,
    ipam: {
      type: "host-local",
      dataDir,
      ranges: [[{ subnet: "10.244.1.0/24" }], [{ subnet: "fd00:10:244:1::/64" }]],
      routes: [{ dst: "10.244.0.0/16" }, { dst: "fd00:10:244::/56" }],
    },
    ...extra,
  };
}

function dataDir(): string {
  return join(work, uniqueName("ipam-", 20));
}

function ipFiles(dir: string): string[] {
  try {
    return readdirSync(join(dir, "cbr0")).filter((f) => f !== "lock" && !f.startsWith("last_reserved_ip"));
  } catch {
    return [];
  }
}

interface IpLink {
  ifname: string;
  mtu: number;
  master?: string;
  operstate: string;
  linkinfo?: { info_kind?: string; info_slave_data?: { hairpin?: boolean; isolated?: boolean } };
  address: string;
}

interface IpAddr {
  ifname: string;
  addr_info: Array<{ local: string; prefixlen: number; family: string; tentative?: boolean; nodad?: boolean; scope: string }>;
}

const links = (ns: TestNetns) => ns.ipJson<IpLink[]>("-d", "link", "show");
const addrs = (ns: TestNetns, dev: string) => ns.ipJson<IpAddr[]>("addr", "show", "dev", dev)[0]!.addr_info;
const routes = (ns: TestNetns, family: "-4" | "-6") => ns.ipJson<Array<{ dst: string; gateway?: string }>>(family, "route", "show");
const nftRuleset = (ns: TestNetns) => ns.exec("nft", ["list", "ruleset"]);

/** The container ID of every masquerade rule of the bridge's ipMasq, in either backend's layout. */
function masqRules(ns: TestNetns): string[] {
  const ids: string[] = [];
  for (const tool of ["iptables-save", "ip6tables-save"]) {
    for (const line of ns.exec(tool, ["-t", "nat"]).split("\n")) {
      const m = /^-A CNI-\w+ .*id: \\"([^"\\]*)\\"" -j MASQUERADE$/.exec(line);
      if (m) ids.push(m[1]!);
    }
  }
  for (const line of nftRuleset(ns).split("\n")) {
    const m = /masquerade comment "[0-9a-f]{16}-[0-9a-f]{16}, net: .*, id: ([^"]*)"/.exec(line);
    if (m) ids.push(m[1]!);
  }
  return ids.sort();
}

/** Results compared field by field, with what legitimately differs masked: MACs and veth names. */
function masked(result: Record<string, unknown>): unknown {
  const copy = JSON.parse(JSON.stringify(result)) as Record<string, unknown>;
  // The Debian reference links cni lib 1.0 and prints an empty "dns": {}; newer libs drop it.
  if (copy.dns && Object.keys(copy.dns).length === 0) delete copy.dns;
  for (const i of (copy.interfaces as Array<Record<string, unknown>> | undefined) ?? []) {
    if (typeof i.mac === "string") i.mac = "<mac>";
    if (typeof i.name === "string" && /^veth[0-9a-f]{8}$/.test(i.name)) i.name = "<veth>";
    if (typeof i.sandbox === "string") i.sandbox = "<sandbox>";
  }
  return copy;
}

/**
 * A TCP exchange from the pod to a server on addr in the node namespace, started right away: a
 * tentative (DAD) address can be neither bound nor reached.
 */
function tcpReaches(server: TestNetns, client: TestNetns, addr: string): string {
  const port = 20000 + Math.floor(Math.random() * 20000);
  const serve = `const s=require("net").createServer(c=>{c.end("ok");s.close()});s.on("error",e=>{console.error(e.message);process.exit(3)});s.listen(${port},${JSON.stringify(addr)},()=>console.log("listening"));setTimeout(()=>process.exit(4),5000)`;
  // The server's error (EADDRNOTAVAIL on a tentative address, which a test expects) is returned, not printed.
  const listener = spawn("ip", ["netns", "exec", server.name, process.execPath, "-e", serve], { stdio: ["ignore", "pipe", "pipe"] });
  let serverError = "";
  listener.stderr.on("data", (chunk: Buffer) => (serverError += chunk.toString()));
  try {
    const ready = spawnSync("bash", [
      "-c",
      `for i in $(seq 100); do ip netns exec ${server.name} ss -ltn | grep -q ":${port} " && exit 0; sleep 0.02; done; exit 1`,
    ]);
    if (ready.status !== 0) return `server did not start: ${serverError.trim()}`;
    const connect = `const c=require("net").connect(${port},${JSON.stringify(addr)});let d="";c.on("data",x=>d+=x);c.on("end",()=>{process.stdout.write(d);process.exit(0)});c.on("error",e=>{process.stdout.write(e.message)});setTimeout(()=>{process.stdout.write("timeout");process.exit(1)},3000)`;
    return spawnSync("ip", ["netns", "exec", client.name, process.execPath, "-e", connect], { encoding: "utf8" }).stdout;
  } finally {
    listener.kill();
  }
}

function vlanSupport(): string | undefined {
  const ns = pool.create();
  try {
    ns.exec("ip", ["link", "add", "probe0", "type", "bridge", "vlan_filtering", "1"], { stdio: "pipe" });
    return undefined;
  } catch (err) {
    return `this kernel cannot filter VLANs on a bridge (${String((err as { stderr?: string }).stderr ?? err).trim()})`;
  }
}

describe("bridge ADD/CHECK/DEL", () => {
  it("gives the pod eth0 with MTU 1450, its addresses, routes via the gateway on cni0, usable IPv6 at once", () => {
    const node = pool.create();
    const pod = pool.create();
    const dir = dataDir();
    const conf = flannelConf(dir);
    const a = { node, netns: pod.path, containerId: "c-add" };
    const result = ok(run("ADD", conf, a));

    const eth0 = links(pod).find((l) => l.ifname === "eth0")!;
    expect(eth0).toMatchObject({ mtu: 1450, operstate: "UP" });
    expect(eth0.linkinfo?.info_kind).toBe("veth");
    const podAddrs = addrs(pod, "eth0").filter((x) => x.scope === "global");
    expect(podAddrs.map((x) => `${x.local}/${x.prefixlen}`)).toEqual(["10.244.1.2/24", "fd00:10:244:1::2/64"]);
    expect(podAddrs.every((x) => !x.tentative)).toBe(true);

    const nodeLinks = links(node);
    const cni0 = nodeLinks.find((l) => l.ifname === "cni0")!;
    expect(cni0.mtu).toBe(1450);
    const veth = nodeLinks.find((l) => l.linkinfo?.info_kind === "veth")!;
    expect(veth).toMatchObject({ mtu: 1450, master: "cni0" });
    expect(veth.linkinfo?.info_slave_data?.hairpin).toBe(true);
    const gw = addrs(node, "cni0").filter((x) => x.scope === "global");
    expect(gw.map((x) => `${x.local}/${x.prefixlen}`)).toEqual(["10.244.1.1/24", "fd00:10:244:1::1/64"]);
    expect(gw.every((x) => !x.tentative)).toBe(true);

    expect(routes(pod, "-4")).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ dst: "default", gateway: "10.244.1.1" }),
        expect.objectContaining({ dst: "10.244.0.0/16", gateway: "10.244.1.1" }),
      ]),
    );
    expect(routes(pod, "-6")).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ dst: "default", gateway: "fd00:10:244:1::1" }),
        expect.objectContaining({ dst: "fd00:10:244::/56", gateway: "fd00:10:244:1::1" }),
      ]),
    );
    // Usable when ADD returns: no DAD wait on either side of the IPv6 gateway.
    expect(tcpReaches(node, pod, "10.244.1.1")).toBe("ok");
    expect(tcpReaches(node, pod, "fd00:10:244:1::1")).toBe("ok");

    expect((result.interfaces as Array<{ name: string }>).map((i) => i.name)).toEqual(["cni0", veth.ifname, "eth0"]);
    expect(ipFiles(dir)).toEqual(["10.244.1.2", "fd00:10:244:1::2"]);

    // CHECK passes on the healthy pod (the reference fails it: see the differential test)...
    ok(run("CHECK", { ...conf, prevResult: result }, a));
    // ...and fails on a tampered one, saying what differs.
    pod.exec("ip", ["route", "del", "10.244.0.0/16"]);
    pod.exec("ip", ["link", "set", "eth0", "mtu", "1400"]);
    const tampered = run("CHECK", { ...conf, prevResult: result }, a);
    expect(tampered.code).not.toBe(0);
    expect(tampered.json.msg).toContain("route 10.244.0.0/16 via 10.244.1.1 not found");
    expect(tampered.json.msg).toContain("eth0 MTU is 1400, config says 1450");

    // DEL leaves no link, address or IP file; a second DEL succeeds too.
    ok(run("DEL", { ...conf, prevResult: result }, a));
    expect(links(pod).map((l) => l.ifname)).toEqual(["lo"]);
    expect(
      links(node)
        .map((l) => l.ifname)
        .sort(),
    ).toEqual(["cni0", "lo"]);
    expect(ipFiles(dir)).toEqual([]);
    ok(run("DEL", conf, a));
  });

  it("answers every result version like the reference bridge, except MACs and veth names", () => {
    for (const version of ["0.2.0", "0.3.1", "0.4.0", "1.0.0"]) {
      const outputs = [WEFT_BRIDGE, REFERENCE_BRIDGE].map((plugin) => {
        const node = pool.create();
        const pod = pool.create();
        return run("ADD", flannelConf(dataDir(), { dns: { nameservers: ["10.96.0.10"] } }, version), {
          node,
          netns: pod.path,
          containerId: "c-diff",
          plugin,
        });
      });
      const [weft, reference] = outputs.map(ok);
      expect(masked(weft!), version).toEqual(masked(reference!));
      pool.cleanup();
    }
  });

  it("passes CHECK on a healthy flannel pod where the reference fails it, and has the IPv6 gateway ready at once", () => {
    const results = [WEFT_BRIDGE, REFERENCE_BRIDGE].map((plugin) => {
      const node = pool.create();
      const pod = pool.create();
      const conf = flannelConf(dataDir(), {}, "0.4.0");
      const a = { node, netns: pod.path, containerId: "c-check", plugin };
      const added = ok(run("ADD", conf, a));
      // Right after ADD: the reference's bridge address is still in DAD and cannot even be bound.
      const v6 = tcpReaches(node, pod, "fd00:10:244:1::1");
      return { check: run("CHECK", { ...conf, prevResult: added }, a), v6 };
    });
    expect(results[0]!.check.code).toBe(0);
    expect(results[0]!.v6).toBe("ok");
    expect(results[1]!.check.code).not.toBe(0);
    expect(results[1]!.check.json.msg).toContain("Expected Route {Dst:{IP:10.244.0.0 Mask:ffff0000} GW:<nil>} not found");
    expect(results[1]!.v6).not.toBe("ok");
  });
});

describe("bridge failures leave nothing behind", () => {
  it("a bridge holding another subnet's address: the error names both, IPAM is released, no veth stays", () => {
    const node = pool.create();
    const pod = pool.create();
    node.exec("ip", ["link", "add", "cni0", "type", "bridge"]);
    node.exec("ip", ["addr", "add", "10.60.1.1/24", "dev", "cni0"]);
    const dir = dataDir();
    const conf = flannelConf(dir, { ipMasq: true });
    const a = { node, netns: pod.path, containerId: "c-conflict" };
    const r = run("ADD", conf, a);
    expect(r.code).not.toBe(0);
    expect(r.json.msg).toBe('failed to set bridge addr: "cni0" already has an IP address different from 10.244.1.1/24');
    expect(r.json.details).toContain("holds 10.60.1.1/24");
    expect(r.json.details).toContain("forceAddress");
    expect(links(pod).map((l) => l.ifname)).toEqual(["lo"]);
    expect(
      links(node)
        .map((l) => l.ifname)
        .sort(),
    ).toEqual(["cni0", "lo"]);
    expect(ipFiles(dir)).toEqual([]);
    expect(masqRules(node)).toEqual([]);

    // forceAddress replaces the stale address.
    ok(run("ADD", { ...conf, forceAddress: true }, a));
    const global = addrs(node, "cni0").filter((x) => x.family === "inet");
    expect(global.map((x) => x.local)).toEqual(["10.244.1.1"]);
    expect(masqRules(node)).toEqual(["c-conflict", "c-conflict"]);
    ok(run("DEL", conf, a));
    expect(masqRules(node)).toEqual([]);
  });

  it("a route the kernel refuses, after IPAM and masquerade: rolled back, the step named", () => {
    const node = pool.create();
    const pod = pool.create();
    const dir = dataDir();
    const conf = flannelConf(dir, { ipMasq: true });
    conf.ipam.routes.push({ dst: "10.99.0.0/16", gw: "192.168.255.1" } as never);
    const r = run("ADD", conf, { node, netns: pod.path, containerId: "c-route" });
    expect(r.code).not.toBe(0);
    expect(r.json.msg).toMatch(/^failed to add route 10\.99\.0\.0\/16 via 192\.168\.255\.1 on eth0: .*ENETUNREACH/);
    expect(links(pod).map((l) => l.ifname)).toEqual(["lo"]);
    expect(links(node).filter((l) => l.linkinfo?.info_kind === "veth")).toEqual([]);
    expect(ipFiles(dir)).toEqual([]);
  });

  it("an interface name already taken in the pod fails before anything is made", () => {
    const node = pool.create();
    const pod = pool.create();
    pod.exec("ip", ["link", "add", "eth0", "type", "veth", "peer", "name", "other0"]);
    const dir = dataDir();
    const r = run("ADD", flannelConf(dir), { node, netns: pod.path, containerId: "c-taken" });
    expect(r.json.msg).toContain('container veth name "eth0" already exists');
    expect(links(node).filter((l) => l.linkinfo?.info_kind === "veth")).toEqual([]);
    expect(ipFiles(dir)).toEqual([]);
  });

  const noVlan = vlanSupport();
  pool.cleanup();
  it.skipIf(noVlan !== undefined)(`vlan: the host port carries the VLAN untagged${noVlan ? ` (skipped: ${noVlan})` : ""}`, () => {
    const node = pool.create();
    const pod = pool.create();
    ok(
      run("ADD", flannelConf(dataDir(), { vlan: 100, isGateway: false, isDefaultGateway: false }), { node, netns: pod.path, containerId: "c-vlan" }),
    );
    expect(node.exec("bridge", ["vlan", "show"])).toContain("100 PVID Egress Untagged");
  });

  it.runIf(noVlan !== undefined)("vlan on a kernel without VLAN filtering: a clear error and nothing half-made", () => {
    const node = pool.create();
    const pod = pool.create();
    const dir = dataDir();
    const r = run("ADD", flannelConf(dir, { vlan: 100 }), { node, netns: pod.path, containerId: "c-vlan" });
    expect(r.code).not.toBe(0);
    expect(r.json.msg).toMatch(/operation not supported.*cannot filter VLANs on a bridge/);
    expect(links(pod).map((l) => l.ifname)).toEqual(["lo"]);
    expect(links(node).filter((l) => l.linkinfo?.info_kind === "veth")).toEqual([]);
    expect(ipFiles(dir)).toEqual([]);
  });
});

describe("bridge DEL when the namespace is gone or unusable", () => {
  it.each([
    ["iptables (the default)", {}],
    ["nftables", { ipMasqBackend: "nftables" }],
  ])("%s: releases IPAM and removes masquerade rules after the pod's namespace was deleted", (_b, backend) => {
    const node = pool.create();
    const pod = pool.create();
    const dir = dataDir();
    const conf = flannelConf(dir, { ipMasq: true, ...backend });
    const a = { node, netns: pod.path, containerId: "c-gone" };
    const added = ok(run("ADD", conf, a));
    expect(masqRules(node)).toEqual(["c-gone", "c-gone"]);
    ok(run("CHECK", { ...conf, prevResult: added }, a));
    spawnSync("ip", ["netns", "delete", pod.name]);
    // DEL without ipMasqBackend: it removes the rules of either backend.
    ok(run("DEL", { ...conf, ipMasqBackend: undefined, prevResult: added }, a));
    expect(ipFiles(dir)).toEqual([]);
    expect(masqRules(node)).toEqual([]);
    expect(links(node).filter((l) => l.linkinfo?.info_kind === "veth")).toEqual([]);
    ok(run("DEL", conf, { ...a, netns: "" }));
  });

  it("treats a CNI_NETNS that is not a namespace as gone on DEL, and refuses it on ADD", () => {
    const node = pool.create();
    const pod = pool.create();
    const dir = dataDir();
    const conf = flannelConf(dir);
    ok(run("ADD", conf, { node, netns: pod.path, containerId: "c-stale" }));
    const stale = join(work, uniqueName("stale-", 20));
    writeFileSync(stale, "");
    ok(run("DEL", conf, { node, netns: stale, containerId: "c-stale" }));
    expect(ipFiles(dir)).toEqual([]);
    const r = run("ADD", conf, { node, netns: stale, containerId: "c-stale2" });
    expect(r.code).not.toBe(0);
    expect(r.json.msg).toMatch(/is not a network namespace/);
    expect(ipFiles(dir)).toEqual([]);
  });

  it("refuses the plugin's own namespace with code 8 unless CNI_NETNS_OVERRIDE", () => {
    const node = pool.create();
    const dir = dataDir();
    const r = run("ADD", flannelConf(dir), { node, netns: `/run/netns/${node.name}`, containerId: "c-own" });
    expect(r.json).toMatchObject({ code: 8 });
    expect(ipFiles(dir)).toEqual([]);
  });
});

describe("bridge options", () => {
  it("layer 2 only (no ipam): eth0 up without addresses, and CHECK passes", () => {
    const node = pool.create();
    const pod = pool.create();
    const conf = { cniVersion: "1.0.0", name: "l2", type: "bridge", bridge: "br-l2" };
    const a = { node, netns: pod.path, containerId: "c-l2" };
    const added = ok(run("ADD", conf, a));
    expect(added.ips).toBeUndefined();
    expect(links(pod).find((l) => l.ifname === "eth0")?.operstate).toBe("UP");
    ok(run("CHECK", { ...conf, prevResult: added }, a));
    ok(run("DEL", conf, a));
  });

  it("takes the MAC from runtimeConfig over CNI_ARGS, and drops spoofed frames with macspoofchk", () => {
    const node = pool.create();
    const pod = pool.create();
    const conf = flannelConf(dataDir(), { macspoofchk: true, runtimeConfig: { mac: "0A:58:0A:F4:01:99" } });
    const a = { node, netns: pod.path, containerId: "c-mac", args: "IgnoreUnknown=1;MAC=0a:58:00:00:00:01" };
    const added = ok(run("ADD", conf, a));
    expect((added.interfaces as Array<{ mac: string }>)[2]!.mac).toBe("0a:58:0a:f4:01:99");
    expect(links(pod).find((l) => l.ifname === "eth0")?.address).toBe("0a:58:0a:f4:01:99");
    expect(nftRuleset(node)).toContain("ether saddr != 0a:58:0a:f4:01:99 drop");
    ok(run("DEL", conf, a));
    expect(nftRuleset(node)).not.toContain("ether saddr");
  });

  it("enabledad: ADD waits for duplicate address detection, so the address is not tentative", () => {
    const node = pool.create();
    const pod = pool.create();
    const a = { node, netns: pod.path, containerId: "c-dad" };
    ok(run("ADD", flannelConf(dataDir(), { enabledad: true }), a));
    const v6 = addrs(pod, "eth0").filter((x) => x.family === "inet6" && x.scope === "global");
    expect(v6).toHaveLength(1);
    expect(v6[0]!.tentative).toBeFalsy();
    expect(v6[0]!.nodad).toBeFalsy();
  });

  it("portIsolation and promiscMode reach the kernel; hairpin with promisc is refused", () => {
    const node = pool.create();
    const pod = pool.create();
    const a = { node, netns: pod.path, containerId: "c-iso" };
    ok(run("ADD", flannelConf(dataDir(), { portIsolation: true, hairpinMode: false, promiscMode: true }), a));
    const veth = links(node).find((l) => l.linkinfo?.info_kind === "veth")!;
    expect(veth.linkinfo?.info_slave_data).toMatchObject({ isolated: true, hairpin: false });
    expect(node.exec("ip", ["link", "show", "cni0"])).toContain("PROMISC");
    const bad = run("ADD", flannelConf(dataDir(), { promiscMode: true }), { ...a, containerId: "c-iso2", ifName: "eth1" });
    expect(bad.json).toMatchObject({ code: 7, msg: "cannot set hairpin mode and promiscuous mode at the same time" });
  });

  it.each([
    ["iptables (the default)", {}],
    ["nftables", { ipMasqBackend: "nftables" }],
  ])("%s: GC removes the masquerade rules of attachments not in the valid list, of this network only", (_b, backend) => {
    const node = pool.create();
    const pods = [pool.create(), pool.create(), pool.create()];
    const dir = dataDir();
    // Debian's host-local stops at spec 1.0.0: ADD at 1.0.0, GC and STATUS (1.1.0 verbs) at 1.1.0.
    const conf = flannelConf(dir, { ipMasq: true, ...backend }, "1.0.0");
    ok(run("ADD", conf, { node, netns: pods[0]!.path, containerId: "keep" }));
    ok(run("ADD", conf, { node, netns: pods[1]!.path, containerId: "drop" }));
    const otherNet = { ...conf, name: "othernet", bridge: "cni1", ipam: { ...conf.ipam, ranges: [[{ subnet: "10.245.1.0/24" }]], routes: [] } };
    ok(run("ADD", otherNet, { node, netns: pods[2]!.path, containerId: "other" }));
    expect(masqRules(node)).toEqual(["drop", "drop", "keep", "keep", "other"]);
    const gcConf = { ...conf, cniVersion: "1.1.0" };
    ok(run("GC", { ...gcConf, "cni.dev/valid-attachments": [{ containerID: "keep", ifname: "eth0" }] }, { node, netns: "", containerId: "" }));
    expect(masqRules(node)).toEqual(["keep", "keep", "other"]);
    ok(run("STATUS", gcConf, { node, netns: "", containerId: "" }));
  });
});
