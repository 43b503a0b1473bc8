import { afterEach, describe, expect, it } from "vitest";
import { parseIptablesSave, parseNftTable, versionHasRandomFully } from "../lib/netfilter/netfilter.js";
import { within } from "../lib/netfilter/nft.js";
import { Netns } from "../lib/netns/netns.js";
import { netnsPool, type TestNetns } from "../test/helpers/netns.js";
import { masqueradeRules } from "./masquerade.js";
import {
  iptablesProblems,
  iptablesTrafficRules,
  iptablesWants,
  nftablesTrafficRules,
  nftRuleText,
  nftScript,
  nftWants,
  type TrafficRules,
  type TrafficRulesSpec,
} from "./traffic-rules.js";

const pool = netnsPool();
const opened: Netns[] = [];
afterEach(() => {
  for (const netns of opened.splice(0)) netns.close();
  pool.cleanup();
});

const V4: TrafficRulesSpec = { family: 4, network: "10.244.0.0/16", podSubnet: "10.244.1.0/24", masquerade: true, forward: true };
const V6: TrafficRulesSpec = { family: 6, network: "fd00:10:244::/56", podSubnet: "fd00:10:244:1::/64", masquerade: true, forward: true };

/** A fresh namespace and the agent's rules acting in it. */
function node(backend: (ctx: { netns: Netns }) => TrafficRules): { ns: TestNetns; rules: TrafficRules } {
  const ns = pool.create("weft-tr-");
  const netns = Netns.open(ns.path);
  opened.push(netns);
  return { ns, rules: backend({ netns }) };
}

/** The chain declarations (counters dropped) and rules of one table, as iptables-save prints them. */
function saved(ns: TestNetns, family: 4 | 6, table: "nat" | "filter"): string[] {
  return ns
    .exec(family === 4 ? "iptables-save" : "ip6tables-save", ["-t", table])
    .split("\n")
    .filter((l) => l.startsWith(":") || l.startsWith("-A "))
    .map((l) => l.replace(/ \[\d+:\d+\]$/, ""));
}

const NAT_V4 = [
  ":PREROUTING ACCEPT",
  ":INPUT ACCEPT",
  ":OUTPUT ACCEPT",
  ":POSTROUTING ACCEPT",
  ":FLANNEL-POSTRTG -",
  '-A POSTROUTING -m comment --comment "flanneld masq" -j FLANNEL-POSTRTG',
  '-A FLANNEL-POSTRTG -m mark --mark 0x4000/0x4000 -m comment --comment "flanneld masq" -j RETURN',
  '-A FLANNEL-POSTRTG -s 10.244.1.0/24 -d 10.244.0.0/16 -m comment --comment "flanneld masq" -j RETURN',
  '-A FLANNEL-POSTRTG -s 10.244.0.0/16 -d 10.244.1.0/24 -m comment --comment "flanneld masq" -j RETURN',
  '-A FLANNEL-POSTRTG ! -s 10.244.0.0/16 -d 10.244.1.0/24 -m comment --comment "flanneld masq" -j RETURN',
  '-A FLANNEL-POSTRTG -s 10.244.0.0/16 ! -d 224.0.0.0/4 -m comment --comment "flanneld masq" -j MASQUERADE --random-fully',
  '-A FLANNEL-POSTRTG ! -s 10.244.0.0/16 -d 10.244.0.0/16 -m comment --comment "flanneld masq" -j MASQUERADE --random-fully',
];
const FILTER_V4 = [
  ":INPUT ACCEPT",
  ":FORWARD ACCEPT",
  ":OUTPUT ACCEPT",
  ":FLANNEL-FWD -",
  '-A FORWARD -m comment --comment "flanneld forward" -j FLANNEL-FWD',
  '-A FLANNEL-FWD -s 10.244.0.0/16 -m comment --comment "flanneld forward" -j ACCEPT',
  '-A FLANNEL-FWD -d 10.244.0.0/16 -m comment --comment "flanneld forward" -j ACCEPT',
];

