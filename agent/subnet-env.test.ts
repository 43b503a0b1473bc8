import { Ajv } from "ajv";
import { describe, expect, it } from "vitest";
import type { CompiledValidator } from "../lib/cni/config.js";
import { formatCidr, parseCidr, type ParsedCidr } from "../lib/ip/ip.js";
import { parseSubnetEnv } from "../plugins/flannel/subnet-env.js";
import { agentNetworkConfigSchema } from "./network-config.schema.js";
import { parseNetworkConfig, type NetworkConfig } from "./network-config.js";
import { formatSubnetEnv, previousSubnets } from "./subnet-env.js";

const validate: CompiledValidator = new Ajv({ useDefaults: true, strict: true, allErrors: false }).compile(agentNetworkConfigSchema);
const config = (c: unknown): NetworkConfig => parseNetworkConfig(JSON.stringify(c), validate, "/coreos.com/network/config");
const cidr = (s: string): ParsedCidr => parseCidr(s)!;

const V4 = config({ Network: "10.244.0.0/16", Backend: { Type: "vxlan" } });
const DUAL = config({ Network: "10.244.0.0/16", EnableIPv6: true, IPv6Network: "fd00:10:244::/56", Backend: { Type: "vxlan" } });
const V6 = config({ EnableIPv4: false, EnableIPv6: true, IPv6Network: "fd00::/48", Backend: { Type: "host-gw" } });

describe("formatSubnetEnv", () => {
  it("writes flanneld's IPv4 file: network, the subnet's first address, MTU, IPMASQ", () => {
    expect(formatSubnetEnv({ config: V4, subnets: { ipv4: cidr("10.244.1.0/24") }, mtu: 1450, ipMasq: true })).toBe(
      "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.1.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n",
    );
  });

  it("writes the dual-stack file in flanneld's order", () => {
    expect(
      formatSubnetEnv({ config: DUAL, subnets: { ipv4: cidr("10.244.1.0/24"), ipv6: cidr("fd00:10:244:1::/64") }, mtu: 1450, ipMasq: false }),
    ).toBe(
      "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.1.1/24\nFLANNEL_IPV6_NETWORK=fd00:10:244::/56\n" +
        "FLANNEL_IPV6_SUBNET=fd00:10:244:1::1/64\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=false\n",
    );
  });

  it("writes the IPv6-only file", () => {
    expect(formatSubnetEnv({ config: V6, subnets: { ipv6: cidr("fd00:0:0:7::/64") }, mtu: 1500, ipMasq: false })).toBe(
      "FLANNEL_IPV6_NETWORK=fd00::/48\nFLANNEL_IPV6_SUBNET=fd00:0:0:7::1/64\nFLANNEL_MTU=1500\nFLANNEL_IPMASQ=false\n",
    );
  });

  it("refuses a lease without a subnet of an enabled family", () => {
    expect(() => formatSubnetEnv({ config: DUAL, subnets: { ipv4: cidr("10.244.1.0/24") }, mtu: 1450, ipMasq: false })).toThrow(
      "subnet.env: FLANNEL_IPV6_SUBNET is missing: the lease holds no IPv6 subnet",
    );
  });

  it("is read unchanged by weft's flannel plugin", () => {
    const path = "/run/flannel/subnet.env";
    expect(parseSubnetEnv(formatSubnetEnv({ config: V4, subnets: { ipv4: cidr("10.244.1.0/24") }, mtu: 1450, ipMasq: true }), path)).toEqual({
      networks: ["10.244.0.0/16"],
      subnets: ["10.244.1.0/24"],
      ipv6Networks: [],
      ipv6Subnets: [],
      mtu: 1450,
      ipMasq: true,
    });
    const dual = formatSubnetEnv({
      config: DUAL,
      subnets: { ipv4: cidr("10.244.1.0/24"), ipv6: cidr("fd00:10:244:1::/64") },
      mtu: 1450,
      ipMasq: false,
    });
    expect(parseSubnetEnv(dual, path)).toEqual({
      networks: ["10.244.0.0/16"],
      subnets: ["10.244.1.0/24"],
      ipv6Networks: ["fd00:10:244::/56"],
      ipv6Subnets: ["fd00:10:244:1::/64"],
      mtu: 1450,
      ipMasq: false,
    });
    const v6 = formatSubnetEnv({ config: V6, subnets: { ipv6: cidr("fd00:0:0:7::/64") }, mtu: 1500, ipMasq: false });
    expect(parseSubnetEnv(v6, path)).toMatchObject({ networks: [], subnets: [], ipv6Networks: ["fd00::/48"], ipv6Subnets: ["fd00:0:0:7::/64"] });
  });
});

