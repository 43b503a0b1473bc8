import { describe, expect, it } from "vitest";
import { portmap } from "../../gen/validators.js";
import { validateWith } from "../../lib/cni/config.js";
import { CniError } from "../../lib/errors/cni.js";
import type { Result } from "../../lib/cni/result.js";
import type { Request } from "../../lib/cni/skel.js";
import { backendOfConditions, DEFAULT_MARK_BIT, podAddresses, portmapSettings, SET_MARK_CHAIN, type Backend, type PortmapConf } from "./config.js";
import { portmapPlugin } from "./plugin.js";
import { MAX_PORT_MAPPINGS } from "./schema.js";

/** A config as the runtime sends it, through the schema (defaults filled in, ranges checked). */
function conf(extra: Record<string, unknown> = {}, portMappings?: unknown): PortmapConf {
  const raw: Record<string, unknown> = { cniVersion: "1.0.0", name: "testnet", type: "portmap", ...extra };
  if (portMappings !== undefined) raw.runtimeConfig = { portMappings };
  return validateWith<PortmapConf>(portmap, raw);
}

function settings(extra: Record<string, unknown> = {}, portMappings?: unknown, automatic: Backend = "nftables") {
  return portmapSettings(conf(extra, portMappings), "c1", () => automatic);
}

function failure(fn: () => unknown): CniError {
  try {
    fn();
  } catch (err) {
    if (err instanceof CniError) return err;
    throw err;
  }
  throw new Error("expected a CniError");
}

async function asyncFailure(fn: () => Promise<unknown>): Promise<CniError> {
  try {
    await fn();
  } catch (err) {
    if (err instanceof CniError) return err;
    throw err;
  }
  throw new Error("expected a CniError");
}

describe("portmap config defaults", () => {
  it("fills the reference's defaults: snat on, masqAll off, mark bit 13, its own CNI-HOSTPORT-SETMARK chain", () => {
    const s = settings();
    expect(s).toEqual({
      network: "testnet",
      containerId: "c1",
      backend: "nftables",
      mappings: [],
      snat: true,
      masqAll: false,
      markMasqBit: DEFAULT_MARK_BIT,
      setMarkChain: SET_MARK_CHAIN,
      ownSetMark: true,
      conditions: { 4: [], 6: [] },
    });
    expect(DEFAULT_MARK_BIT).toBe(13);
    expect(SET_MARK_CHAIN).toBe("CNI-HOSTPORT-SETMARK");
  });

  it("marks connections through an external chain without owning it", () => {
    const s = settings({ externalSetMarkChain: "KUBE-MARK-MASQ" });
    expect(s.setMarkChain).toBe("KUBE-MARK-MASQ");
    expect(s.ownSetMark).toBe(false);
    expect(s.markMasqBit).toBe(13);
    expect(settings({ markMasqBit: 0 }).markMasqBit).toBe(0);
    expect(settings({ markMasqBit: 31, snat: false, masqAll: true })).toMatchObject({
      markMasqBit: 31,
      snat: false,
      masqAll: true,
      ownSetMark: true,
    });
  });

  it("maps no port when runtimeConfig or its portMappings is absent or null", () => {
    expect(settings().mappings).toEqual([]);
    expect(settings({ runtimeConfig: {} }).mappings).toEqual([]);
    expect(settings({}, null).mappings).toEqual([]);
    expect(settings({}, []).mappings).toEqual([]);
  });
});