describe("iptables: flanneld's FLANNEL-POSTRTG and FLANNEL-FWD", () => {
  it("apply makes exactly flanneld's rules in nat and filter, and a second apply changes nothing", async () => {
    const { ns, rules } = node(iptablesTrafficRules);
    expect(await rules.missing(V4)).toHaveLength(masqueradeRules(V4.network, V4.podSubnet, { family: 4, randomFully: true }).length + 3);
    await rules.apply(V4);
    expect(saved(ns, 4, "nat")).toEqual(NAT_V4);
    expect(saved(ns, 4, "filter")).toEqual(FILTER_V4);
    expect(await rules.missing(V4)).toEqual([]);
    await rules.apply(V4);
    expect(saved(ns, 4, "nat")).toEqual(NAT_V4);
    expect(saved(ns, 4, "filter")).toEqual(FILTER_V4);
  });

  it("a new lease replaces the pod subnet's rules, and a host address stands for its subnet", async () => {
    const { ns, rules } = node(iptablesTrafficRules);
    await rules.apply(V4);
    const moved = { ...V4, podSubnet: "10.244.7.1/24" };
    expect(await rules.missing(moved)).toEqual([
      "-t nat -A FLANNEL-POSTRTG -s 10.244.7.0/24 -d 10.244.0.0/16 -m comment --comment flanneld masq -j RETURN",
      "-t nat -A FLANNEL-POSTRTG -s 10.244.0.0/16 -d 10.244.7.0/24 -m comment --comment flanneld masq -j RETURN",
      "-t nat -A FLANNEL-POSTRTG ! -s 10.244.0.0/16 -d 10.244.7.0/24 -m comment --comment flanneld masq -j RETURN",
      "-t nat -A FLANNEL-POSTRTG -s 10.244.1.0/24 -d 10.244.0.0/16 -m comment --comment flanneld masq -j RETURN is not flanneld's",
      "-t nat -A FLANNEL-POSTRTG -s 10.244.0.0/16 -d 10.244.1.0/24 -m comment --comment flanneld masq -j RETURN is not flanneld's",
      "-t nat -A FLANNEL-POSTRTG ! -s 10.244.0.0/16 -d 10.244.1.0/24 -m comment --comment flanneld masq -j RETURN is not flanneld's",
    ]);
    await rules.apply(moved);
    expect(saved(ns, 4, "nat")).toEqual(NAT_V4.map((l) => l.replaceAll("10.244.1.0/24", "10.244.7.0/24")));
    expect(await rules.missing(moved)).toEqual([]);
  });

  it("missing names a rule and a jump deleted by hand, a foreign rule in the agent's chain and a wrong order; apply puts all back", async () => {
    const { ns, rules } = node(iptablesTrafficRules);
    await rules.apply(V4);
    ns.exec("iptables", [
      "-t",
      "nat",
      "-D",
      "FLANNEL-POSTRTG",
      "-s",
      "10.244.0.0/16",
      "-d",
      "10.244.1.0/24",
      "-m",
      "comment",
      "--comment",
      "flanneld masq",
      "-j",
      "RETURN",
    ]);
    ns.exec("iptables", ["-t", "filter", "-D", "FORWARD", "-m", "comment", "--comment", "flanneld forward", "-j", "FLANNEL-FWD"]);
    expect(await rules.missing(V4)).toEqual([
      "-t nat -A FLANNEL-POSTRTG -s 10.244.0.0/16 -d 10.244.1.0/24 -m comment --comment flanneld masq -j RETURN",
      "-t filter -A FORWARD -m comment --comment flanneld forward -j FLANNEL-FWD",
    ]);
    await rules.apply(V4);
    expect(saved(ns, 4, "nat")).toEqual(NAT_V4);
    expect(saved(ns, 4, "filter")).toEqual(FILTER_V4);

    ns.exec("iptables", ["-t", "filter", "-A", "FLANNEL-FWD", "-s", "192.0.2.0/24", "-j", "ACCEPT"]);
    expect(await rules.missing(V4)).toEqual(["-t filter -A FLANNEL-FWD -s 192.0.2.0/24 -j ACCEPT is not flanneld's"]);
    await rules.apply(V4);
    expect(saved(ns, 4, "filter")).toEqual(FILTER_V4);

    // The RETURN for the pod subnet moved to the end: every rule is there, in the wrong order.
    const moved = ["-s", "10.244.1.0/24", "-d", "10.244.0.0/16", "-m", "comment", "--comment", "flanneld masq", "-j", "RETURN"];
    ns.exec("iptables", ["-t", "nat", "-D", "FLANNEL-POSTRTG", ...moved]);
    ns.exec("iptables", ["-t", "nat", "-A", "FLANNEL-POSTRTG", ...moved]);
    expect(await rules.missing(V4)).toEqual(["-t nat chain FLANNEL-POSTRTG does not hold flanneld's rules in flanneld's order"]);
    await rules.apply(V4);
    expect(saved(ns, 4, "nat")).toEqual(NAT_V4);
  });

  it("without --ip-masq or forward rules, apply removes that chain and its jump, and missing names a chain left", async () => {
    const { ns, rules } = node(iptablesTrafficRules);
    await rules.apply(V4);
    const forwardOnly = { ...V4, masquerade: false };
    expect(await rules.missing(forwardOnly)).toEqual(["-t nat chain FLANNEL-POSTRTG exists but is not wanted"]);
    await rules.apply(forwardOnly);
    expect(saved(ns, 4, "nat")).toEqual(NAT_V4.slice(0, 4));
    expect(saved(ns, 4, "filter")).toEqual(FILTER_V4);
    await rules.apply({ ...V4, masquerade: false, forward: false });
    expect(saved(ns, 4, "filter")).toEqual(FILTER_V4.slice(0, 3));
    expect(await rules.missing({ ...V4, masquerade: false, forward: false })).toEqual([]);
  });

  it("cleanup removes the chains and jumps, leaves foreign rules in POSTROUTING and FORWARD, and then finds nothing", async () => {
    const { ns, rules } = node(iptablesTrafficRules);
    ns.exec("iptables", ["-t", "nat", "-A", "POSTROUTING", "-s", "192.168.0.0/16", "-j", "MASQUERADE"]);
    await rules.apply(V4);
    ns.exec("iptables", ["-t", "filter", "-A", "FORWARD", "-i", "eth9", "-j", "DROP"]);
    // nat: the jump, six rules, the chain; filter: the jump, two rules, the chain.
    expect(await rules.cleanup(4)).toBe(8 + 4);
    expect(saved(ns, 4, "nat")).toEqual([...NAT_V4.slice(0, 4), "-A POSTROUTING -s 192.168.0.0/16 -j MASQUERADE"]);
    expect(saved(ns, 4, "filter")).toEqual([...FILTER_V4.slice(0, 3), "-A FORWARD -i eth9 -j DROP"]);
    expect(await rules.cleanup(4)).toBe(0);
  });

  it("cleanup in a namespace without any rules returns 0 and creates nothing", async () => {
    const { ns, rules } = node(iptablesTrafficRules);
    expect(await rules.cleanup(4)).toBe(0);
    expect(await rules.cleanup(6)).toBe(0);
    expect(ns.exec("nft", ["list", "ruleset"]).trim()).toBe("");
  });

  it("IPv6: ip6tables gets flanneld's rules with ff00::/8, and cleanup(6) leaves IPv4's alone", async () => {
    const { ns, rules } = node(iptablesTrafficRules);
    await rules.apply(V4);
    await rules.apply(V6);
    expect(saved(ns, 6, "nat")).toEqual([
      ":PREROUTING ACCEPT",
      ":INPUT ACCEPT",
      ":OUTPUT ACCEPT",
      ":POSTROUTING ACCEPT",
      ":FLANNEL-POSTRTG -",
      '-A POSTROUTING -m comment --comment "flanneld masq" -j FLANNEL-POSTRTG',
      '-A FLANNEL-POSTRTG -m mark --mark 0x4000/0x4000 -m comment --comment "flanneld masq" -j RETURN',
      '-A FLANNEL-POSTRTG -s fd00:10:244:1::/64 -d fd00:10:244::/56 -m comment --comment "flanneld masq" -j RETURN',
      '-A FLANNEL-POSTRTG -s fd00:10:244::/56 -d fd00:10:244:1::/64 -m comment --comment "flanneld masq" -j RETURN',
      '-A FLANNEL-POSTRTG ! -s fd00:10:244::/56 -d fd00:10:244:1::/64 -m comment --comment "flanneld masq" -j RETURN',
      '-A FLANNEL-POSTRTG -s fd00:10:244::/56 ! -d ff00::/8 -m comment --comment "flanneld masq" -j MASQUERADE --random-fully',
      '-A FLANNEL-POSTRTG ! -s fd00:10:244::/56 -d fd00:10:244::/56 -m comment --comment "flanneld masq" -j MASQUERADE --random-fully',
    ]);
    expect(saved(ns, 6, "filter")).toEqual(FILTER_V4.map((l) => l.replace("10.244.0.0/16", "fd00:10:244::/56")));
    expect(await rules.missing(V6)).toEqual([]);
    expect(await rules.cleanup(6)).toBe(12);
    expect(saved(ns, 6, "nat")).toEqual(NAT_V4.slice(0, 4));
    expect(saved(ns, 4, "nat")).toEqual(NAT_V4);
    expect(await rules.missing(V4)).toEqual([]);
  });
});

