import { describe, expect, it } from "vitest";
import { iptablesRemoveLines, parseNatTable, parseNftTable } from "../../lib/netfilter/netfilter.js";
import { interfaceFor, parseProcRoutes } from "../../lib/netfilter/netfilter-localnet.js";
import { podAddresses, portmapSettings, type PortmapConf } from "./config.js";
import {
  dnatChainName,
  entryComment,
  iptablesAddLines,
  iptablesEntryRules,
  iptablesMissing,
  iptablesPodChains,
  iptablesPodRules,
  iptablesSharedChains,
  iptablesSharedRules,
  iptablesStaleChains,
  legacyNftTableName,
  mappingsFor,
  nftAddScript,
  nftExpectedSignatures,
  nftRuleSignature,
  oldSnatChainName,
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

const settings = (extra: Partial<PortmapConf> = {}, automatic: "iptables" | "nftables" = "nftables") =>
  portmapSettings(conf(extra), "c1", () => automatic);

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
    expect(() => settings({ backend: "nftables", conditionsV4: ["-d", "1.2.3.4"] })).toThrow(
      /nftables backend was requested but configuration contains iptables-specific options \[conditionsV4\]/,
    );
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
    const s = portmapSettings(
      conf({
        runtimeConfig: {
          portMappings: [
            { hostPort: 1, containerPort: 2, protocol: "SCTP", hostIP: "fd00:0::5" },
            { hostPort: 3, containerPort: 4, protocol: "tcp", hostIP: "0.0.0.0" },
          ],
        },
      }),
      "c",
      () => "nftables",
    );
    expect(s.mappings).toEqual([
      { hostPort: 1, containerPort: 2, protocol: "sctp", hostIP: { ip: "fd00::5", family: 6, unspecified: false } },
      { hostPort: 3, containerPort: 4, protocol: "tcp", hostIP: { ip: "0.0.0.0", family: 4, unspecified: true } },
    ]);
    expect(() =>
      portmapSettings(
        conf({ runtimeConfig: { portMappings: [{ hostPort: 1, containerPort: 2, protocol: "tcp", hostIP: "1.2.3" }] } }),
        "c",
        () => "nftables",
      ),
    ).toThrow(/hostIP "1.2.3"/);
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
        {
          rule: {
            chain: "hostports",
            handle: 7,
            comment: "c1",
            expr: [
              { match: { op: "==", left: { meta: { key: "nfproto" } }, right: "ipv4" } },
              { match: { op: "==", left: { payload: { protocol: "tcp", field: "dport" } }, right: 8080 } },
              { dnat: { family: "ip", addr: "10.99.1.2", port: 80 } },
            ],
          },
        },
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
    expect(entries.map((e) => e[9])).toEqual([
      many
        .slice(0, 15)
        .map((m) => m.hostPort)
        .join(","),
      "1015,1016",
    ]);
    expect(iptablesEntryRules(s(), 4)[0]).toEqual([
      "-p",
      "tcp",
      "-m",
      "comment",
      "--comment",
      'dnat name: "testnet" id: "c1"',
      "-m",
      "multiport",
      "--dports",
      "8080,9090",
      "-d",
      "10.0.0.0/8",
      "-j",
      "CNI-DN-328e3d85e6c0f709cddd7",
    ]);
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
    expect(lines).toContain("-A CNI-HOSTPORT-SETMARK -m comment --comment CNI portfwd masquerade mark -j MARK --set-xmark 0x2000/0x2000");
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
    expect(iptablesMissing(settings({}, "iptables"), V4, parseNatTable("*nat\nCOMMIT\n"))).toEqual([
      "chain CNI-DN-328e3d85e6c0f709cddd7 not found in iptables table nat",
    ]);
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

describe("nftables rules of single cases", () => {
  it("keeps a container ID of up to 127 characters as the comment and hashes a longer one", () => {
    expect(ruleTag("x".repeat(127))).toBe("x".repeat(127));
    const hashed = ruleTag("x".repeat(128));
    expect(hashed).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(hashed).not.toBe(ruleTag("x".repeat(129)));
    expect(nftAddScript(settings(), [V4])).toContain(`comment "c1"`);
  });

  it("joins several condition tokens with spaces in front of both entry jumps, and only in their family", () => {
    const s = settings({ conditionsV4: ['iifname "eth0"', "ip daddr 10.0.0.0/8"], conditionsV6: ["ip6 daddr fd00::/8"] });
    const lines = nftAddScript(s, [V4, V6]).split("\n");
    expect(lines.filter((l) => l.includes("fib daddr type local"))).toEqual([
      'add rule ip cni_hostport prerouting iifname "eth0" ip daddr 10.0.0.0/8 fib daddr type local jump hostports_all',
      'add rule ip cni_hostport output iifname "eth0" ip daddr 10.0.0.0/8 fib daddr type local jump hostports_all',
      "add rule ip6 cni_hostport prerouting ip6 daddr fd00::/8 fib daddr type local jump hostports_all",
      "add rule ip6 cni_hostport output ip6 daddr fd00::/8 fib daddr type local jump hostports_all",
    ]);
  });

  it("with masqAll masquerades one rule per mapping from any source; without snat adds no masquerading chain", () => {
    const one = { runtimeConfig: { portMappings: [{ hostPort: 8080, containerPort: 80, protocol: "tcp" as const }] } };
    const masqAll = nftAddScript(settings({ ...one, masqAll: true }), [V4]).split("\n");
    expect(masqAll.filter((l) => l.includes("masquerade"))).toEqual([
      'insert rule ip cni_hostport masquerading ip daddr 10.99.1.2 tcp dport 80 ct original proto-dst 8080 ct status dnat masquerade comment "c1"',
    ]);
    const noSnat = nftAddScript(settings({ ...one, snat: false }), [V4]).split("\n");
    expect(noSnat.filter((l) => l.startsWith("insert"))).toEqual([
      'insert rule ip cni_hostport hostports tcp dport 8080 dnat to 10.99.1.2:80 comment "c1"',
    ]);
    expect(noSnat.some((l) => l.includes("masquerading"))).toBe(false);
    expect(nftAddScript(settings(one), [])).toBe("\n");
  });

  it("applies a mapping with a hostIP in its family only; an unspecified hostIP matches every address", () => {
    const s = settings({
      runtimeConfig: {
        portMappings: [
          { hostPort: 1001, containerPort: 1, protocol: "tcp", hostIP: "fd00::5" },
          { hostPort: 1002, containerPort: 2, protocol: "tcp", hostIP: "::" },
          { hostPort: 1003, containerPort: 3, protocol: "udp", hostIP: "192.168.5.5" },
        ],
      },
    });
    expect(mappingsFor(s.mappings, 4).map((m) => m.hostPort)).toEqual([1003]);
    expect(mappingsFor(s.mappings, 6).map((m) => m.hostPort)).toEqual([1001, 1002]);
    const dnat = nftAddScript(s, [V4, V6])
      .split("\n")
      .filter((l) => l.includes("dnat to"));
    expect(dnat).toEqual([
      'insert rule ip cni_hostport hostports ip daddr 192.168.5.5 udp dport 1003 dnat to 10.99.1.2:3 comment "c1"',
      'insert rule ip6 cni_hostport hostports ip6 daddr fd00::5 tcp dport 1001 dnat to [fd99::2]:1 comment "c1"',
      'insert rule ip6 cni_hostport hostports tcp dport 1002 dnat to [fd99::2]:2 comment "c1"',
    ]);
    expect(nftExpectedSignatures(s, [V4, V6])).toEqual([
      "dnat udp 192.168.5.5 1003 -> 10.99.1.2:3",
      "masq udp 10.99.1.0/24 1003 -> 10.99.1.2:3",
      "masq udp 127.0.0.1 1003 -> 10.99.1.2:3",
      "dnat tcp fd00::5 1001 -> fd99::2:1",
      "masq tcp fd99::/64 1001 -> fd99::2:1",
      "dnat tcp * 1002 -> fd99::2:2",
      "masq tcp fd99::/64 1002 -> fd99::2:2",
    ]);
  });
});

describe("signatures read back from nft's JSON", () => {
  const match = (left: unknown, right: unknown) => ({ match: { op: "==", left, right } });
  const payload = (protocol: string, field: string) => ({ payload: { protocol, field } });
  const origDport = { ct: { key: "proto-dst", dir: "original" } };
  const ctStatusDnat = { match: { op: "in", left: { ct: { key: "status" } }, right: "dnat" } };
  const one = { runtimeConfig: { portMappings: [{ hostPort: 8080, containerPort: 80, protocol: "tcp" as const }] } };

  it("does not depend on the order of the matches", () => {
    const masq = [
      match(payload("tcp", "dport"), 80),
      match(origDport, 8080),
      match(payload("ip", "daddr"), "10.99.1.2"),
      match(payload("ip", "saddr"), "127.0.0.1"),
      ctStatusDnat,
      { masquerade: null },
    ];
    expect(nftRuleSignature(masq)).toBe("masq tcp 127.0.0.1 8080 -> 10.99.1.2:80");
    const dnat = [
      match(payload("tcp", "dport"), 9090),
      match(payload("ip", "daddr"), "192.168.5.5"),
      { dnat: { family: "ip", addr: "10.99.1.2", port: 90 } },
    ];
    expect(nftRuleSignature(dnat)).toBe("dnat tcp 192.168.5.5 9090 -> 10.99.1.2:90");
  });

  it("reads a masquerade without a source match as masqAll's", () => {
    const expr = [match(payload("ip", "daddr"), "10.99.1.2"), match(payload("tcp", "dport"), 80), match(origDport, 8080), { masquerade: null }];
    expect(nftRuleSignature(expr)).toBe("masq tcp * 8080 -> 10.99.1.2:80");
    expect(nftExpectedSignatures(settings({ ...one, masqAll: true }), [V4])).toEqual([
      "dnat tcp * 8080 -> 10.99.1.2:80",
      "masq tcp * 8080 -> 10.99.1.2:80",
    ]);
  });

  it("expects no masquerade without snat", () => {
    expect(nftExpectedSignatures(settings({ ...one, snat: false }), [V4, V6])).toEqual([
      "dnat tcp * 8080 -> 10.99.1.2:80",
      "dnat tcp * 8080 -> fd99::2:80",
    ]);
  });

  it("does not take a masquerade matching another conntrack field or direction for portmap's", () => {
    const expr = (key: string, dir: string) => [
      match(payload("ip", "daddr"), "10.99.1.2"),
      match(payload("tcp", "dport"), 80),
      match({ ct: { key, dir } }, 8080),
      { masquerade: null },
    ];
    expect(nftRuleSignature(expr("proto-dst", "original"))).toBe("masq tcp * 8080 -> 10.99.1.2:80");
    expect(nftRuleSignature(expr("proto-dst", "reply"))).not.toBe("masq tcp * 8080 -> 10.99.1.2:80");
    expect(nftRuleSignature(expr("proto-src", "original"))).not.toBe("masq tcp * 8080 -> 10.99.1.2:80");
  });

  it("reads rules whose source is a set or a range without failing", () => {
    for (const source of [{ set: ["10.99.1.3", "10.99.1.4"] }, { range: ["10.99.1.3", "10.99.1.9"] }]) {
      const expr = [
        match(payload("ip", "saddr"), source),
        match(payload("ip", "daddr"), "10.99.1.2"),
        match(payload("tcp", "dport"), 80),
        match(origDport, 8080),
        { masquerade: null },
      ];
      expect(() => nftRuleSignature(expr)).not.toThrow();
    }
  });

  it("gives no signature to rules that neither DNAT nor masquerade a port", () => {
    expect(nftRuleSignature([match(payload("tcp", "dport"), 22), { accept: null }])).toBeUndefined();
    expect(nftRuleSignature([match(payload("ip", "saddr"), { prefix: { addr: "10.99.1.0", len: 24 } }), { masquerade: null }])).toBeUndefined();
    expect(nftRuleSignature([{ dnat: { addr: "10.99.1.2", port: 80 } }])).toBeUndefined();
    expect(nftRuleSignature([])).toBeUndefined();
  });
});

describe("iptables rules of single cases", () => {
  it("trims an entry comment longer than 255 characters as the reference does", () => {
    const fits = "a".repeat(228);
    expect(entryComment("testnet", fits)).toBe(`dnat name: "testnet" id: "${fits}"`);
    expect(entryComment("testnet", fits)).toHaveLength(255);
    expect(entryComment("testnet", "a".repeat(229))).toBe(`dnat name: "testnet" id: "${"a".repeat(227)}...`);
  });

  it("matches an IPv6 hostIP as a /128 and marks no 127.0.0.1 hairpin for IPv6", () => {
    const s = settings({ runtimeConfig: { portMappings: [{ hostPort: 8080, containerPort: 80, protocol: "tcp", hostIP: "fd00::5" }] } }, "iptables");
    expect(iptablesPodRules(s, V6).map((r) => r.join(" "))).toEqual([
      "-s fd99::/64 -d fd00::5/128 -p tcp -m tcp --dport 8080 -j CNI-HOSTPORT-SETMARK",
      "-d fd00::5/128 -p tcp -m tcp --dport 8080 -j DNAT --to-destination [fd99::2]:80",
    ]);
    expect(iptablesPodRules(s, V4)).toEqual([]);
  });

  it("with masqAll marks every source once, and without snat only DNATs", () => {
    const one = { runtimeConfig: { portMappings: [{ hostPort: 8080, containerPort: 80, protocol: "tcp" as const }] } };
    expect(iptablesPodRules(settings({ ...one, masqAll: true }, "iptables"), V4).map((r) => r.join(" "))).toEqual([
      "-p tcp -m tcp --dport 8080 -j CNI-HOSTPORT-SETMARK",
      "-p tcp -m tcp --dport 8080 -j DNAT --to-destination 10.99.1.2:80",
    ]);
    expect(iptablesPodRules(settings({ ...one, snat: false }, "iptables"), V4).map((r) => r.join(" "))).toEqual([
      "-p tcp -m tcp --dport 8080 -j DNAT --to-destination 10.99.1.2:80",
    ]);
  });

  it("orders entry rules by protocol name, fits exactly 15 ports in one, and counts mappings of either family", () => {
    const fifteen = Array.from({ length: 15 }, (_, i) => ({ hostPort: 2000 + i, containerPort: 80, protocol: "tcp" as const }));
    const s = settings(
      {
        runtimeConfig: {
          portMappings: [
            { hostPort: 53, containerPort: 53, protocol: "udp" },
            { hostPort: 3868, containerPort: 3868, protocol: "sctp" },
            ...fifteen,
            { hostPort: 9, containerPort: 9, protocol: "udp", hostIP: "fd00::5" },
          ],
        },
      },
      "iptables",
    );
    const entries = iptablesEntryRules(s, 4);
    expect(entries.map((e) => `${e[1]} ${e[9]}`)).toEqual(["sctp 3868", `tcp ${fifteen.map((m) => m.hostPort).join(",")}`, "udp 53,9"]);
    expect(entries[0]).toEqual([
      "-p",
      "sctp",
      "-m",
      "comment",
      "--comment",
      'dnat name: "testnet" id: "c1"',
      "-m",
      "multiport",
      "--dports",
      "3868",
      "-j",
      "CNI-DN-328e3d85e6c0f709cddd7",
    ]);
  });

  it("sets up the reference's shared rules: mark, masquerade by mark (first in POSTROUTING), and the entry jumps", () => {
    expect(iptablesSharedRules(settings({}, "iptables"))).toEqual([
      {
        chain: "CNI-HOSTPORT-SETMARK",
        rule: ["-m", "comment", "--comment", "CNI portfwd masquerade mark", "-j", "MARK", "--set-xmark", "0x2000/0x2000"],
        prepend: false,
      },
      { chain: "CNI-HOSTPORT-MASQ", rule: ["-m", "mark", "--mark", "0x2000/0x2000", "-j", "MASQUERADE"], prepend: false },
      { chain: "POSTROUTING", rule: ["-m", "comment", "--comment", "CNI portfwd requiring masquerade", "-j", "CNI-HOSTPORT-MASQ"], prepend: true },
      { chain: "PREROUTING", rule: ["-m", "addrtype", "--dst-type", "LOCAL", "-j", "CNI-HOSTPORT-DNAT"], prepend: false },
      { chain: "OUTPUT", rule: ["-m", "addrtype", "--dst-type", "LOCAL", "-j", "CNI-HOSTPORT-DNAT"], prepend: false },
    ]);
    expect(iptablesSharedChains(settings({}, "iptables"))).toEqual(["CNI-HOSTPORT-SETMARK", "CNI-HOSTPORT-MASQ", "CNI-HOSTPORT-DNAT"]);
  });

  it("spells the mark bit as iptables-save does", () => {
    const mark = (bit: number) => iptablesSharedRules(settings({ markMasqBit: bit })).find((r) => r.chain === "CNI-HOSTPORT-MASQ")!.rule[3];
    expect([mark(0), mark(14), mark(31)]).toEqual(["0x1/0x1", "0x4000/0x4000", "0x80000000/0x80000000"]);
  });

  it("leaves marking and masquerading alone without snat or with an external set-mark chain", () => {
    for (const s of [settings({ snat: false }, "iptables"), settings({ externalSetMarkChain: "KUBE-MARK-MASQ" })]) {
      expect(iptablesSharedRules(s).map((r) => r.chain)).toEqual(["PREROUTING", "OUTPUT"]);
      expect(iptablesSharedChains(s)).toEqual(["CNI-HOSTPORT-DNAT"]);
    }
  });

  it("names the pod's chains: its DNAT chain and the SNAT chain of reference plugins before v0.7", () => {
    const [dn, sn] = iptablesPodChains("testnet", "c1");
    expect(dn).toBe("CNI-DN-328e3d85e6c0f709cddd7");
    expect(sn).toBe(oldSnatChainName("testnet", "c1"));
    expect(sn).toMatch(/^CNI-SN-[0-9a-f]{21}$/);
    expect(sn!.slice(7)).toBe(dn!.slice(7));
  });

  it("adds everything to an empty nat table, the entry jumps first in CNI-HOSTPORT-DNAT in order", () => {
    const lines = iptablesAddLines(settings({}, "iptables"), V4, parseNatTable("*nat\nCOMMIT\n")).map((l) => l.join(" "));
    const chain = "CNI-DN-328e3d85e6c0f709cddd7";
    expect(lines).toEqual([
      `:${chain} - [0:0]`,
      "-A CNI-HOSTPORT-SETMARK -m comment --comment CNI portfwd masquerade mark -j MARK --set-xmark 0x2000/0x2000",
      "-A CNI-HOSTPORT-MASQ -m mark --mark 0x2000/0x2000 -j MASQUERADE",
      "-I POSTROUTING 1 -m comment --comment CNI portfwd requiring masquerade -j CNI-HOSTPORT-MASQ",
      "-A PREROUTING -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT",
      "-A OUTPUT -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT",
      ...iptablesPodRules(settings({}, "iptables"), V4).map((r) => `-A ${chain} ${r.join(" ")}`),
      `-I CNI-HOSTPORT-DNAT 1 -p tcp -m comment --comment dnat name: "testnet" id: "c1" -m multiport --dports 8080,9090 -j ${chain}`,
      `-I CNI-HOSTPORT-DNAT 2 -p udp -m comment --comment dnat name: "testnet" id: "c1" -m multiport --dports 8053 -j ${chain}`,
    ]);
  });

  it("does not take another pod's entry, or its own for other ports or another protocol, for the one it needs", () => {
    const chain = "CNI-DN-328e3d85e6c0f709cddd7";
    const saved = (entries: string[]) =>
      ["*nat", `:${chain} - [0:0]`, ":CNI-HOSTPORT-DNAT - [0:0]", ...entries.map((e) => `-A CNI-HOSTPORT-DNAT ${e}`), "COMMIT"].join("\n");
    const s = settings({ runtimeConfig: { portMappings: [{ hostPort: 8080, containerPort: 80, protocol: "tcp" }] } }, "iptables");
    const inserted = (entries: string[]) =>
      iptablesAddLines(s, V4, parseNatTable(saved(entries))).filter((l) => l[0] === "-I" && l[1] === "CNI-HOSTPORT-DNAT").length;
    expect(inserted([`-p tcp -m comment --comment "dnat name: \\"testnet\\" id: \\"c1\\"" -m multiport --dports 8080 -j ${chain}`])).toBe(0);
    expect(inserted([`-p tcp -m comment --comment "dnat name: \\"testnet\\" id: \\"c9\\"" -m multiport --dports 8080 -j CNI-DN-other`])).toBe(1);
    expect(inserted([`-p tcp -m comment --comment "dnat name: \\"testnet\\" id: \\"c1\\"" -m multiport --dports 7070 -j ${chain}`])).toBe(1);
    expect(inserted([`-p udp -m comment --comment "dnat name: \\"testnet\\" id: \\"c1\\"" -m multiport --dports 8080 -j ${chain}`])).toBe(1);
    const missing = (entries: string[]) =>
      iptablesMissing(s, V4, parseNatTable(saved(entries))).filter((m) => m.endsWith("in chain CNI-HOSTPORT-DNAT"));
    expect(missing([`-p tcp -m comment --comment "dnat name: \\"testnet\\" id: \\"c9\\"" -m multiport --dports 8080 -j CNI-DN-other`])).toHaveLength(
      1,
    );
  });

  it("GC ignores jumps without this network's comment, and those whose container ID was trimmed away", () => {
    const long = "b".repeat(240);
    const table = parseNatTable(
      [
        "*nat",
        ":CNI-HOSTPORT-DNAT - [0:0]",
        "-A CNI-HOSTPORT-DNAT -p tcp -m multiport --dports 80 -j CNI-DN-nocomment",
        `-A CNI-HOSTPORT-DNAT -p tcp -m comment --comment "${entryComment("testnet", long).replaceAll('"', '\\"')}" -m multiport --dports 81 -j CNI-DN-long`,
        '-A CNI-HOSTPORT-DNAT -p tcp -m comment --comment "dnat name: \\"testnet2\\" id: \\"c7\\"" -m multiport --dports 82 -j CNI-DN-net2',
        '-A CNI-HOSTPORT-DNAT -p tcp -m comment --comment "dnat name: \\"testnet\\" id: \\"c7\\"" -m multiport --dports 83',
        '-A CNI-HOSTPORT-DNAT -p tcp -m comment --comment "dnat name: \\"testnet\\" id: \\"c6\\"" -m multiport --dports 84 -j CNI-DN-c6',
        "COMMIT",
      ].join("\n"),
    );
    expect(iptablesStaleChains("testnet", new Set(), table)).toEqual(["CNI-DN-c6", oldSnatChainName("testnet", "c6")]);
  });

  it("GC finds nothing in a nat table without portmap's entry chain rules", () => {
    expect(iptablesStaleChains("testnet", new Set(), parseNatTable("*nat\n:PREROUTING ACCEPT [0:0]\nCOMMIT\n"))).toEqual([]);
  });

  it("CHECK names every entry jump when the pod's chain is there but CNI-HOSTPORT-DNAT is empty", () => {
    const chain = "CNI-DN-328e3d85e6c0f709cddd7";
    const table = parseNatTable(["*nat", `:${chain} - [0:0]`, ":CNI-HOSTPORT-DNAT - [0:0]", "COMMIT"].join("\n"));
    const missing = iptablesMissing(settings({}, "iptables"), V4, table).filter((m) => m.endsWith("in chain CNI-HOSTPORT-DNAT"));
    expect(missing).toEqual([
      `rule "-p tcp -m comment --comment dnat name: "testnet" id: "c1" -m multiport --dports 8080,9090 -j ${chain}" in chain CNI-HOSTPORT-DNAT`,
      `rule "-p udp -m comment --comment dnat name: "testnet" id: "c1" -m multiport --dports 8053 -j ${chain}" in chain CNI-HOSTPORT-DNAT`,
    ]);
  });

  it("CHECK finds nothing missing once ADD's lines are in place, and names a missing shared rule", () => {
    const s = settings({}, "iptables");
    const table = { chains: new Set<string>(), rules: new Map<string, string[][]>() };
    for (const line of iptablesAddLines(s, V4, table)) {
      if (line[0]!.startsWith(":")) {
        table.chains.add(line[0]!.slice(1));
        continue;
      }
      const [op, chain, ...rest] = line as [string, string, ...string[]];
      const rules = table.rules.get(chain) ?? [];
      if (op === "-I") rules.splice(Number(rest[0]) - 1, 0, rest.slice(1));
      else rules.push(rest);
      table.rules.set(chain, rules);
    }
    expect(iptablesMissing(s, V4, table)).toEqual([]);
    table.rules.set("OUTPUT", []);
    expect(iptablesMissing(s, V4, table)).toEqual(['rule "-m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT" in chain OUTPUT']);
  });
});
