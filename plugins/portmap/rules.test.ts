import { describe, expect, it } from "vitest";
import { iptablesRemoveLines, parseNatTable, parseNftTable } from "../kernel/netfilter.js";
import { interfaceFor, parseProcRoutes } from "../kernel/netfilter-localnet.js";
import { podAddresses, portmapSettings, type PortmapConf } from "./config.js";
import {
  dnatChainName,
  iptablesAddLines,
  iptablesEntryRules,
  iptablesMissing,
  iptablesPodRules,
  iptablesStaleChains,
  legacyNftTableName,
  nftAddScript,
  nftExpectedSignatures,
  nftRuleSignature,
  ruleTag,
} from "./rules.js";

const V4 = { family: 4, ip: "10.99.1.2", subnet: "10.99.1.0/24" } as const;
const V6 = { family: 6, ip: "fd99::2", subnet: "fd99::/64" } as const;

function conf(extra: Partial<PortmapConf> = {}): PortmapConf {
  return {
    name: "testnet",
    snat: true,
    masqAll: false,
    runtimeConfig: {
      portMappings: [
        { hostPort: 8080, containerPort: 80, protocol: "tcp" },
        { hostPort: 8053, containerPort: 53, protocol: "udp" },
        { hostPort: 9090, containerPort: 90, protocol: "tcp", hostIP: "192.168.5.5" },
      ],
    },
    ...extra,
  };
}

const settings = (extra: Partial<PortmapConf> = {}, automatic: "iptables" | "nftables" = "nftables") => portmapSettings(conf(extra), "c1", () => automatic);

describe("backend choice", () => {
  it("takes the automatic choice when neither backend nor a backend-specific key is set", () => {
    expect(settings({}, "nftables").backend).toBe("nftables");
    expect(settings({}, "iptables").backend).toBe("iptables");
    expect(settings({ backend: "nftables" }, "iptables").backend).toBe("nftables");
  });
  it("follows the reference's backend-specific keys when backend is not set", () => {
    expect(settings({ conditionsV4: ["-d", "10.0.0.0/8"] }).backend).toBe("iptables");
    expect(settings({ externalSetMarkChain: "KUBE-MARK-MASQ" }).backend).toBe("iptables");
    expect(settings({ markMasqBit: 14 }).backend).toBe("iptables");
    expect(settings({ conditionsV6: ["ip6 saddr", "fd00::/8"] }, "iptables").backend).toBe("nftables");
  });
  it("refuses options of the other backend, and externalSetMarkChain with markMasqBit", () => {
    expect(() => settings({ backend: "nftables", conditionsV4: ["-d", "1.2.3.4"] })).toThrow(/nftables backend was requested but configuration contains iptables-specific options \[conditionsV4\]/);
    expect(() => settings({ backend: "iptables", conditionsV4: ["ip daddr 1.2.3.4"] })).toThrow(/iptables backend was requested/);
    expect(() => settings({ markMasqBit: 3, externalSetMarkChain: "X" })).toThrow(/Cannot specify externalSetMarkChain and markMasqBit/);
  });
  it("refuses condition tokens that would break out of the rule", () => {
    for (const bad of ["ip daddr 1.2.3.4; flush ruleset", "tcp dport 1 # x", "ip daddr 1.2.3.4\nflush ruleset", 'iifname "eth0']) {
      expect(() => settings({ conditionsV4: [bad] })).toThrow(/invalid conditionsV4 token/);
    }
    expect(() => settings({ conditionsV4: ["-d", "1.2.3.4\n-A POSTROUTING -j ACCEPT"] })).toThrow(/line breaks/);
    expect(settings({ conditionsV4: ['iifname "eth0"', "ip daddr { 10.0.0.1, 10.0.0.2 }"] }).conditions[4]).toHaveLength(2);
  });
  it("normalizes protocols and host IPs", () => {
    const s = portmapSettings(conf({ runtimeConfig: { portMappings: [{ hostPort: 1, containerPort: 2, protocol: "SCTP", hostIP: "fd00:0::5" }, { hostPort: 3, containerPort: 4, protocol: "tcp", hostIP: "0.0.0.0" }] } }), "c", () => "nftables");
    expect(s.mappings).toEqual([
      { hostPort: 1, containerPort: 2, protocol: "sctp", hostIP: { ip: "fd00::5", family: 6, unspecified: false } },
      { hostPort: 3, containerPort: 4, protocol: "tcp", hostIP: { ip: "0.0.0.0", family: 4, unspecified: true } },
    ]);
    expect(() => portmapSettings(conf({ runtimeConfig: { portMappings: [{ hostPort: 1, containerPort: 2, protocol: "tcp", hostIP: "1.2.3" }] } }), "c", () => "nftables")).toThrow(/hostIP "1.2.3"/);
  });
});