/** `nft list table` of flanneld's table, tabs as two spaces. */
function listed(ns: TestNetns, family: 4 | 6): string {
  return ns
    .exec("nft", ["list", "table", family === 4 ? "ip" : "ip6", family === 4 ? "flannel-ipv4" : "flannel-ipv6"])
    .replaceAll("\t", "  ")
    .trimEnd();
}

const NFT_V4 = `table ip flannel-ipv4 {
  comment "rules for flannel-ipv4"
  chain postrtg {
    comment "chain to manage traffic masquerading by flannel"
    type nat hook postrouting priority srcnat; policy accept;
    meta mark 0x00004000 return
    ip saddr 10.244.1.0/24 ip daddr 10.244.0.0/16 return
    ip saddr 10.244.0.0/16 ip daddr 10.244.1.0/24 return
    ip saddr != 10.244.1.0/24 ip daddr 10.244.0.0/16 return
    ip saddr 10.244.0.0/16 ip daddr != 224.0.0.0/4 masquerade fully-random
    ip saddr != 10.244.0.0/16 ip daddr 10.244.0.0/16 masquerade fully-random
  }

  chain forward {
    comment "chain to accept flannel traffic"
    type filter hook forward priority filter; policy accept;
    ip saddr 10.244.0.0/16 accept
    ip daddr 10.244.0.0/16 accept
  }
}`;