describe("port mappings", () => {
  it("defaults the protocol to tcp and lowers its case", () => {
    const s = settings({}, [
      { hostPort: 8080, containerPort: 80 },
      { hostPort: 53, containerPort: 5353, protocol: "UDP" },
      { hostPort: 3868, containerPort: 3868, protocol: "SCTP" },
    ]);
    expect(s.mappings).toEqual([
      { hostPort: 8080, containerPort: 80, protocol: "tcp" },
      { hostPort: 53, containerPort: 5353, protocol: "udp" },
      { hostPort: 3868, containerPort: 3868, protocol: "sctp" },
    ]);
  });

  it("parses hostIP to its canonical form and family; an unspecified address means every address; an empty one none", () => {
    const s = settings({}, [
      { hostPort: 1, containerPort: 2, hostIP: "192.168.5.5" },
      { hostPort: 3, containerPort: 4, hostIP: "FD00:0:0::5" },
      { hostPort: 5, containerPort: 6, hostIP: "::" },
      { hostPort: 7, containerPort: 8, hostIP: "0.0.0.0" },
      { hostPort: 9, containerPort: 10, hostIP: "" },
    ]);
    expect(s.mappings.map((m) => m.hostIP)).toEqual([
      { ip: "192.168.5.5", family: 4, unspecified: false },
      { ip: "fd00::5", family: 6, unspecified: false },
      { ip: "::", family: 6, unspecified: true },
      { ip: "0.0.0.0", family: 4, unspecified: true },
      undefined,
    ]);
    expect(s.mappings[4]).toEqual({ hostPort: 9, containerPort: 10, protocol: "tcp" });
  });

  it("refuses a hostIP that is no address with code 7 naming the mapping", () => {
    const err = failure(() =>
      settings({}, [
        { hostPort: 1, containerPort: 2 },
        { hostPort: 3, containerPort: 4, hostIP: "1.2.3" },
      ]),
    );
    expect(err.code).toBe(7);
    expect(err.message).toBe('invalid runtimeConfig.portMappings[1].hostIP "1.2.3": not an IP address');
  });

  it("refuses ports outside 1-65535, fractional ports, missing ports and unknown protocols with code 7 naming the field", () => {
    const cases: Array<[unknown, string]> = [
      [{ hostPort: 0, containerPort: 80 }, "runtimeConfig.portMappings[0].hostPort must be >= 1 (got 0)"],
      [{ hostPort: 65536, containerPort: 80 }, "runtimeConfig.portMappings[0].hostPort must be <= 65535 (got 65536)"],
      [{ hostPort: 8080, containerPort: 0 }, "runtimeConfig.portMappings[0].containerPort must be >= 1 (got 0)"],
      [{ hostPort: 8080, containerPort: 65536 }, "runtimeConfig.portMappings[0].containerPort must be <= 65535 (got 65536)"],
      [{ hostPort: 80.5, containerPort: 80 }, "runtimeConfig.portMappings[0].hostPort must be integer (got 80.5)"],
      [{ containerPort: 80 }, "runtimeConfig.portMappings[0].hostPort is required"],
      [{ hostPort: 8080 }, "runtimeConfig.portMappings[0].containerPort is required"],
      [
        { hostPort: 8080, containerPort: 80, protocol: "icmp" },
        'runtimeConfig.portMappings[0].protocol must be equal to one of the allowed values (got "icmp")',
      ],
      [{ hostPort: 8080, containerPort: 80, hostIP: 7 }, "runtimeConfig.portMappings[0].hostIP must be string (got 7)"],
    ];
    for (const [mapping, message] of cases) {
      const err = failure(() => conf({}, [mapping]));
      expect(err.code).toBe(7);
      expect(err.message).toBe(`invalid network config: ${message}`);
    }
    expect(
      settings({}, [
        { hostPort: 1, containerPort: 65535 },
        { hostPort: 65535, containerPort: 1 },
      ]).mappings,
    ).toHaveLength(2);
  });

  it("refuses a mark bit outside 0-31 and a set-mark chain iptables cannot name", () => {
    expect(failure(() => conf({ markMasqBit: 32 })).message).toBe("invalid network config: markMasqBit must be <= 31 (got 32)");
    expect(failure(() => conf({ markMasqBit: -1 })).message).toBe("invalid network config: markMasqBit must be >= 0 (got -1)");
    expect(failure(() => conf({ externalSetMarkChain: "x".repeat(29) })).code).toBe(7);
    expect(failure(() => conf({ externalSetMarkChain: "A B" })).code).toBe(7);
    expect(failure(() => conf({ backend: "ipvs" })).message).toBe(
      'invalid network config: backend must be equal to one of the allowed values (got "ipvs")',
    );
  });
});