describe("pod addresses from prevResult", () => {
  it("takes the first address per family on the sandbox interface named CNI_IFNAME", () => {
    const prev = {
      interfaces: [{ name: "cni0" }, { name: "veth1" }, { name: "eth0", sandbox: "/run/netns/p" }, { name: "net1", sandbox: "/run/netns/p" }],
      ips: [
        { interface: 0, address: "10.0.0.1/24" },
        { interface: 3, address: "10.1.0.5/24" },
        { interface: 2, address: "10.99.1.2/24" },
        { interface: 2, address: "10.99.1.3/24" },
        { address: "fd99::2/64" },
      ],
    };
    expect(podAddresses(prev, "eth0")).toEqual([V4, V6]);
    expect(podAddresses(prev, "net1")).toEqual([{ family: 4, ip: "10.1.0.5", subnet: "10.1.0.0/24" }, V6]);
  });
});

describe("nftables rules", () => {
  it("lays both families of one ADD out as the Go plugin does, in one transaction", () => {
    const script = nftAddScript(settings(), [V4, V6]);
    const head = (ipx: string) => [
      `add table ${ipx} cni_hostport { comment "CNI portmap plugin" ; }`,
      `add chain ${ipx} cni_hostport hostports`,
      `add chain ${ipx} cni_hostport hostip_hostports`,
      `add chain ${ipx} cni_hostport hostports_all`,
      `flush chain ${ipx} cni_hostport hostports_all`,
      `add rule ${ipx} cni_hostport hostports_all jump hostip_hostports`,
      `add rule ${ipx} cni_hostport hostports_all jump hostports`,
      `add chain ${ipx} cni_hostport prerouting { type nat hook prerouting priority dstnat ; }`,
      `flush chain ${ipx} cni_hostport prerouting`,
      `add rule ${ipx} cni_hostport prerouting fib daddr type local jump hostports_all`,
      `add chain ${ipx} cni_hostport output { type nat hook output priority -100 ; }`,
      `flush chain ${ipx} cni_hostport output`,
      `add rule ${ipx} cni_hostport output fib daddr type local jump hostports_all`,
      `add chain ${ipx} cni_hostport masquerading { type nat hook postrouting priority srcnat ; }`,
    ];
    expect(script.split("\n").filter(Boolean)).toEqual([
      ...head("ip"),
      `insert rule ip cni_hostport hostports tcp dport 8080 dnat to 10.99.1.2:80 comment "c1"`,
      `insert rule ip cni_hostport masquerading ip saddr 10.99.1.0/24 ip daddr 10.99.1.2 tcp dport 80 ct original proto-dst 8080 ct status dnat masquerade comment "c1"`,
      `insert rule ip cni_hostport masquerading ip saddr 127.0.0.1 ip daddr 10.99.1.2 tcp dport 80 ct original proto-dst 8080 ct status dnat masquerade comment "c1"`,
      `insert rule ip cni_hostport hostports udp dport 8053 dnat to 10.99.1.2:53 comment "c1"`,
      `insert rule ip cni_hostport masquerading ip saddr 10.99.1.0/24 ip daddr 10.99.1.2 udp dport 53 ct original proto-dst 8053 ct status dnat masquerade comment "c1"`,
      `insert rule ip cni_hostport masquerading ip saddr 127.0.0.1 ip daddr 10.99.1.2 udp dport 53 ct original proto-dst 8053 ct status dnat masquerade comment "c1"`,
      `insert rule ip cni_hostport hostports ip daddr 192.168.5.5 tcp dport 9090 dnat to 10.99.1.2:90 comment "c1"`,
      `insert rule ip cni_hostport masquerading ip saddr 10.99.1.0/24 ip daddr 10.99.1.2 tcp dport 90 ct original proto-dst 9090 ct status dnat masquerade comment "c1"`,
      `insert rule ip cni_hostport masquerading ip saddr 127.0.0.1 ip daddr 10.99.1.2 tcp dport 90 ct original proto-dst 9090 ct status dnat masquerade comment "c1"`,
      ...head("ip6"),
      `insert rule ip6 cni_hostport hostports tcp dport 8080 dnat to [fd99::2]:80 comment "c1"`,
      `insert rule ip6 cni_hostport masquerading ip6 saddr fd99::/64 ip6 daddr fd99::2 tcp dport 80 ct original proto-dst 8080 ct status dnat masquerade comment "c1"`,
      `insert rule ip6 cni_hostport hostports udp dport 8053 dnat to [fd99::2]:53 comment "c1"`,
      `insert rule ip6 cni_hostport masquerading ip6 saddr fd99::/64 ip6 daddr fd99::2 udp dport 53 ct original proto-dst 8053 ct status dnat masquerade comment "c1"`,
    ]);
    expect(legacyNftTableName("testnet")).toMatch(/^weft_portmap_[0-9a-f]{16}$/);
  });
  it("applies conditions per family, masqAll drops the source match, snat false drops masquerade", () => {
    const s = settings({ conditionsV4: ["ip daddr 10.0.0.0/8"], masqAll: true });
    const script = nftAddScript(s, [V4]);
    expect(script).toContain("add rule ip cni_hostport prerouting ip daddr 10.0.0.0/8 fib daddr type local jump hostports_all");
    expect(script).toContain("masquerading ip daddr 10.99.1.2 tcp dport 80 ct original proto-dst 8080");
    expect(script).not.toContain("ip6 cni_hostport");
    expect(nftAddScript(settings({ snat: false }), [V4])).not.toContain("masquerad");
  });
  it("tags long container IDs with a hash that fits an nft comment", () => {
    expect(ruleTag("c1")).toBe("c1");
    expect(ruleTag("x".repeat(200))).toMatch(/^sha256:[0-9a-f]{64}$/);
  });
  it("reads signatures back from nft's JSON, matching what CHECK expects", () => {
    const json = JSON.stringify({
      nftables: [
        { chain: { name: "hostports" } },
        { rule: { chain: "hostports", handle: 7, comment: "c1", expr: [{ match: { op: "==", left: { meta: { key: "nfproto" } }, right: "ipv4" } }, { match: { op: "==", left: { payload: { protocol: "tcp", field: "dport" } }, right: 8080 } }, { dnat: { family: "ip", addr: "10.99.1.2", port: 80 } }] } },
        ...[{ prefix: { addr: "10.99.1.0", len: 24 } }, "127.0.0.1"].map((source, i) => ({
          rule: {
            chain: "masquerading",
            handle: 8 + i,
            comment: "c1",
            expr: [
              { match: { op: "==", left: { payload: { protocol: "ip", field: "saddr" } }, right: source } },
              { match: { op: "==", left: { payload: { protocol: "ip", field: "daddr" } }, right: "10.99.1.2" } },
              { match: { op: "==", left: { payload: { protocol: "tcp", field: "dport" } }, right: 80 } },
              { match: { op: "==", left: { ct: { key: "proto-dst", dir: "original" } }, right: 8080 } },
              { masquerade: null },
            ],
          },
        })),
      ],
    });
    const listed = parseNftTable(json);
    expect([...listed.chains]).toEqual(["hostports"]);
    const found = listed.rules.map((r) => nftRuleSignature(r.expr));
    const s = settings({ runtimeConfig: { portMappings: [{ hostPort: 8080, containerPort: 80, protocol: "tcp" }] } });
    expect(found).toEqual(nftExpectedSignatures(s, [V4]));
  });
});