describe("previousSubnets", () => {
  const shown = (text: string) => {
    const s = previousSubnets(text);
    return [s.ipv4 && formatCidr(s.ipv4), s.ipv6 && formatCidr(s.ipv6)];
  };

  it("reads the subnets a previous run wrote, in their network form", () => {
    const written = formatSubnetEnv({
      config: DUAL,
      subnets: { ipv4: cidr("10.244.1.0/24"), ipv6: cidr("fd00:10:244:1::/64") },
      mtu: 1450,
      ipMasq: false,
    });
    expect(shown(written)).toEqual(["10.244.1.0/24", "fd00:10:244:1::/64"]);
    expect(previousSubnets(written)).toEqual({ ipv4: cidr("10.244.1.0/24"), ipv6: cidr("fd00:10:244:1::/64") });
  });

  it("reads dotenv as godotenv does: export, quotes, comments, CRLF", () => {
    expect(shown('# flannel\r\nexport FLANNEL_SUBNET="10.244.3.1/24"\r\nFLANNEL_IPV6_SUBNET=fd00::1/64 # six\r\n')).toEqual([
      "10.244.3.0/24",
      "fd00::/64",
    ]);
    expect(shown("FLANNEL_SUBNET='10.244.4.1/24'\n")).toEqual(["10.244.4.0/24", undefined]);
  });

  it("has no previous subnet for a missing or malformed value, as flanneld", () => {
    expect(previousSubnets("")).toEqual({});
    expect(previousSubnets("FLANNEL_SUBNET=10.244.1.1\nFLANNEL_IPV6_SUBNET=10.244.1.1/24\n")).toEqual({});
    expect(previousSubnets("FLANNEL_SUBNET=fd00::1/64\n=x\nnonsense\n")).toEqual({});
  });
  it("trims keys and values, ignores commented lines and unbalanced quotes", () => {
    expect(shown("  FLANNEL_SUBNET = 10.244.5.1/24  \nexport   FLANNEL_IPV6_SUBNET=fd00:5::1/64\n")).toEqual(["10.244.5.0/24", "fd00:5::/64"]);
    expect(shown("#FLANNEL_SUBNET=10.244.9.1/24\n")).toEqual([undefined, undefined]);
    expect(shown('FLANNEL_SUBNET="10.244.9.1/24\n')).toEqual([undefined, undefined]);
    expect(shown("FLANNEL_SUBNET='10.244.9.1/24\"\n")).toEqual([undefined, undefined]);
    expect(shown('FLANNEL_SUBNET="\n')).toEqual([undefined, undefined]);
    expect(shown("FLANNEL_SUBNET=10.244.9.1/24#x\n")).toEqual([undefined, undefined]);
    expect(shown("FLANNEL_SUBNET=10.244.9.1/24\t# tab\n")).toEqual(["10.244.9.0/24", undefined]);
    expect(shown("FLANNEL_SUBNET=10.244.1.1/24\nFLANNEL_SUBNET=10.244.2.1/24\n")).toEqual(["10.244.2.0/24", undefined]);
  });

  it("reads export after leading whitespace, and only as a prefix", () => {
    expect(shown("  export FLANNEL_SUBNET=10.244.6.1/24\n\texport\tFLANNEL_IPV6_SUBNET=fd00:6::1/64\n")).toEqual(["10.244.6.0/24", "fd00:6::/64"]);
    expect(shown("FLANNEL_SUBNET=export 10.244.6.1/24\n")).toEqual([undefined, undefined]);
    expect(shown("exportFLANNEL_SUBNET=10.244.6.1/24\n")).toEqual([undefined, undefined]);
  });

  it("unquotes only quotes: a value starting and ending with the same other character is kept whole", () => {
    expect(shown("FLANNEL_SUBNET=10.244.8.1/21\nFLANNEL_IPV6_SUBNET=fd00:8::1/64\n")).toEqual(["10.244.8.0/21", "fd00:8::/64"]);
    expect(shown("FLANNEL_SUBNET=''\n")).toEqual([undefined, undefined]);
  });

  it("drops a comment after any run of whitespace", () => {
    expect(shown("FLANNEL_SUBNET=10.244.7.1/24   # three spaces\nFLANNEL_IPV6_SUBNET=fd00:7::1/64 \t #\n")).toEqual(["10.244.7.0/24", "fd00:7::/64"]);
  });
});