describe("the bound on port mappings per pod", () => {
  const plugin = portmapPlugin();
  function request(count: number): Request<PortmapConf> {
    const mappings = Array.from({ length: count }, (_, i) => ({ hostPort: 1 + i, containerPort: 80 }));
    const config = conf({}, mappings);
    // No address on eth0: an accepted ADD stops before it touches netfilter.
    const prevResult: Result = { cniVersion: "1.0.0", interfaces: [{ name: "eth0", sandbox: "/run/netns/p" }], ips: [] };
    return {
      verb: "ADD",
      config,
      configBytes: Buffer.from(JSON.stringify(config)),
      rawConfig: config as unknown as Record<string, unknown>,
      version: "1.0.0",
      env: { command: "ADD", containerId: "c1", netns: "/run/netns/p", ifName: "eth0", args: "", path: [], netnsOverride: false },
      environment: {},
      cniArgs: new Map(),
      prevResult,
      log: () => {},
    };
  }

  it("accepts 1024 mappings", async () => {
    expect(MAX_PORT_MAPPINGS).toBe(1024);
    const r = request(MAX_PORT_MAPPINGS);
    await expect(plugin.add(r)).resolves.toBe(r.prevResult);
  });

  it("refuses 1025 with code 7, before any rule is written", async () => {
    const err = await asyncFailure(() => plugin.add(request(MAX_PORT_MAPPINGS + 1)));
    expect(err.code).toBe(7);
    expect(err.message).toBe("runtimeConfig.portMappings has 1025 mappings: at most 1024 per pod");
    expect(err.details).toBe("map fewer host ports, or run the pod with hostNetwork");
  });
});

