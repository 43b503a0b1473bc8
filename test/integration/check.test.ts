import { spawnSync } from "node:child_process";
import { mkdtempSync, renameSync, rmSync, unlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import type { Result } from "../../lib/cni/result.js";
import { attachmentKey, removeMasquerade } from "../../lib/netfilter/masquerade.js";
import { parseNftTable, splitIptablesLine } from "../../lib/netfilter/netfilter.js";
import { Netns } from "../../lib/netns/netns.js";
import { within, type NftContext } from "../../lib/netfilter/nft.js";
import { unforwardPorts } from "../../plugins/portmap/apply.js";
import { podAddresses, portmapSettings, type PodAddress, type PortmapConf, type PortmapSettings } from "../../plugins/portmap/config.js";
import {
  dnatChainName,
  iptablesEntryRules,
  iptablesPodRules,
  iptablesSharedRules,
  nftExpectedSignatures,
  nftRuleSignature,
  NFT_TABLE,
  TOP_DNAT_CHAIN,
} from "../../plugins/portmap/rules.js";
import { pathWithTestNode, WEFT_BIN } from "../helpers/executables.js";
import { netnsPool, uniqueName, type TestNetns } from "../helpers/netns.js";

/**
 * Every claim a CHECK makes, one test each: a real ADD through weft's executables (WEFT_BIN; the
 * node side in a namespace of its own, so cni0 and the firewall rules die with it), a passing CHECK,
 * then exactly one thing tampered with, and CHECK must fail with code 101 and a message naming that
 * thing.
 */

const BIN = WEFT_BIN;
const PATH = pathWithTestNode("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
const CHECK_FAILED = 101;

const pool = netnsPool();
let work: string;

beforeAll(() => {
  work = mkdtempSync(join(tmpdir(), "weft-check-"));
  return () => rmSync(work, { recursive: true, force: true });
});

afterEach(() => pool.cleanup());

interface Run {
  code: number;
  stdout: string;
  stderr: string;
  json: { code?: number; msg?: string; details?: string; [key: string]: unknown };
}

interface Attachment {
  node: TestNetns;
  pod: TestNetns;
  containerId: string;
}

/** One invocation of weft's <plugin> as a runtime makes it: a clean environment, in the node namespace. */
function run(plugin: string, verb: string, conf: object, a: Attachment): Run {
  const env = [
    `PATH=${PATH}`,
    `CNI_COMMAND=${verb}`,
    `CNI_CONTAINERID=${a.containerId}`,
    `CNI_NETNS=${a.pod.path}`,
    "CNI_IFNAME=eth0",
    `CNI_PATH=${BIN}`,
    `WEFT_CACHE_DIR=${join(work, "cache")}`,
  ];
  const p = spawnSync("ip", ["netns", "exec", a.node.name, "env", "-i", ...env, join(BIN, plugin)], {
    input: JSON.stringify(conf),
    encoding: "utf8",
  });
  let json: Run["json"] = {};
  try {
    json = p.stdout.trim() ? (JSON.parse(p.stdout) as Run["json"]) : {};
  } catch {
    // not JSON: the assertions show stdout
  }
  return { code: p.status ?? -1, stdout: p.stdout, stderr: p.stderr, json };
}

function ok(r: Run): Run["json"] {
  expect(r, `stdout: ${r.stdout}\nstderr: ${r.stderr}`).toMatchObject({ code: 0 });
  return r.json;
}

/** A CHECK that must fail with code 101 and a message (or details) containing every one of these. */
function expectCheckFailure(r: Run, ...named: string[]): void {
  expect(r.code, `stdout: ${r.stdout}\nstderr: ${r.stderr}`).toBe(1);
  expect(r.json.code, r.stdout).toBe(CHECK_FAILED);
  const text = `${r.json.msg ?? ""} ${r.json.details ?? ""}`;
  for (const n of named) expect(text).toContain(n);
}

const ipJson = <T>(ns: TestNetns, ...args: string[]) => ns.ipJson<T[]>(...args);

/** The host end of the pod's veth: the one veth in the node namespace. */
function hostVeth(node: TestNetns): string {
  const veths = ipJson<{ ifname: string }>(node, "link", "show", "type", "veth");
  expect(veths).toHaveLength(1);
  return veths[0]!.ifname;
}

/** Runs weft's own netfilter code (nft, iptables) in the node namespace: functions that take a context get it passed. */
async function inNode<T>(node: TestNetns, fn: (ctx: NftContext) => Promise<T>): Promise<T> {
  const ctx = { netns: Netns.open(node.path) };
  try {
    return await within(ctx, () => fn(ctx));
  } finally {
    ctx.netns.close();
  }
}

// ---------------------------------------------------------------------------------------------
// bridge (with host-local)

const NET = "cbr0";

function bridgeConf(dataDir: string, extra: Record<string, unknown> = {}) {
  return {
    cniVersion: "1.0.0",
    name: NET,
    type: "bridge",
    bridge: "cni0",
    mtu: 1450,
    isGateway: true,
    isDefaultGateway: true,
    hairpinMode: true,
    ipMasq: true,
    ipam: {
      type: "host-local",
      dataDir,
      ranges: [[{ subnet: "10.244.1.0/24" }], [{ subnet: "fd00:10:244:1::/64" }]],
      routes: [{ dst: "10.244.0.0/16" }, { dst: "fd00:10:244::/56" }],
    },
    ...extra,
  };
}

interface BridgePod extends Attachment {
  conf: ReturnType<typeof bridgeConf>;
  dataDir: string;
  result: Run["json"];
  check(): Run;
}

/** A pod added by weft's bridge, whose CHECK passes before the test tampers with it. */
function bridgePod(extra: Record<string, unknown> = {}): BridgePod {
  const node = pool.create("weft-ck-node-");
  const pod = pool.create("weft-ck-pod-");
  const dataDir = join(work, uniqueName("ipam-", 20));
  const conf = bridgeConf(dataDir, extra);
  const a = { node, pod, containerId: uniqueName("ck-", 20) };
  const result = ok(run("bridge", "ADD", conf, a));
  const check = () => run("bridge", "CHECK", { ...conf, prevResult: result }, a);
  ok(check());
  return { ...a, conf, dataDir, result, check };
}

const OTHER_MAC = "02:42:ac:11:00:99";

interface NftJsonRule {
  family: string;
  table: string;
  chain: string;
  handle: number;
  comment?: string;
  expr: unknown[];
}

describe("bridge CHECK fails, naming it, when exactly one thing differs", () => {
  const cases: Array<[string, (p: BridgePod) => void, string[] | ((p: BridgePod) => string[])]> = [
    ["the bridge is gone", (p) => p.node.exec("ip", ["link", "del", "cni0"]), ["bridge cni0 not found"]],
    [
      "the bridge is not a bridge",
      (p) => {
        p.node.exec("ip", ["link", "del", "cni0"]);
        p.node.exec("ip", ["link", "add", "cni0", "type", "veth", "peer", "name", "weftck1"]);
      },
      ["cni0 is not a bridge"],
    ],
    [
      "the bridge's MAC",
      (p) => p.node.exec("ip", ["link", "set", "cni0", "address", OTHER_MAC]),
      [`bridge cni0 MAC is ${OTHER_MAC}, prevResult says`],
    ],
    [
      "the bridge's promiscuous mode",
      (p) => p.node.exec("ip", ["link", "set", "cni0", "promisc", "on"]),
      ["bridge cni0 promiscuous mode is true, config says false"],
    ],
    ["the bridge's MTU", (p) => p.node.exec("ip", ["link", "set", "cni0", "mtu", "1400"]), ["bridge cni0 MTU is 1400, config says 1450"]],
    [
      "the gateway address on the bridge (IPv4)",
      (p) => p.node.exec("ip", ["addr", "del", "10.244.1.1/24", "dev", "cni0"]),
      ["bridge cni0 does not hold gateway address 10.244.1.1/24"],
    ],
    [
      "the gateway address on the bridge (IPv6)",
      (p) => p.node.exec("ip", ["addr", "del", "fd00:10:244:1::1/64", "dev", "cni0"]),
      ["bridge cni0 does not hold gateway address fd00:10:244:1::1/64"],
    ],
    ["the pod's interface is gone", (p) => p.pod.exec("ip", ["link", "del", "eth0"]), ["interface eth0 not found in"]],
    [
      "the pod's interface is not a veth",
      (p) => {
        p.pod.exec("ip", ["link", "del", "eth0"]);
        p.pod.exec("ip", ["link", "add", "eth0", "mtu", "1450", "type", "bridge"]);
        p.pod.exec("ip", ["link", "set", "eth0", "up"]);
      },
      ["eth0 is a bridge, not a veth"],
    ],
    [
      "the pod interface's MAC",
      (p) => p.pod.exec("ip", ["link", "set", "eth0", "address", OTHER_MAC]),
      [`eth0 MAC is ${OTHER_MAC}, prevResult says`],
    ],
    ["the pod interface's MTU", (p) => p.pod.exec("ip", ["link", "set", "eth0", "mtu", "1400"]), ["eth0 MTU is 1400, config says 1450"]],
    ["the pod interface is down", (p) => p.pod.exec("ip", ["link", "set", "eth0", "down"]), ["eth0 is down"]],
    [
      "the host veth left the bridge",
      (p) => p.node.exec("ip", ["link", "set", hostVeth(p.node), "nomaster"]),
      (p) => [`host veth ${hostVeth(p.node)} is not a port of cni0`],
    ],
    [
      "the host veth's MAC",
      (p) => p.node.exec("ip", ["link", "set", hostVeth(p.node), "address", OTHER_MAC]),
      (p) => [`host veth ${hostVeth(p.node)} MAC is ${OTHER_MAC}, prevResult says`],
    ],
    [
      "the host veth's MTU",
      (p) => p.node.exec("ip", ["link", "set", hostVeth(p.node), "mtu", "1400"]),
      (p) => [`host veth ${hostVeth(p.node)} MTU is 1400, config says 1450`],
    ],
    [
      "hairpin mode on the host veth's port",
      (p) => p.node.exec("bridge", ["link", "set", "dev", hostVeth(p.node), "hairpin", "off"]),
      (p) => [`host veth ${hostVeth(p.node)} hairpin mode is false, config says true`],
    ],
    [
      "port isolation on the host veth's port",
      (p) => p.node.exec("bridge", ["link", "set", "dev", hostVeth(p.node), "isolated", "on"]),
      (p) => [`host veth ${hostVeth(p.node)} port isolation is true, config says false`],
    ],
    [
      "the pod's veth is peered with another host veth",
      (p) => {
        p.pod.exec("ip", ["link", "del", "eth0"]);
        p.node.exec("ip", ["link", "add", "weftck0", "type", "veth", "peer", "name", "eth0", "netns", p.pod.name]);
        p.pod.exec("ip", ["link", "set", "eth0", "mtu", "1450", "up"]);
      },
      ["no host veth of cni0 peered with eth0 in prevResult"],
    ],
    ["an IPv4 address of the pod", (p) => p.pod.exec("ip", ["addr", "del", "10.244.1.2/24", "dev", "eth0"]), ["address 10.244.1.2/24 not on eth0"]],
    [
      "an IPv6 address of the pod",
      (p) => p.pod.exec("ip", ["addr", "del", "fd00:10:244:1::2/64", "dev", "eth0"]),
      ["address fd00:10:244:1::2/64 not on eth0"],
    ],
    [
      "a route of the pod (IPv4, no gw in prevResult)",
      (p) => p.pod.exec("ip", ["route", "del", "10.244.0.0/16"]),
      ["route 10.244.0.0/16 via 10.244.1.1 not found"],
    ],
    ["the pod's default route (IPv6)", (p) => p.pod.exec("ip", ["-6", "route", "del", "default"]), ["route ::/0 via fd00:10:244:1::1 not found"]],
    [
      "the route's gateway (IPv4)",
      (p) => {
        p.pod.exec("ip", ["route", "del", "10.244.0.0/16"]);
        p.pod.exec("ip", ["route", "add", "10.244.0.0/16", "via", "10.244.1.7"]);
      },
      ["route 10.244.0.0/16 via 10.244.1.1 not found"],
    ],
  ];

  it.each(cases)("%s", (_what, tamper, named) => {
    const p = bridgePod();
    tamper(p);
    expectCheckFailure(p.check(), ...(typeof named === "function" ? named(p) : named));
  });

  it("prevResult names the pod's interface in another sandbox", () => {
    const p = bridgePod();
    const interfaces = (p.result.interfaces as Array<{ sandbox?: string }>).map((i) => (i.sandbox ? { ...i, sandbox: "/run/netns/elsewhere" } : i));
    const r = run("bridge", "CHECK", { ...p.conf, prevResult: { ...p.result, interfaces } }, p);
    expectCheckFailure(r, `prevResult has no interface eth0 in sandbox ${p.pod.path}`);
  });

  it("the IPAM reservation (host-local CHECK, run by bridge CHECK)", () => {
    const p = bridgePod();
    unlinkSync(join(p.dataDir, NET, "fd00:10:244:1::2"));
    expectCheckFailure(p.check(), "host-local: container", "holds no address in range set 1 (fd00:10:244:1::1-");
    unlinkSync(join(p.dataDir, NET, "10.244.1.2"));
    expectCheckFailure(p.check(), `host-local: Failed to find address added by container ${p.containerId}`);
  });

  it("the IPAM reservation holds another address than prevResult's", () => {
    const p = bridgePod();
    renameSync(join(p.dataDir, NET, "10.244.1.2"), join(p.dataDir, NET, "10.244.1.9"));
    expectCheckFailure(p.check(), `host-local: prevResult address 10.244.1.2 is not reserved for container ${p.containerId} interface eth0`);
  });

  it.each(["iptables", "nftables"])("the masquerade rules (%s)", async (backend) => {
    const p = bridgePod({ ipMasqBackend: backend });
    expect(await inNode(p.node, (ctx) => removeMasquerade({ network: NET, containerId: p.containerId, ifName: "eth0" }, ctx))).toBeGreaterThan(0);
    expectCheckFailure(p.check(), `masquerade rules missing (${backend})`);
  });

  it.each([
    [4, "-j ACCEPT", "the pod subnet's exemption"],
    [4, "-j MASQUERADE", "the masquerade"],
    [4, "-j CNI-", "the jump from POSTROUTING"],
    [6, "-j CNI-", "the jump from POSTROUTING"],
  ] as const)("the masquerade rules (iptables, IPv%i): the rule with %s, %s", (family, mark, _what) => {
    const p = bridgePod({ ipMasqBackend: "iptables" });
    const tool = family === 4 ? "iptables" : "ip6tables";
    const lines = p.node
      .exec(`${tool}-save`, ["-t", "nat"])
      .split("\n")
      .filter((l) => l.includes(`id: \\"${p.containerId}\\"`) && l.includes(mark));
    expect(lines).toHaveLength(1);
    const [, chain, ...rule] = splitIptablesLine(lines[0]!);
    p.node.exec(tool, ["-t", "nat", "-D", chain!, ...rule]);
    expectCheckFailure(p.check(), "masquerade rules missing (iptables)", `iptables rule "${[chain, ...rule].join(" ")}"`);
  });

  /** The nftables rules of the pod's masquerade, wherever the layout keeps them. */
  const nftMasqRules = (p: BridgePod) =>
    (JSON.parse(p.node.exec("nft", ["-j", "list", "ruleset"])) as { nftables: Array<{ rule?: NftJsonRule }> }).nftables
      .map((item) => item.rule)
      .filter(
        (r): r is NftJsonRule =>
          typeof r?.comment === "string" && r.comment.startsWith(attachmentKey({ network: NET, containerId: p.containerId, ifName: "eth0" })),
      );

  it("the masquerade rules (nftables): the rule of one address", () => {
    const p = bridgePod({ ipMasqBackend: "nftables" });
    const rules = nftMasqRules(p);
    expect(rules).toHaveLength(2);
    const v6 = rules.find((r) => JSON.stringify(r.expr).includes('"protocol":"ip6"'))!;
    p.node.exec("nft", ["delete", "rule", v6.family, v6.table, v6.chain, "handle", String(v6.handle)]);
    expectCheckFailure(p.check(), "masquerade rules missing (nftables)", "expected 2 masquerade rule(s)", "found 1");
  });

  it("the masquerade rules (nftables): the goto from postrouting to the pod's rules", () => {
    const p = bridgePod({ ipMasqBackend: "nftables" });
    const { family, table, chain } = nftMasqRules(p)[0]!;
    const listed = parseNftTable(p.node.exec("nft", ["-j", "list", "table", family, table]));
    const jumps = listed.rules.filter((r) => JSON.stringify(r.expr).includes(`"target":"${chain}"`));
    expect(jumps).toHaveLength(1);
    p.node.exec("nft", ["delete", "rule", family, table, jumps[0]!.chain, "handle", String(jumps[0]!.handle)]);
    expectCheckFailure(
      p.check(),
      "masquerade rules missing (nftables)",
      `the goto ${chain} in nftables table ${family} ${table} chain ${jumps[0]!.chain}`,
    );
  });

  it("with disableContainerInterface: ADD succeeds leaving the pod's interface down, and CHECK passes", () => {
    const p = bridgePod({ ipam: undefined, isGateway: false, isDefaultGateway: false, ipMasq: false, disableContainerInterface: true });
    expect(ipJson<{ operstate: string }>(p.pod, "link", "show", "eth0")[0]!.operstate).toBe("DOWN");
    ok(p.check());
  });

  it.each([
    ["nftables", "iptables"],
    ["iptables", "nftables"],
  ])("passes with the masquerade rules complete in the other backend (added with %s, checked with %s)", (added, configured) => {
    const p = bridgePod({ ipMasqBackend: added });
    ok(run("bridge", "CHECK", { ...p.conf, ipMasqBackend: configured, prevResult: p.result }, p));
  });
});

// ---------------------------------------------------------------------------------------------
// flannel (delegating to weft's bridge and host-local)

const SUBNET_ENV =
  "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.1.1/24\nFLANNEL_IPV6_NETWORK=fd00:10:244::/56\n" +
  "FLANNEL_IPV6_SUBNET=fd00:10:244:1::1/64\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n";

interface FlannelPod extends Attachment {
  dir: string;
  check(): Run;
}

/** A pod added by weft's flannel from a dual-stack subnet.env, whose CHECK passes before the test tampers with it. */
function flannelPod(): FlannelPod {
  const node = pool.create("weft-ck-node-");
  const pod = pool.create("weft-ck-pod-");
  const dir = mkdtempSync(join(work, "flannel-"));
  writeFileSync(join(dir, "subnet.env"), SUBNET_ENV);
  const conf = {
    cniVersion: "1.0.0",
    name: NET,
    type: "flannel",
    subnetFile: join(dir, "subnet.env"),
    dataDir: join(dir, "saved"),
    delegate: { hairpinMode: true, isDefaultGateway: true },
    ipam: { dataDir: join(dir, "ipam") },
  };
  const a = { node, pod, containerId: uniqueName("ck-", 20) };
  const result = ok(run("flannel", "ADD", conf, a));
  const check = () => run("flannel", "CHECK", { ...conf, prevResult: result }, a);
  ok(check());
  return { ...a, dir, check };
}

describe("flannel CHECK fails, naming it, when exactly one thing differs", () => {
  it("the pod, as the delegate's CHECK sees it", () => {
    const p = flannelPod();
    p.pod.exec("ip", ["addr", "del", "10.244.1.2/24", "dev", "eth0"]);
    expectCheckFailure(p.check(), "failed to delegate check: bridge CHECK failed: address 10.244.1.2/24 not on eth0");
  });

  it("the MTU flanneld announces now", () => {
    const p = flannelPod();
    writeFileSync(join(p.dir, "subnet.env"), SUBNET_ENV.replace("FLANNEL_MTU=1450", "FLANNEL_MTU=1400"));
    expectCheckFailure(p.check(), `container ${p.containerId} was set up with mtu 1450, now 1400`, "recreate the pod");
  });

  it("the IPv4 lease", () => {
    const p = flannelPod();
    writeFileSync(join(p.dir, "subnet.env"), SUBNET_ENV.replace("FLANNEL_SUBNET=10.244.1.1/24", "FLANNEL_SUBNET=10.244.7.1/24"));
    expectCheckFailure(
      p.check(),
      `container ${p.containerId} was set up with ranges `,
      '"subnet":"10.244.1.0/24"',
      'now [[{"subnet":"10.244.7.0/24"}]',
      "recreate the pod",
    );
  });

  it("the IPv6 lease", () => {
    const p = flannelPod();
    writeFileSync(
      join(p.dir, "subnet.env"),
      SUBNET_ENV.replace("FLANNEL_IPV6_SUBNET=fd00:10:244:1::1/64", "FLANNEL_IPV6_SUBNET=fd00:10:244:7::1/64"),
    );
    expectCheckFailure(p.check(), `container ${p.containerId} was set up with ranges `, '[{"subnet":"fd00:10:244:7::/64"}]]', "recreate the pod");
  });

  it("passes without judging drift while subnet.env cannot be read (flanneld restarting)", () => {
    const p = flannelPod();
    unlinkSync(join(p.dir, "subnet.env"));
    ok(p.check());
  });

  it("the saved delegate config is gone (code 3) or corrupt (code 5)", () => {
    const p = flannelPod();
    const saved = join(p.dir, "saved", p.containerId);
    writeFileSync(saved, "{not json");
    expect(p.check().json).toMatchObject({ code: 5, msg: expect.stringContaining(`${saved} is not JSON`) });
    unlinkSync(saved);
    expect(p.check().json).toMatchObject({ code: 3, msg: expect.stringContaining(`no saved delegate config for container ${p.containerId}`) });
  });
});

// ---------------------------------------------------------------------------------------------
// loopback

describe("loopback CHECK fails, naming it, when exactly one thing differs", () => {
  function loopbackPod(): Attachment & { check(): Run } {
    const a = { node: pool.create("weft-ck-node-"), pod: pool.create("weft-ck-pod-"), containerId: uniqueName("ck-", 20) };
    const conf = { cniVersion: "1.0.0", name: "lo", type: "loopback" };
    ok(run("loopback", "ADD", conf, a));
    const check = () => run("loopback", "CHECK", conf, a);
    ok(check());
    return { ...a, check };
  }

  it("lo is down", () => {
    const p = loopbackPod();
    p.pod.exec("ip", ["link", "set", "lo", "down"]);
    expectCheckFailure(p.check(), "loopback interface is down");
  });

  it("lo has no 127.0.0.1/8", () => {
    const p = loopbackPod();
    p.pod.exec("ip", ["addr", "del", "127.0.0.1/8", "dev", "lo"]);
    expectCheckFailure(p.check(), "loopback interface has no 127.0.0.1/8");
  });
});

// ---------------------------------------------------------------------------------------------
// portmap (chained after weft's bridge and host-local)

interface PortmapPod extends Attachment {
  settings: PortmapSettings;
  pods: Record<4 | 6, PodAddress>;
  check(): Run;
}

const MAPPINGS = [{ hostPort: 8080, containerPort: 80, protocol: "tcp" }];

/** A dual-stack pod added by weft's bridge, with port 8080 mapped by weft's portmap; CHECK passes before the test tampers. */
function portmapPod(backend: "iptables" | "nftables"): PortmapPod {
  const node = pool.create("weft-ck-node-");
  const pod = pool.create("weft-ck-pod-");
  const a = { node, pod, containerId: uniqueName("ck-", 20) };
  const prevResult = ok(run("bridge", "ADD", bridgeConf(join(work, uniqueName("ipam-", 20)), { ipMasq: false }), a)) as Result;
  // snat and masqAll spelled out: the settings below are computed without the schema's defaults.
  const conf = { cniVersion: "1.0.0", name: NET, type: "portmap", backend, snat: true, masqAll: false, runtimeConfig: { portMappings: MAPPINGS } };
  ok(run("portmap", "ADD", { ...conf, prevResult }, a));
  const check = () => run("portmap", "CHECK", { ...conf, prevResult }, a);
  ok(check());
  const [pod4, pod6] = [4, 6].map((family) => podAddresses(prevResult, "eth0").find((x) => x.family === family)!);
  return { ...a, settings: portmapSettings(conf as PortmapConf, a.containerId, () => backend), pods: { 4: pod4!, 6: pod6! }, check };
}

function expectMissingRules(p: PortmapPod, ...named: string[]): void {
  const r = p.check();
  expectCheckFailure(r, `missing hostport rules for container ${p.containerId}`, ...named);
}

const IPTABLES = { 4: "iptables", 6: "ip6tables" } as const;

describe("portmap CHECK (iptables) fails, naming it, when exactly one rule is missing", () => {
  const podRuleKinds = [
    [4, 0, "the hairpin mark (pod subnet source)"],
    [4, 1, "the localhost mark (127.0.0.1 source)"],
    [4, 2, "the DNAT"],
    [6, 0, "the hairpin mark (pod subnet source)"],
    [6, 1, "the DNAT"],
  ] as const;

  it.each(podRuleKinds)("IPv%i: the pod chain's rule %i, %s", (family, index, _what) => {
    const p = portmapPod("iptables");
    const chain = dnatChainName(NET, p.containerId);
    const rule = iptablesPodRules(p.settings, p.pods[family])[index]!;
    p.node.exec(IPTABLES[family], ["-t", "nat", "-D", chain, ...rule]);
    expectMissingRules(p, `rule "${rule.join(" ")}" in chain ${chain}`);
  });

  it.each([4, 6] as const)("IPv%i: the pod's jump from CNI-HOSTPORT-DNAT", (family) => {
    const p = portmapPod("iptables");
    const rule = iptablesEntryRules(p.settings, family)[0]!;
    p.node.exec(IPTABLES[family], ["-t", "nat", "-D", TOP_DNAT_CHAIN, ...rule]);
    expectMissingRules(p, `rule "${rule.join(" ")}" in chain ${TOP_DNAT_CHAIN}`);
  });

  it.each([0, 1, 2, 3, 4])("the shared rule %i (mark, masquerade, POSTROUTING, PREROUTING and OUTPUT jumps)", (index) => {
    const p = portmapPod("iptables");
    const shared = iptablesSharedRules(p.settings);
    expect(shared).toHaveLength(5);
    const { chain, rule } = shared[index]!;
    p.node.exec("iptables", ["-t", "nat", "-D", chain, ...rule]);
    expectMissingRules(p, `rule "${rule.join(" ")}" in chain ${chain}`);
  });

  it("the pod's chain, with all its rules (removed by weft's DEL code)", async () => {
    const p = portmapPod("iptables");
    expect(await inNode(p.node, () => unforwardPorts(p.settings))).toBeGreaterThan(0);
    expectMissingRules(p, `chain ${dnatChainName(NET, p.containerId)} not found in iptables table nat`);
  });
});

describe("portmap CHECK (nftables) fails, naming it, when exactly one thing is missing", () => {
  /** `nft <command...> ip|ip6 cni_hostport <rest...>` in the node namespace. */
  const nft = (p: PortmapPod, family: 4 | 6, command: string[], rest: string[] = []) =>
    p.node.exec("nft", [...command, family === 4 ? "ip" : "ip6", NFT_TABLE, ...rest]);
  const where = (family: 4 | 6) => `table ${family === 4 ? "ip" : "ip6"} ${NFT_TABLE}`;

  /** Deletes the one rule of the table that select picks. */
  function deleteRule(p: PortmapPod, family: 4 | 6, select: (r: { chain: string; comment?: string; expr: unknown[] }) => boolean): void {
    const listed = parseNftTable(nft(p, family, ["-j", "list", "table"]));
    const picked = listed.rules.filter(select);
    expect(picked).toHaveLength(1);
    nft(p, family, ["delete", "rule"], [picked[0]!.chain, "handle", String(picked[0]!.handle)]);
  }

  const signatures = (p: PortmapPod, family: 4 | 6) => nftExpectedSignatures(p.settings, [p.pods[family]]);

  it.each([
    [4, 0, "the DNAT"],
    [4, 1, "the hairpin masquerade (pod subnet source)"],
    [4, 2, "the localhost masquerade (127.0.0.1 source)"],
    [6, 0, "the DNAT"],
    [6, 1, "the hairpin masquerade (pod subnet source)"],
  ] as const)("IPv%i: the pod's rule %i, %s", (family, index, _what) => {
    const p = portmapPod("nftables");
    const signature = signatures(p, family)[index]!;
    expect(signatures(p, family)).toHaveLength(family === 4 ? 3 : 2);
    deleteRule(p, family, (r) => r.comment === p.containerId && nftRuleSignature(r.expr) === signature);
    expectMissingRules(p, `rule "${signature}" in ${where(family)}`);
  });

  /** A pod whose table lacks the jump from one chain to another. */
  const withoutJump = (family: 4 | 6, from: string, to: string) => {
    const p = portmapPod("nftables");
    deleteRule(p, family, (r) => r.chain === from && JSON.stringify(r.expr).includes(`"jump":{"target":"${to}"}`));
    return p;
  };

  it.each([
    [4, "prerouting", "hostports_all"],
    [6, "output", "hostports_all"],
  ] as const)("IPv%i: the jump in %s to %s", (family, from, to) => {
    expectMissingRules(withoutJump(family, from, to), `jump to ${to} in chain ${from} of ${where(family)}`);
  });

  it.each([
    [4, "hostports_all", "hostports"],
    [6, "hostports_all", "hostip_hostports"],
  ] as const)("IPv%i: the jump in %s to %s", (family, from, to) => {
    expectMissingRules(withoutJump(family, from, to), `jump to ${to} in chain ${from} of ${where(family)}`);
  });

  it.each([
    [4, "prerouting"],
    [4, "output"],
  ] as const)("IPv%i: the base chain %s", (family, chain) => {
    const p = portmapPod("nftables");
    nft(p, family, ["delete", "chain"], [chain]);
    expectMissingRules(p, `chain ${chain} in ${where(family)}`);
  });

  it("IPv4: the chain hostports (and so the pod's DNAT in it)", () => {
    const p = portmapPod("nftables");
    nft(p, 4, ["flush", "chain"], ["hostports_all"]);
    nft(p, 4, ["delete", "chain"], ["hostports"]);
    expectMissingRules(p, `chain hostports in ${where(4)}`);
  });

  it("IPv4: the chain hostports_all (and so the jumps to it)", () => {
    const p = portmapPod("nftables");
    nft(p, 4, ["flush", "chain"], ["prerouting"]);
    nft(p, 4, ["flush", "chain"], ["output"]);
    nft(p, 4, ["delete", "chain"], ["hostports_all"]);
    expectMissingRules(p, `chain hostports_all in ${where(4)}`);
  });

  it.each([4, 6] as const)("IPv%i: the table", (family) => {
    const p = portmapPod("nftables");
    nft(p, family, ["delete", "table"]);
    expectMissingRules(p, `nftables ${where(family)} not found`);
  });

  it("every rule of the pod (removed by weft's DEL code)", async () => {
    const p = portmapPod("nftables");
    expect(await inNode(p.node, () => unforwardPorts(p.settings))).toBe(5);
    expectMissingRules(p, ...[4, 6].flatMap((family) => signatures(p, family as 4 | 6).map((s) => `rule "${s}" in ${where(family as 4 | 6)}`)));
  });
});