/** The handle of the rule in flanneld's table whose text (as nftRuleText renders it) is `text`. */
function handleOf(ns: TestNetns, family: 4 | 6, text: string): number {
  const table = parseNftTable(ns.exec("nft", ["-j", "list", "table", family === 4 ? "ip" : "ip6", family === 4 ? "flannel-ipv4" : "flannel-ipv6"]));
  const rule = table.rules.find((r) => nftRuleText(r.expr) === text);
  if (!rule) throw new Error(`no rule ${text}`);
  return rule.handle;
}

describe("nftables: flanneld's tables flannel-ipv4 and flannel-ipv6", () => {
  it("apply makes exactly flanneld's table, and a second apply leaves the same", async () => {
    const { ns, rules } = node(nftablesTrafficRules);
    expect(await rules.missing(V4)).toEqual(["nftables table ip flannel-ipv4 is missing"]);
    await rules.apply(V4);
    expect(listed(ns, 4)).toBe(NFT_V4);
    expect(await rules.missing(V4)).toEqual([]);
    await rules.apply(V4);
    expect(listed(ns, 4)).toBe(NFT_V4);
    expect(ns.exec("nft", ["list", "tables"]).trim()).toBe("table ip flannel-ipv4");
  });

  it("a new lease replaces the pod subnet's rules in one transaction", async () => {
    const { ns, rules } = node(nftablesTrafficRules);
    await rules.apply(V4);
    const moved = { ...V4, podSubnet: "10.244.7.0/24" };
    expect(await rules.missing(moved)).toEqual([
      "rule ip flannel-ipv4 postrtg ip saddr 10.244.7.0/24 ip daddr 10.244.0.0/16 return is missing",
      "rule ip flannel-ipv4 postrtg ip saddr 10.244.0.0/16 ip daddr 10.244.7.0/24 return is missing",
      "rule ip flannel-ipv4 postrtg ip saddr != 10.244.7.0/24 ip daddr 10.244.0.0/16 return is missing",
      "rule ip flannel-ipv4 postrtg ip saddr 10.244.1.0/24 ip daddr 10.244.0.0/16 return is not flanneld's",
      "rule ip flannel-ipv4 postrtg ip saddr 10.244.0.0/16 ip daddr 10.244.1.0/24 return is not flanneld's",
      "rule ip flannel-ipv4 postrtg ip saddr != 10.244.1.0/24 ip daddr 10.244.0.0/16 return is not flanneld's",
    ]);
    await rules.apply(moved);
    expect(listed(ns, 4)).toBe(NFT_V4.replaceAll("10.244.1.0/24", "10.244.7.0/24"));
    expect(await rules.missing(moved)).toEqual([]);
  });

  it("missing names a rule or a chain deleted by hand, a foreign rule and a chain's wrong hook; apply puts all back", async () => {
    const { ns, rules } = node(nftablesTrafficRules);
    await rules.apply(V4);
    const doomed = "ip saddr 10.244.0.0/16 ip daddr != 224.0.0.0/4 masquerade fully-random";
    ns.exec("nft", ["delete", "rule", "ip", "flannel-ipv4", "postrtg", "handle", String(handleOf(ns, 4, doomed))]);
    ns.exec("nft", ["delete", "chain", "ip", "flannel-ipv4", "forward"]);
    expect(await rules.missing(V4)).toEqual([`rule ip flannel-ipv4 postrtg ${doomed} is missing`, "chain ip flannel-ipv4 forward is missing"]);
    await rules.apply(V4);
    expect(listed(ns, 4)).toBe(NFT_V4);

    ns.exec("nft", ["add", "rule", "ip", "flannel-ipv4", "forward", "ip", "saddr", "192.0.2.1", "accept"]);
    ns.exec("nft", ["add", "chain", "ip", "flannel-ipv4", "extra"]);
    expect(await rules.missing(V4)).toEqual([
      "rule ip flannel-ipv4 forward ip saddr 192.0.2.1/32 accept is not flanneld's",
      "chain ip flannel-ipv4 extra exists but is not wanted",
    ]);
    await rules.apply(V4);
    expect(listed(ns, 4)).toBe(NFT_V4);

    // The first forward rule moved to the end: both are there, in the wrong order.
    ns.exec("nft", ["delete", "rule", "ip", "flannel-ipv4", "forward", "handle", String(handleOf(ns, 4, "ip saddr 10.244.0.0/16 accept"))]);
    ns.exec("nft", ["add", "rule", "ip", "flannel-ipv4", "forward", "ip", "saddr", "10.244.0.0/16", "accept"]);
    expect(await rules.missing(V4)).toEqual(["chain ip flannel-ipv4 forward does not hold flanneld's rules in flanneld's order"]);
    await rules.apply(V4);
    expect(listed(ns, 4)).toBe(NFT_V4);

    ns.exec("nft", ["delete", "chain", "ip", "flannel-ipv4", "forward"]);
    ns.exec("nft", ["add", "chain", "ip", "flannel-ipv4", "forward", "{ type filter hook forward priority 10 ; }"]);
    ns.exec("nft", ["add", "rule", "ip", "flannel-ipv4", "forward", "ip", "saddr", "10.244.0.0/16", "accept"]);
    ns.exec("nft", ["add", "rule", "ip", "flannel-ipv4", "forward", "ip", "daddr", "10.244.0.0/16", "accept"]);
    expect(await rules.missing(V4)).toEqual(["chain ip flannel-ipv4 forward is not type filter hook forward priority filter (0)"]);

    ns.exec("nft", ["delete", "table", "ip", "flannel-ipv4"]);
    expect(await rules.missing(V4)).toEqual(["nftables table ip flannel-ipv4 is missing"]);
    await rules.apply(V4);
    expect(listed(ns, 4)).toBe(NFT_V4);
  });

  it("without --ip-masq the table holds only the forward chain, and with neither it is empty", async () => {
    const { ns, rules } = node(nftablesTrafficRules);
    await rules.apply(V4);
    const forwardOnly = { ...V4, masquerade: false };
    expect(await rules.missing(forwardOnly)).toEqual(["chain ip flannel-ipv4 postrtg exists but is not wanted"]);
    await rules.apply(forwardOnly);
    expect(listed(ns, 4)).toBe(`table ip flannel-ipv4 {\n  comment "rules for flannel-ipv4"\n${NFT_V4.slice(NFT_V4.indexOf("  chain forward"))}`);
    await rules.apply({ ...forwardOnly, forward: false });
    expect(listed(ns, 4)).toBe(`table ip flannel-ipv4 {\n  comment "rules for flannel-ipv4"\n}`);
  });

  it("cleanup deletes flanneld's table, leaves a foreign table with a postrouting chain, then finds nothing", async () => {
    const { ns, rules } = node(nftablesTrafficRules);
    ns.exec("nft", [
      "add table ip foreign ; add chain ip foreign post { type nat hook postrouting priority srcnat ; } ; add rule ip foreign post masquerade",
    ]);
    await rules.apply(V4);
    // Eight rules, two chains, the table.
    expect(await rules.cleanup(4)).toBe(11);
    expect(ns.exec("nft", ["list", "tables"]).trim()).toBe("table ip foreign");
    expect(ns.exec("nft", ["list", "chain", "ip", "foreign", "post"])).toContain("masquerade");
    expect(await rules.cleanup(4)).toBe(0);
    expect(await rules.cleanup(6)).toBe(0);
  });

  it("IPv6: the table ip6 flannel-ipv6, with ff00::/8; cleanup(6) leaves IPv4's table", async () => {
    const { ns, rules } = node(nftablesTrafficRules);
    await rules.apply(V4);
    await rules.apply(V6);
    expect(listed(ns, 6)).toBe(
      NFT_V4.replaceAll("ip flannel-ipv4", "ip6 flannel-ipv6")
        .replaceAll("flannel-ipv4", "flannel-ipv6")
        .replaceAll("ip saddr", "ip6 saddr")
        .replaceAll("ip daddr", "ip6 daddr")
        .replaceAll("10.244.1.0/24", "fd00:10:244:1::/64")
        .replaceAll("10.244.0.0/16", "fd00:10:244::/56")
        .replaceAll("224.0.0.0/4", "ff00::/8"),
    );
    expect(await rules.missing(V6)).toEqual([]);
    expect(await rules.cleanup(6)).toBe(11);
    expect(ns.exec("nft", ["list", "tables"]).trim()).toBe("table ip flannel-ipv4");
  });
});