describe("backend choice", () => {
  it("classifies conditions by their first token: iptables options begin with - or !", () => {
    expect(backendOfConditions(["-d", "10.0.0.0/8"])).toBe("iptables");
    expect(backendOfConditions(["--dport", "80"])).toBe("iptables");
    expect(backendOfConditions(["!", "-s", "10.0.0.0/8"])).toBe("iptables");
    expect(backendOfConditions(["!-s", "10.0.0.0/8"])).toBe("iptables");
    expect(backendOfConditions(["ip daddr != 10.0.0.0/8"])).toBe("nftables");
    expect(backendOfConditions(["meta mark 0x1", "-d"])).toBe("nftables");
    expect(backendOfConditions(['iifname "eth!"'])).toBe("nftables");
    expect(backendOfConditions([])).toBeUndefined();
    expect(backendOfConditions([""])).toBeUndefined();
    expect(backendOfConditions(null)).toBeUndefined();
    expect(backendOfConditions(undefined)).toBeUndefined();
  });

  it("takes backend as given, else what backend-specific keys imply, else the automatic choice", () => {
    expect(settings({}, undefined, "iptables").backend).toBe("iptables");
    expect(settings({}, undefined, "nftables").backend).toBe("nftables");
    expect(settings({ backend: "iptables" }, undefined, "nftables").backend).toBe("iptables");
    expect(settings({ markMasqBit: 13 }, undefined, "nftables").backend).toBe("iptables");
    expect(settings({ externalSetMarkChain: "KUBE-MARK-MASQ" }, undefined, "nftables").backend).toBe("iptables");
    expect(settings({ conditionsV6: ["-s", "fd00::/8"] }, undefined, "nftables").backend).toBe("iptables");
    expect(settings({ conditionsV6: ["ip6 saddr fd00::/8"] }, undefined, "iptables").backend).toBe("nftables");
    // Empty or null conditions imply nothing.
    expect(settings({ conditionsV4: [], conditionsV6: null }, undefined, "iptables").backend).toBe("iptables");
  });

  it("does not ask for the automatic choice when the config decides", () => {
    const automatic = () => {
      throw new Error("automatic choice asked");
    };
    expect(portmapSettings(conf({ backend: "nftables" }), "c1", automatic).backend).toBe("nftables");
    expect(portmapSettings(conf({ conditionsV4: ["ip saddr 10.0.0.0/8"] }), "c1", automatic).backend).toBe("nftables");
  });

  it("refuses iptables and nftables options together with code 7, naming both", () => {
    const err = failure(() =>
      settings({ externalSetMarkChain: "KUBE-MARK-MASQ", conditionsV4: ["-d", "10.0.0.0/8"], conditionsV6: ["ip6 daddr fd00::/8"] }),
    );
    expect(err.code).toBe(7);
    expect(err.message).toBe(
      "configuration mixes iptables-specific options [externalSetMarkChain conditionsV4] and nftables-specific options [conditionsV6]",
    );
    expect(failure(() => settings({ conditionsV4: ["ip daddr 10.0.0.0/8"], conditionsV6: ["-d", "fd00::/8"] })).message).toBe(
      "configuration mixes iptables-specific options [conditionsV6] and nftables-specific options [conditionsV4]",
    );
    expect(
      failure(() => settings({ externalSetMarkChain: "KUBE-MARK-MASQ", conditionsV4: ["ip daddr 10.0.0.0/8"], conditionsV6: ["ip6 daddr fd00::/8"] }))
        .message,
    ).toBe("configuration mixes iptables-specific options [externalSetMarkChain] and nftables-specific options [conditionsV4 conditionsV6]");
  });

  it("refuses options of the backend not requested with code 7, naming them", () => {
    const toNft = failure(() => settings({ backend: "nftables", externalSetMarkChain: "KUBE-MARK-MASQ", conditionsV6: ["-d", "fd00::/8"] }));
    expect(toNft.code).toBe(7);
    expect(toNft.message).toBe(
      "nftables backend was requested but configuration contains iptables-specific options [externalSetMarkChain conditionsV6]",
    );
    const toIpt = failure(() => settings({ backend: "iptables", conditionsV4: ["ip daddr 10.0.0.0/8"], conditionsV6: ["ip6 daddr fd00::/8"] }));
    expect(toIpt.code).toBe(7);
    expect(toIpt.message).toBe("iptables backend was requested but configuration contains nftables-specific options [conditionsV4 conditionsV6]");
    // markMasqBit implies iptables, so nftables conditions with it are the other backend's.
    expect(failure(() => settings({ markMasqBit: 13, conditionsV4: ["ip daddr 10.0.0.0/8"] })).message).toBe(
      "iptables backend was requested but configuration contains nftables-specific options [conditionsV4]",
    );
  });

  it("refuses externalSetMarkChain with markMasqBit, as the reference does", () => {
    const err = failure(() => settings({ markMasqBit: 13, externalSetMarkChain: "KUBE-MARK-MASQ" }));
    expect(err.code).toBe(7);
    expect(err.message).toBe("Cannot specify externalSetMarkChain and markMasqBit");
  });
});

