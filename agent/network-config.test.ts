import { Ajv } from "ajv";
import { describe, expect, it } from "vitest";
import type { CompiledValidator } from "../lib/cni/config.js";
import { formatCidr, formatIp, ipFromBigInt } from "../lib/ip/ip.js";
import { agentNetworkConfigSchema } from "./network-config.schema.js";
import { parseNetworkConfig, subnetCount, type NetworkConfig, type SubnetPool } from "./network-config.js";

// Compiled here with the build's options; the build compiles it into gen/ once the agent is a registered program.
const validate: CompiledValidator = new Ajv({ useDefaults: true, strict: true, allErrors: false }).compile(agentNetworkConfigSchema);

const KEY = "/coreos.com/network/config";
const parse = (config: unknown): NetworkConfig => parseNetworkConfig(JSON.stringify(config), validate, KEY);
const message = (config: unknown): string => {
  try {
    parseNetworkConfig(typeof config === "string" ? config : JSON.stringify(config), validate, KEY);
  } catch (err) {
    return (err as Error).message;
  }
  throw new Error("no error");
};

/** A pool as text, to compare with flanneld's values. */
function shown(pool: SubnetPool | undefined): string | undefined {
  if (!pool) return undefined;
  const ip = (v: bigint) => formatIp(ipFromBigInt(v, pool.family));
  return `${ip(pool.min)}..${ip(pool.max)}/${pool.subnetLength} of ${formatCidr(pool.network)}`;
}