describe("iptables rules (the reference's layout)", () => {
  const s = () => settings({ conditionsV4: ["-d", "10.0.0.0/8"] });

  it("names the pod chain as the reference does", () => {
    // Observed: Debian's portmap 1.1.1 made CNI-DN-328e3d85e6c0f709cddd7 for network testnet, container c1.
    expect(dnatChainName("testnet", "c1")).toBe("CNI-DN-328e3d85e6c0f709cddd7");
  });
  it("writes the pod chain in iptables-save's spelling", () => {
    expect(iptablesPodRules(s(), V4).map((r) => r.join(" "))).toEqual([
      "-s 10.99.1.0/24 -p tcp -m tcp --dport 8080 -j CNI-HOSTPORT-SETMARK",
      "-s 127.0.0.1/32 -p tcp -m tcp --dport 8080 -j CNI-HOSTPORT-SETMARK",
      "-p tcp -m tcp --dport 8080 -j DNAT --to-destination 10.99.1.2:80",
      "-s 10.99.1.0/24 -p udp -m udp --dport 8053 -j CNI-HOSTPORT-SETMARK",
      "-s 127.0.0.1/32 -p udp -m udp --dport 8053 -j CNI-HOSTPORT-SETMARK",
      "-p udp -m udp --dport 8053 -j DNAT --to-destination 10.99.1.2:53",
      "-s 10.99.1.0/24 -d 192.168.5.5/32 -p tcp -m tcp --dport 9090 -j CNI-HOSTPORT-SETMARK",
      "-s 127.0.0.1/32 -d 192.168.5.5/32 -p tcp -m tcp --dport 9090 -j CNI-HOSTPORT-SETMARK",
      "-d 192.168.5.5/32 -p tcp -m tcp --dport 9090 -j DNAT --to-destination 10.99.1.2:90",
    ]);
    expect(iptablesPodRules(settings({ masqAll: true, externalSetMarkChain: "KUBE-MARK-MASQ" }), V6).map((r) => r.join(" "))).toEqual([
      "-p tcp -m tcp --dport 8080 -j KUBE-MARK-MASQ",
      "-p tcp -m tcp --dport 8080 -j DNAT --to-destination [fd99::2]:80",
      "-p udp -m udp --dport 8053 -j KUBE-MARK-MASQ",
      "-p udp -m udp --dport 8053 -j DNAT --to-destination [fd99::2]:53",
    ]);
  });
  it("splits entry rules by protocol and into at most 15 ports", () => {
    const many = Array.from({ length: 17 }, (_, i) => ({ hostPort: 1000 + i, containerPort: 80, protocol: "tcp" as const }));
    const entries = iptablesEntryRules(settings({ runtimeConfig: { portMappings: many } }), 4);
    expect(entries.map((e) => e[9])).toEqual([many.slice(0, 15).map((m) => m.hostPort).join(","), "1015,1016"]);
    expect(iptablesEntryRules(s(), 4)[0]).toEqual(["-p", "tcp", "-m", "comment", "--comment", 'dnat name: "testnet" id: "c1"', "-m", "multiport", "--dports", "8080,9090", "-d", "10.0.0.0/8", "-j", "CNI-DN-328e3d85e6c0f709cddd7"]);
  });

  const SAVED = [
    "*nat",
    ":PREROUTING ACCEPT [0:0]",
    ":POSTROUTING ACCEPT [0:0]",
    ":CNI-DN-328e3d85e6c0f709cddd7 - [0:0]",
    ":CNI-DN-other - [0:0]",
    ":CNI-HOSTPORT-DNAT - [0:0]",
    ":CNI-HOSTPORT-MASQ - [0:0]",
    ":CNI-HOSTPORT-SETMARK - [0:0]",
    "-A PREROUTING -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT",
    '-A POSTROUTING -m comment --comment "CNI portfwd requiring masquerade" -j CNI-HOSTPORT-MASQ',
    "-A CNI-DN-328e3d85e6c0f709cddd7 -p tcp -m tcp --dport 8080 -j DNAT --to-destination 10.99.1.2:80",
    '-A CNI-HOSTPORT-DNAT -d 10.0.0.0/8 -p tcp -m comment --comment "dnat name: \\"testnet\\" id: \\"c1\\"" -m multiport --dports 8080,9090 -j CNI-DN-328e3d85e6c0f709cddd7',
    '-A CNI-HOSTPORT-DNAT -p tcp -m comment --comment "dnat name: \\"testnet\\" id: \\"c9\\"" -m multiport --dports 7070 -j CNI-DN-other',
    '-A CNI-HOSTPORT-DNAT -p tcp -m comment --comment "dnat name: \\"othernet\\" id: \\"c8\\"" -m multiport --dports 6060 -j CNI-DN-x',
    "-A CNI-HOSTPORT-MASQ -m mark --mark 0x2000/0x2000 -j MASQUERADE",
    "COMMIT",
  ].join("\n");

  it("adds only what is missing, and never declares a shared chain", () => {
    const lines = iptablesAddLines(s(), V4, parseNatTable(SAVED)).map((l) => l.join(" "));
    expect(lines[0]).toBe(":CNI-DN-328e3d85e6c0f709cddd7 - [0:0]");
    expect(lines.filter((l) => l.startsWith(":"))).toHaveLength(1);
    expect(lines).toContain('-A CNI-HOSTPORT-SETMARK -m comment --comment CNI portfwd masquerade mark -j MARK --set-xmark 0x2000/0x2000');
    expect(lines).toContain("-A OUTPUT -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT");
    expect(lines.some((l) => l.startsWith("-A PREROUTING") || l.startsWith("-I POSTROUTING") || l.startsWith("-A CNI-HOSTPORT-MASQ"))).toBe(false);
    // tcp's entry exists (conditions printed first); udp's goes first in the chain.
    expect(lines.filter((l) => l.includes("CNI-HOSTPORT-DNAT 1"))).toEqual([
      '-I CNI-HOSTPORT-DNAT 1 -p udp -m comment --comment dnat name: "testnet" id: "c1" -m multiport --dports 8053 -d 10.0.0.0/8 -j CNI-DN-328e3d85e6c0f709cddd7',
    ]);
  });
  it("removes the pod's jumps and chain only", () => {
    const lines = iptablesRemoveLines(["CNI-DN-328e3d85e6c0f709cddd7", "CNI-SN-absent"], parseNatTable(SAVED)).map((l) => l.join("|"));
    expect(lines).toEqual([
      '-D|CNI-HOSTPORT-DNAT|-d|10.0.0.0/8|-p|tcp|-m|comment|--comment|dnat name: "testnet" id: "c1"|-m|multiport|--dports|8080,9090|-j|CNI-DN-328e3d85e6c0f709cddd7',
      "-F|CNI-DN-328e3d85e6c0f709cddd7",
      "-X|CNI-DN-328e3d85e6c0f709cddd7",
    ]);
    expect(iptablesRemoveLines(["CNI-DN-absent"], parseNatTable(SAVED))).toEqual([]);
  });
  it("GC picks this network's chains of containers not kept", () => {
    const table = parseNatTable(SAVED);
    expect(iptablesStaleChains("testnet", new Set(["c1"]), table)).toEqual(["CNI-DN-other", expect.stringMatching(/^CNI-SN-/)]);
    expect(iptablesStaleChains("testnet", new Set(["c1", "c9"]), table)).toEqual([]);
  });
  it("CHECK names what is missing", () => {
    const missing = iptablesMissing(s(), V4, parseNatTable(SAVED));
    expect(missing).toContain('rule "-s 10.99.1.0/24 -p tcp -m tcp --dport 8080 -j CNI-HOSTPORT-SETMARK" in chain CNI-DN-328e3d85e6c0f709cddd7');
    expect(missing.some((m) => m.includes("--dports 8053"))).toBe(true);
    expect(missing.some((m) => m.includes("--dports 8080,9090"))).toBe(false);
    expect(iptablesMissing(settings({}, "iptables"), V4, parseNatTable("*nat\nCOMMIT\n"))).toEqual(["chain CNI-DN-328e3d85e6c0f709cddd7 not found in iptables table nat"]);
  });
});

describe("route_localnet interface", () => {
  const PROC = [
    "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT",
    "eth0\t00000000\t0102A8C0\t0003\t0\t0\t0\t00000000\t0\t0\t0",
    "flannel.1\t0000F40A\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0",
    "cni0\t0001F40A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0",
  ].join("\n");
  it("is the longest prefix's", () => {
    const routes = parseProcRoutes(PROC);
    expect(interfaceFor(routes, "10.244.1.7")).toBe("cni0");
    expect(interfaceFor(routes, "10.244.2.7")).toBe("flannel.1");
    expect(interfaceFor(routes, "8.8.8.8")).toBe("eth0");
    expect(interfaceFor([], "8.8.8.8")).toBeUndefined();
  });
});