describe("conditions", () => {
  it("keeps each family's conditions, in order", () => {
    const nft = settings({ conditionsV4: ["ip daddr 10.0.0.0/8", 'iifname "eth0"'], conditionsV6: ["ip6 daddr fd00::/8"] });
    expect(nft.conditions).toEqual({ 4: ["ip daddr 10.0.0.0/8", 'iifname "eth0"'], 6: ["ip6 daddr fd00::/8"] });
    const ipt = settings({ conditionsV4: ["-d", "10.0.0.0/8"], conditionsV6: ["!", "-s", "fd00::/8"] });
    expect(ipt.conditions).toEqual({ 4: ["-d", "10.0.0.0/8"], 6: ["!", "-s", "fd00::/8"] });
  });

  it("refuses nftables tokens that would end the rule, comment out its jump or leave a quote open", () => {
    const bad = [
      "ip daddr 1.2.3.4; flush ruleset",
      "tcp dport 1 # x",
      "ip daddr 1.2.3.4\nflush ruleset",
      "a\rb",
      "a\0b",
      "a\\b",
      "meta 'x'",
      'iifname "eth0',
    ];
    for (const token of bad) {
      for (const key of ["conditionsV4", "conditionsV6"]) {
        const err = failure(() => settings({ backend: "nftables", [key]: ["ip daddr 10.0.0.0/8", token] }));
        expect(err.code).toBe(7);
        expect(err.message).toBe(
          `invalid ${key} token ${JSON.stringify(token)}: nftables conditions may not contain ; # ' \\, line breaks or unbalanced quotes`,
        );
      }
    }
    expect(settings({ conditionsV6: ['iifname "eth0"', 'meta iifname { "a", "b" }'] }).conditions[6]).toHaveLength(2);
  });

  it("lets iptables tokens hold what nft would refuse, but not line breaks", () => {
    const s = settings({ conditionsV4: ["-m", "comment", "--comment", "port #1; it's \"x"] });
    expect(s.conditions[4]).toEqual(["-m", "comment", "--comment", "port #1; it's \"x"]);
    for (const token of ["1.2.3.4\n-A POSTROUTING -j ACCEPT", "a\rb", "a\0b"]) {
      const err = failure(() => settings({ conditionsV6: ["-d", token] }));
      expect(err.code).toBe(7);
      expect(err.message).toBe(`invalid conditionsV6 token ${JSON.stringify(token)}: line breaks are not allowed`);
    }
  });
});

describe("pod addresses from prevResult", () => {
  const V4 = { family: 4, ip: "10.99.1.2", subnet: "10.99.1.0/24" };
  const V6 = { family: 6, ip: "fd99::2", subnet: "fd99::/64" };

  it("lists IPv4 before IPv6 whatever prevResult's order", () => {
    const prev = { cniVersion: "1.0.0", ips: [{ address: "fd99::2/64" }, { address: "10.99.1.2/24" }] } as Result;
    expect(podAddresses(prev, "eth0")).toEqual([V4, V6]);
  });

  it("counts an address whose interface index is absent, negative or past the interface list", () => {
    const interfaces = [{ name: "cni0" }, { name: "eth0", sandbox: "/run/netns/p" }];
    const at = (index: number | undefined, list: typeof interfaces | undefined = interfaces) =>
      podAddresses({ cniVersion: "1.0.0", interfaces: list, ips: [{ interface: index, address: "10.99.1.2/24" }] }, "eth0");
    expect(at(undefined)).toEqual([V4]);
    expect(at(-1)).toEqual([V4]);
    expect(at(2)).toEqual([V4]);
    const noInterfaces = podAddresses({ cniVersion: "1.0.0", ips: [{ interface: 0, address: "10.99.1.2/24" }] }, "eth0");
    expect(noInterfaces).toEqual([V4]);
    expect(at(1)).toEqual([V4]);
    expect(at(0)).toEqual([]);
  });

  it("skips addresses on the host side, on another interface, or not parseable", () => {
    const prev = {
      cniVersion: "1.0.0",
      interfaces: [{ name: "eth0" }, { name: "net1", sandbox: "/run/netns/p" }, { name: "eth0", sandbox: "/run/netns/p" }],
      ips: [
        { interface: 0, address: "10.0.0.1/24" },
        { interface: 1, address: "10.1.0.5/24" },
        { interface: 2, address: "bogus" },
        { interface: 2, address: "10.99.1.2/24" },
      ],
    } as Result;
    expect(podAddresses(prev, "eth0")).toEqual([V4]);
    expect(podAddresses({ cniVersion: "1.0.0" }, "eth0")).toEqual([]);
  });
});