describe("parseNetworkConfig", () => {
  it("gives flanneld's defaults for a /16: /24 subnets from the second to the last", () => {
    const config = parse({ Network: "10.244.0.0/16", Backend: { Type: "vxlan" } });
    expect(shown(config.ipv4)).toBe("10.244.1.0..10.244.255.0/24 of 10.244.0.0/16");
    expect(config.ipv6).toBeUndefined();
    expect(config.backend).toStrictEqual({ type: "vxlan", vni: 1, port: 8472, gbp: false, learning: false, directRouting: false });
    expect(config.enableNFTables).toBe(false);
    expect(config.warnings).toEqual([]);
    expect(subnetCount(config.ipv4!)).toBe(255n);
  });

  it("derives SubnetLen as flanneld does: 24 down to a /22, network length + 2 below", () => {
    expect(parse({ Network: "10.0.0.0/8", Backend: { Type: "host-gw" } }).ipv4?.subnetLength).toBe(24);
    expect(parse({ Network: "10.0.0.0/22", Backend: { Type: "host-gw" } }).ipv4?.subnetLength).toBe(24);
    expect(shown(parse({ Network: "10.0.0.0/23", Backend: { Type: "host-gw" } }).ipv4)).toBe("10.0.0.128..10.0.1.128/25 of 10.0.0.0/23");
    expect(shown(parse({ Network: "10.0.0.0/28", Backend: { Type: "host-gw" } }).ipv4)).toBe("10.0.0.4..10.0.0.12/30 of 10.0.0.0/28");
  });

  it("keeps the network form of Network, as net.ParseCIDR does", () => {
    expect(shown(parse({ Network: "10.244.7.9/16", Backend: { Type: "vxlan" } }).ipv4)).toBe("10.244.1.0..10.244.255.0/24 of 10.244.0.0/16");
  });

  it("takes SubnetLen, SubnetMin and SubnetMax as given", () => {
    const config = parse({
      Network: "10.0.0.0/8",
      SubnetLen: 20,
      SubnetMin: "10.10.0.0",
      SubnetMax: "10.99.0.0",
      Backend: { Type: "udp", Port: 7890 },
    });
    expect(shown(config.ipv4)).toBe("10.10.0.0..10.99.0.0/20 of 10.0.0.0/8");
    expect(config.backend).toEqual({ type: "udp", port: 7890 });
    expect(subnetCount(config.ipv4!)).toBe(1425n);
  });

  it("reads the zero address as not given, as flanneld does", () => {
    expect(shown(parse({ Network: "10.244.0.0/16", SubnetMin: "0.0.0.0", Backend: { Type: "vxlan" } }).ipv4)).toBe(
      "10.244.1.0..10.244.255.0/24 of 10.244.0.0/16",
    );
  });

  it("reads every vxlan key", () => {
    const config = parse({
      Network: "10.244.0.0/16",
      Backend: { Type: "vxlan", VNI: 4096, Port: 4789, GBP: true, Learning: true, DirectRouting: true, MTU: 1400 },
    });
    expect(config.backend).toEqual({ type: "vxlan", vni: 4096, port: 4789, gbp: true, learning: true, directRouting: true, mtu: 1400 });
  });

  it("defaults to udp without a Backend, as flanneld's code does, and says so", () => {
    const config = parse({ Network: "10.244.0.0/16" });
    expect(config.backend).toEqual({ type: "udp", port: 8285 });
    expect(config.warnings).toEqual(['no Backend: using udp, as flanneld does; set "Backend": {"Type": "vxlan"} for VXLAN']);
  });

  it("matches keys ignoring case, as Go's decoder does, and warns about unknown ones", () => {
    const config = parse({ network: "10.5.0.0/16", subnetlen: 26, backend: { type: "vxlan", vni: 2, Extra: 1 }, Networks: [], Colour: "blue" });
    expect(shown(config.ipv4)).toBe("10.5.0.64..10.5.255.192/26 of 10.5.0.0/16");
    expect(config.backend).toMatchObject({ type: "vxlan", vni: 2 });
    expect(config.warnings).toEqual([
      "Networks ignored: only the Kubernetes subnet manager reads them",
      "unknown keys ignored: Colour",
      "Backend keys ignored by the vxlan backend: Extra",
    ]);
  });

  it("gives flanneld's defaults with a validator that fills in none", () => {
    const config = parseNetworkConfig(JSON.stringify({ Network: "10.244.0.0/16", Backend: { Type: "host-gw" } }), () => true, KEY);
    expect(config).toEqual(parse({ Network: "10.244.0.0/16", Backend: { Type: "host-gw" } }));
    expect(config.ipv4).toBeDefined();
    expect(config.ipv6).toBeUndefined();
    expect(config.enableNFTables).toBe(false);
  });

  it("refuses a config that a validator refuses without saying why", () => {
    const text = JSON.stringify({ Network: "10.244.0.0/16", Backend: { Type: "host-gw" } });
    for (const validate of [() => false, Object.assign(() => false, { errors: null }), Object.assign(() => false, { errors: [] })]) {
      expect(() => parseNetworkConfig(text, validate, KEY)).toThrow(`invalid network config ${KEY}: does not match its schema`);
    }
  });

  it("lists every ignored key in its warning", () => {
    expect(
      parse({ Network: "10.244.0.0/16", Networks: [], IPv6Networks: [], Colour: "blue", Size: 1, Backend: { Type: "host-gw" } }).warnings,
    ).toEqual(["Networks, IPv6Networks ignored: only the Kubernetes subnet manager reads them", "unknown keys ignored: Colour, Size"]);
  });

  it("warns about keys the chosen backend does not read", () => {
    expect(parse({ Network: "10.244.0.0/16", Backend: { Type: "host-gw", VNI: 1, DirectRouting: true } }).warnings).toEqual([
      "Backend keys ignored by the host-gw backend: VNI, DirectRouting",
    ]);
  });

  it("reads dual stack with flanneld's IPv6 defaults", () => {
    const config = parse({
      Network: "10.244.0.0/16",
      EnableIPv6: true,
      IPv6Network: "fd00:10:244::/56",
      EnableNFTables: true,
      Backend: { Type: "vxlan" },
    });
    expect(shown(config.ipv6)).toBe("fd00:10:244:1::..fd00:10:244:ff::/64 of fd00:10:244::/56");
    expect(subnetCount(config.ipv6!)).toBe(255n);
    expect(config.enableNFTables).toBe(true);
  });

  it("reads IPv6 only, and the IPv6 lengths", () => {
    const config = parse({ EnableIPv4: false, EnableIPv6: true, IPv6Network: "fd00::/120", Backend: { Type: "host-gw" } });
    expect(config.ipv4).toBeUndefined();
    expect(shown(config.ipv6)).toBe("fd00::40..fd00::c0/122 of fd00::/120");
    expect(
      parse({ EnableIPv4: false, EnableIPv6: true, IPv6Network: "fd00::/48", IPv6SubnetLen: 80, Backend: { Type: "vxlan" } }).ipv6?.subnetLength,
    ).toBe(80);
    const bounded = parse({
      EnableIPv4: false,
      EnableIPv6: true,
      IPv6Network: "fd00::/48",
      IPv6SubnetMin: "fd00:0:0:10::",
      IPv6SubnetMax: "fd00:0:0:20::",
      Backend: { Type: "vxlan" },
    });
    expect(shown(bounded.ipv6)).toBe("fd00:0:0:10::..fd00:0:0:20::/64 of fd00::/48");
  });

  it("warns about an IPv6Network without EnableIPv6", () => {
    expect(parse({ Network: "10.244.0.0/16", IPv6Network: "fd00::/56", Backend: { Type: "vxlan" } }).warnings).toEqual([
      "IPv6Network is ignored: EnableIPv6 is not true",
    ]);
  });

  it("refuses each invalid config, naming the key", () => {
    const cases: [unknown, string][] = [
      ['{"Network": "10.244.0.0/16",', "not valid JSON"],
      ["[1]", "it must be a JSON object"],
      ["null", "it must be a JSON object"],
      ['"x"', "it must be a JSON object"],
      ["5", "it must be a JSON object"],
      [
        { Backend: { Type: "vxlan" } },
        `Network is missing: give the cluster's IPv4 network, e.g. "Network": "10.244.0.0/16" (or set "EnableIPv4": false for IPv6 only)`,
      ],
      [{ Network: "10.244.0.0", Backend: { Type: "vxlan" } }, 'Network "10.244.0.0" is not an IPv4 CIDR'],
      [{ Network: "fd00::/48", Backend: { Type: "vxlan" } }, 'Network "fd00::/48" is not an IPv4 CIDR'],
      [
        { Network: "10.0.0.0/29", Backend: { Type: "vxlan" } },
        "Network 10.0.0.0/29 is too small: the smallest network is a /28 (four subnets of four addresses; the first is never leased)",
      ],
      [
        { Network: "10.244.0.0/16", SubnetLen: 31, Backend: { Type: "vxlan" } },
        "SubnetLen is 31: it must be at most 30, so that a subnet holds a tunnel and a bridge address",
      ],
      [
        { Network: "10.244.0.0/16", SubnetLen: 17, Backend: { Type: "vxlan" } },
        "SubnetLen is 17 in the /16 Network: it must be at least 18, so that the network holds four subnets (the first is never leased)",
      ],
      [{ Network: "10.244.0.0/16", SubnetLen: "24", Backend: { Type: "vxlan" } }, 'SubnetLen must be integer (got "24")'],
      [{ Network: "10.244.0.0/16", SubnetLen: -1, Backend: { Type: "vxlan" } }, "SubnetLen must be >= 0 (got -1)"],
      [{ Network: "10.244.0.0/16", SubnetMin: "10.1.0.0", Backend: { Type: "vxlan" } }, "SubnetMin 10.1.0.0 is outside Network 10.244.0.0/16"],
      [{ Network: "10.244.0.0/16", SubnetMax: "10.245.0.0", Backend: { Type: "vxlan" } }, "SubnetMax 10.245.0.0 is outside Network 10.244.0.0/16"],
      [
        { Network: "10.244.0.0/16", SubnetMin: "10.244.1.5", Backend: { Type: "vxlan" } },
        "SubnetMin 10.244.1.5 is not the first address of a /24 subnet",
      ],
      [{ Network: "10.244.0.0/16", SubnetMin: "ten", Backend: { Type: "vxlan" } }, 'SubnetMin "ten" is not an IPv4 address'],
      [
        { Network: "10.244.0.0/16", SubnetMin: "10.244.9.0", SubnetMax: "10.244.2.0", Backend: { Type: "vxlan" } },
        "SubnetMin 10.244.9.0 is above SubnetMax 10.244.2.0: there is no subnet to lease",
      ],
      [{ Network: "10.244.0.0/16", Backend: { Type: "wireguard" } }, 'Backend.Type "wireguard" is not a backend weft runs: use vxlan, host-gw, udp'],
      [{ Network: "10.244.0.0/16", Backend: {} }, "Backend.Type is required"],
      [{ Network: "10.244.0.0/16", Backend: null }, "Backend must be object (got null)"],
      [{ Network: "10.244.0.0/16", Backend: "vxlan" }, 'Backend must be object (got "vxlan")'],
      [{ Network: "10.244.0.0/16", Backend: ["vxlan"] }, 'Backend must be object (got ["vxlan"])'],
      [{ Network: "10.244.0.0/16", SubnetLen: "24", Backend: { Type: "wireguard" } }, 'SubnetLen must be integer (got "24")'],
      [{ Network: "10.244.0.0/16", Backend: { Type: "vxlan", VNI: 16777216 } }, "Backend.VNI must be <= 16777215 (got 16777216)"],
      [{ Network: "10.244.0.0/16", Backend: { Type: "vxlan", Port: "8472" } }, 'Backend.Port must be integer (got "8472")'],
      [{ Network: "10.244.0.0/16", EnableIPv4: false, Backend: { Type: "vxlan" } }, "EnableIPv4 and EnableIPv6 are both false: enable at least one"],
      [
        { Network: "10.244.0.0/16", EnableIPv6: true, Backend: { Type: "vxlan" } },
        `IPv6Network is missing: "EnableIPv6": true needs the cluster's IPv6 network, e.g. "IPv6Network": "fd00:10:244::/56"`,
      ],
      [
        { EnableIPv4: false, EnableIPv6: true, IPv6Network: "fd00::/125", Backend: { Type: "vxlan" } },
        "IPv6Network fd00::/125 is too small: the smallest network is a /124 (four subnets of four addresses; the first is never leased)",
      ],
      [
        { EnableIPv4: false, EnableIPv6: true, IPv6Network: "fd00::/48", IPv6SubnetLen: 127, Backend: { Type: "vxlan" } },
        "IPv6SubnetLen is 127: it must be at most 126, so that a subnet holds a tunnel and a bridge address",
      ],
      [
        { EnableIPv4: false, EnableIPv6: true, IPv6Network: "fd00::/48", IPv6SubnetMin: "fd01::", Backend: { Type: "vxlan" } },
        "IPv6SubnetMin fd01:: is outside IPv6Network fd00::/48",
      ],
    ];
    for (const [config, expected] of cases) {
      const got = message(config);
      if (expected === "not valid JSON") expect(got).toMatch(/^invalid network config \/coreos\.com\/network\/config: not valid JSON \(/);
      else expect(got).toBe(`invalid network config ${KEY}: ${expected}`);
    }
  });
  it("takes the bounds: SubnetLen 30, SubnetLen of network length + 2, SubnetMin at the network's start", () => {
    expect(parse({ Network: "10.244.0.0/16", SubnetLen: 30, Backend: { Type: "vxlan" } }).ipv4?.subnetLength).toBe(30);
    expect(shown(parse({ Network: "10.244.0.0/16", SubnetLen: 18, Backend: { Type: "vxlan" } }).ipv4)).toBe(
      "10.244.64.0..10.244.192.0/18 of 10.244.0.0/16",
    );
    expect(shown(parse({ Network: "10.244.0.0/16", SubnetMin: "10.244.0.0", Backend: { Type: "vxlan" } }).ipv4)).toBe(
      "10.244.0.0..10.244.255.0/24 of 10.244.0.0/16",
    );
    expect(message({ Network: "10.244.0.0/16", SubnetMax: "10.244.255.255", Backend: { Type: "vxlan" } })).toBe(
      `invalid network config ${KEY}: SubnetMax 10.244.255.255 is not the first address of a /24 subnet`,
    );
  });

  it("reads each backend's own keys without a warning, and warns about the others", () => {
    const all = { Type: "vxlan", VNI: 1, Port: 8472, GBP: false, Learning: false, DirectRouting: false, MTU: 1500 };
    expect(parse({ Network: "10.244.0.0/16", Backend: all }).warnings).toEqual([]);
    expect(parse({ Network: "10.244.0.0/16", Backend: { Type: "host-gw" } })).toEqual({
      ipv4: parse({ Network: "10.244.0.0/16", Backend: { Type: "host-gw" } }).ipv4,
      backend: { type: "host-gw" },
      enableNFTables: false,
      warnings: [],
    });
    const udp = parse({ Network: "10.244.0.0/16", Backend: { Type: "udp", VNI: 1, Port: 0 } });
    expect(udp.backend).toEqual({ type: "udp", port: 8285 });
    expect(udp.warnings).toEqual(["Backend keys ignored by the udp backend: VNI"]);
    expect(parse({ Network: "10.244.0.0/16", Backend: { Type: "vxlan", Port: 0 } }).backend).toMatchObject({ port: 8472 });
  });
});