describe("as the daemon calls them", () => {
  it("without a context, both act where the caller runs the tools", async () => {
    const ns = pool.create("weft-tr-");
    const netns = Netns.open(ns.path);
    opened.push(netns);
    await within({ netns }, async () => {
      await iptablesTrafficRules().apply(V4);
      await nftablesTrafficRules().apply(V6);
      expect(await iptablesTrafficRules().missing(V4)).toEqual([]);
      expect(await nftablesTrafficRules().missing(V6)).toEqual([]);
    });
    expect(saved(ns, 4, "nat")).toEqual(NAT_V4);
    expect(ns.exec("nft", ["list", "tables"])).toContain("table ip6 flannel-ipv6");
    await within({ netns }, async () => {
      expect(await iptablesTrafficRules().cleanup(4)).toBe(12);
      expect(await nftablesTrafficRules().cleanup(6)).toBe(11);
    });
  });
});

describe("the pure parts", () => {
  it("a spec's prefixes must be of its family", () => {
    expect(() => iptablesWants({ ...V4, podSubnet: "fd00::/64" }, true)).toThrow('pod subnet "fd00::/64" is not an IPv4 CIDR');
    expect(() => nftWants({ ...V6, network: "10.244.0.0/16" }, true)).toThrow('network "10.244.0.0/16" is not an IPv6 CIDR');
  });

  it("without fully-random and comments, the nft script says plain masquerade and no comment", () => {
    const script = nftScript(4, nftWants(V4, false), false);
    expect(script).toContain("add rule ip flannel-ipv4 postrtg ip saddr != 10.244.0.0/16 ip daddr 10.244.0.0/16 masquerade\n");
    expect(script).not.toContain("fully-random");
    expect(script).not.toContain("comment");
    expect(script.split("\n").slice(0, 3)).toEqual(["add table ip flannel-ipv4", "delete table ip flannel-ipv4", "add table ip flannel-ipv4 { }"]);
  });

  it("nftRuleText reads the forms nft lists: flags as a list, unknown statements as JSON", () => {
    expect(nftRuleText([{ masquerade: { flags: ["fully-random", "persistent"] } }])).toBe("masquerade fully-random persistent");
    expect(nftRuleText([{ match: { op: "==", left: { payload: { protocol: "ip6", field: "daddr" } }, right: "fd00::1" } }, { accept: null }])).toBe(
      "ip6 daddr fd00::1/128 accept",
    );
    expect(nftRuleText([{ counter: { packets: 0, bytes: 0 } }])).toBe('{"counter":{"packets":0,"bytes":0}}');
  });

  it("iptables problems: a chain that should not exist, and one that holds a rule twice", () => {
    const [nat] = iptablesWants({ ...V4, masquerade: false }, true);
    const table = parseIptablesSave("*nat\n:FLANNEL-POSTRTG - [0:0]\nCOMMIT\n*filter\n:FLANNEL-FWD - [0:0]\nCOMMIT\n", "nat");
    expect(iptablesProblems(nat!, table)).toEqual(["-t nat chain FLANNEL-POSTRTG exists but is not wanted"]);
    const [, filter] = iptablesWants(V4, true);
    const twice = ["-s", "10.244.0.0/16", "-m", "comment", "--comment", "flanneld forward", "-j", "ACCEPT"];
    const held = {
      chains: new Set(["FLANNEL-FWD"]),
      rules: new Map([
        ["FORWARD", [filter!.rules[0]!.rule]],
        ["FLANNEL-FWD", [twice, filter!.rules[2]!.rule, twice]],
      ]),
    };
    expect(iptablesProblems(filter!, held)).toEqual(["-t filter chain FLANNEL-FWD does not hold flanneld's rules in flanneld's order"]);
  });

  it("parseIptablesSave reads only the named table", () => {
    const text = "*nat\n:A - [0:0]\n-A A -j RETURN\nCOMMIT\n*filter\n:B - [0:0]\n-A B -j ACCEPT\nCOMMIT\n";
    expect(parseIptablesSave(text, "filter")).toEqual({ chains: new Set(["B"]), rules: new Map([["B", [["-j", "ACCEPT"]]]]) });
  });

  it("--random-fully from iptables 1.6.2 on, as go-iptables decides", () => {
    expect(versionHasRandomFully("iptables v1.8.9 (nf_tables)")).toBe(true);
    expect(versionHasRandomFully("iptables v1.6.2")).toBe(true);
    expect(versionHasRandomFully("iptables v1.6.1")).toBe(false);
    expect(versionHasRandomFully("iptables v1.4.21")).toBe(false);
    expect(versionHasRandomFully("iptables v2.0.0")).toBe(true);
    expect(versionHasRandomFully("iptables")).toBe(false);
  });
});
