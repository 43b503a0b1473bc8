import { Ajv } from "ajv";
import { describe, expect, it } from "vitest";
import type { CompiledValidator } from "../lib/cni/config.js";
import { CniError } from "../lib/errors/cni.js";
import { formatCidr, parseCidr, type ParsedCidr } from "../lib/ip/ip.js";
import {
  chooseSubnet,
  configKey,
  formatLeaseValue,
  joinKey,
  parseLeaseValue,
  parseSubnetKey,
  parseVxlanBackendData,
  subnetKey,
  subnetsKeyPrefix,
  vxlanBackendData,
  type Lease,
  type LeaseSubnets,
} from "./lease.js";
import { agentNetworkConfigSchema } from "./network-config.schema.js";
import { parseNetworkConfig, type NetworkConfig } from "./network-config.js";

const validate: CompiledValidator = new Ajv({ useDefaults: true, strict: true, allErrors: false }).compile(agentNetworkConfigSchema);
const config = (c: unknown): NetworkConfig => parseNetworkConfig(JSON.stringify(c), validate, "/coreos.com/network/config");

const cidr = (s: string): ParsedCidr => parseCidr(s)!;
const v4 = (s: string): LeaseSubnets => ({ ipv4: cidr(s) });
const lease = (subnet: string, publicIP: string): Lease => ({ subnets: v4(subnet), attrs: { publicIP, publicIPv6: null, backendType: "host-gw" } });
const shown = (s: LeaseSubnets) => [s.ipv4 && formatCidr(s.ipv4), s.ipv6 && formatCidr(s.ipv6)].filter(Boolean).join(" ");
const first = () => 0;
/** The error chooseSubnet throws, checked to be a CniError (a bare `toThrow(message)` also passes when undefined is thrown). */
const refusal = (choose: () => unknown): string => {
  try {
    choose();
  } catch (err) {
    expect(err).toBeInstanceOf(CniError);
    return `${(err as CniError).code} ${(err as CniError).message}`;
  }
  return "accepted";
};

describe("keys", () => {
  it("are flanneld's: path.Join of the prefix, subnets and the subnet", () => {
    expect(configKey("/coreos.com/network")).toBe("/coreos.com/network/config");
    expect(configKey("/coreos.com/network/")).toBe("/coreos.com/network/config");
    expect(subnetsKeyPrefix("/coreos.com/network")).toBe("/coreos.com/network/subnets/");
    expect(subnetKey("/coreos.com/network", v4("10.244.1.0/24"))).toBe("/coreos.com/network/subnets/10.244.1.0-24");
    expect(subnetKey("//weft//net/", v4("10.5.34.0/24"))).toBe("/weft/net/subnets/10.5.34.0-24");
    expect(subnetKey("/coreos.com/network", { ipv4: cidr("10.5.34.0/24"), ipv6: cidr("fc00:0:0:0::/64") })).toBe(
      "/coreos.com/network/subnets/10.5.34.0-24&fc00::-64",
    );
    expect(subnetKey("/coreos.com/network", { ipv6: cidr("fd00:10:244:1::/64") })).toBe("/coreos.com/network/subnets/0.0.0.0-0&fd00:10:244:1::-64");
  });

  it("join as Go's path.Join", () => {
    expect(joinKey("/a/./b/../c", "d")).toBe("/a/c/d");
    expect(joinKey("a", "", "b")).toBe("a/b");
    expect(joinKey("/", "..")).toBe("/");
    expect(joinKey("..", "a")).toBe("../a");
    expect(joinKey("")).toBe(".");
    expect(joinKey("", "subnets")).toBe("subnets");
    expect(joinKey("../..", "a")).toBe("../../a");
    expect(joinKey("a/../..", "b")).toBe("../b");
  });

  it("parse back, and anything else under the prefix is not a lease", () => {
    const parsed = (key: string) => {
      const s = parseSubnetKey("/coreos.com/network", key);
      return s && shown(s);
    };
    expect(parsed("/coreos.com/network/subnets/10.244.1.0-24")).toBe("10.244.1.0/24");
    expect(parsed("/coreos.com/network/subnets/10.5.34.0-24&fc00::-64")).toBe("10.5.34.0/24 fc00::/64");
    expect(parsed("/coreos.com/network/subnets/0.0.0.0-0&fd00::-64")).toBe("fd00::/64");
    expect(parsed("/coreos.com/network/config")).toBeUndefined();
    expect(parsed("/coreos.com/network/subnets/10.244.1.0")).toBeUndefined();
    expect(parsed("/coreos.com/network/subnets/10x244.1.0-24")).toBeUndefined();
    expect(parsed("/coreos.com/network/subnets/10.244.1.0-33")).toBeUndefined();
    expect(parsed("/coreos.com/network/subnets/300.244.1.0-24")).toBeUndefined();
    expect(parsed("/coreos.com/network/subnets/10.244.1.0-24&fc00::-129")).toBeUndefined();
    expect(parsed("/other/subnets/10.244.1.0-24")).toBeUndefined();
    expect(parsed("/coreos.com/network/subnetz/10.244.1.0-24")).toBeUndefined();
  });
});

describe("lease values", () => {
  const VXLAN = '{"PublicIP":"192.168.64.3","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"c6:d2:32:6f:8f:44"}}';

  it("are written byte for byte as flanneld writes them", () => {
    expect(
      formatLeaseValue({
        publicIP: "192.168.64.3",
        publicIPv6: null,
        backendType: "vxlan",
        backendData: vxlanBackendData({ vni: 1, vtepMAC: "c6:d2:32:6f:8f:44" }),
      }),
    ).toBe(VXLAN);
    expect(formatLeaseValue({ publicIP: "10.0.0.2", publicIPv6: null, backendType: "host-gw" })).toBe(
      '{"PublicIP":"10.0.0.2","PublicIPv6":null,"BackendType":"host-gw"}',
    );
    expect(formatLeaseValue({ publicIP: "10.0.0.2", publicIPv6: null })).toBe('{"PublicIP":"10.0.0.2","PublicIPv6":null}');
    expect(
      formatLeaseValue({
        publicIP: "10.0.0.2",
        publicIPv6: "fd00::2",
        backendType: "vxlan",
        backendData: vxlanBackendData({ vni: 1, vtepMAC: "aa:bb:cc:dd:ee:01" }),
        backendV6Data: vxlanBackendData({ vni: 1, vtepMAC: "aa:bb:cc:dd:ee:02" }),
      }),
    ).toBe(
      '{"PublicIP":"10.0.0.2","PublicIPv6":"fd00::2","BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"aa:bb:cc:dd:ee:01"},' +
        '"BackendV6Data":{"VNI":1,"VtepMAC":"aa:bb:cc:dd:ee:02"}}',
    );
  });

  it("carry a VNI as flanneld's uint16 does", () => {
    expect(vxlanBackendData({ vni: 70000, vtepMAC: "c6:d2:32:6f:8f:44" })).toEqual({ VNI: 4464, VtepMAC: "c6:d2:32:6f:8f:44" });
  });

  it("read back to what was written", () => {
    const attrs = parseLeaseValue(VXLAN, "k");
    expect(attrs).toEqual({
      publicIP: "192.168.64.3",
      publicIPv6: null,
      backendType: "vxlan",
      backendData: { VNI: 1, VtepMAC: "c6:d2:32:6f:8f:44" },
    });
    expect(formatLeaseValue(attrs)).toBe(VXLAN);
    expect(parseVxlanBackendData(attrs.backendData, "k")).toEqual({ vni: 1, vtepMAC: "c6:d2:32:6f:8f:44" });
    const hostGw = '{"PublicIP":"10.0.0.2","PublicIPv6":null,"BackendType":"host-gw","BackendData":null}';
    expect(formatLeaseValue(parseLeaseValue(hostGw, "k"))).toBe(hostGw);
  });

  it("are read as Go reads them: keys ignoring case, addresses in canonical form, missing PublicIP as 0.0.0.0", () => {
    expect(parseLeaseValue('{"publicip":"10.0.0.2","PUBLICIPV6":"fd00:0::2","backendtype":"vxlan","Other":1}', "k")).toEqual({
      publicIP: "10.0.0.2",
      publicIPv6: "fd00::2",
      backendType: "vxlan",
    });
    expect(parseLeaseValue('{"PublicIPv6":"fd00::2"}', "k")).toEqual({ publicIP: "0.0.0.0", publicIPv6: "fd00::2" });
    expect(parseVxlanBackendData({ vni: 7, vtepmac: "C6-D2-32-6F-8F-44" }, "k")).toEqual({ vni: 7, vtepMAC: "c6:d2:32:6f:8f:44" });
  });

  it("that are malformed are refused, naming the key and field", () => {
    const refused = (value: string) => {
      try {
        parseLeaseValue(value, "/coreos.com/network/subnets/10.244.1.0-24");
      } catch (err) {
        return (err as Error).message;
      }
      return "accepted";
    };
    expect(refused("{")).toMatch(/^lease \/coreos\.com\/network\/subnets\/10\.244\.1\.0-24: not valid JSON \(/);
    expect(refused("[]")).toBe("lease /coreos.com/network/subnets/10.244.1.0-24: not a JSON object");
    expect(refused('{"PublicIP":"fd00::1"}')).toBe('lease /coreos.com/network/subnets/10.244.1.0-24: PublicIP "fd00::1" is not an IPv4 address');
    expect(refused('{"PublicIP":"10.0.0.1","PublicIPv6":5}')).toBe(
      "lease /coreos.com/network/subnets/10.244.1.0-24: PublicIPv6 5 is not an IPv6 address",
    );
    expect(refused('{"PublicIP":"10.0.0.1","BackendType":1}')).toBe("lease /coreos.com/network/subnets/10.244.1.0-24: BackendType 1 is not a string");
    expect(() => parseVxlanBackendData(null, "k")).toThrow("lease k: BackendData null is not a vxlan backend's object");
    expect(() => parseVxlanBackendData({ VNI: 1 }, "k")).toThrow("lease k: BackendData.VtepMAC undefined is not a MAC address");
    expect(() => parseVxlanBackendData({ VNI: 70000, VtepMAC: "c6:d2:32:6f:8f:44" }, "k")).toThrow(
      "lease k: BackendData.VNI 70000 is not a 16-bit unsigned integer",
    );
    expect(() => parseVxlanBackendData({ VNI: 1, VtepMAC: "c6:d2:32:6f:8f" }, "k")).toThrow(
      'lease k: BackendData.VtepMAC "c6:d2:32:6f:8f" is not a MAC address',
    );
  });
});

describe("chooseSubnet", () => {
  const net16 = config({ Network: "10.244.0.0/16", Backend: { Type: "host-gw" } });
  const small = config({ Network: "10.0.0.0/28", Backend: { Type: "host-gw" } });

  it("takes over the lease that has this node's public address", () => {
    const own = lease("10.244.7.0/24", "10.0.0.2");
    const choice = chooseSubnet({
      config: net16,
      leases: [lease("10.244.1.0/24", "10.0.0.1"), own],
      publicIP: "10.0.0.2",
      previous: v4("10.244.9.0/24"),
    });
    expect(choice).toEqual({ reason: "own-lease", subnets: own.subnets, lease: own });
  });

  it("replaces an own lease that no longer fits the config, and names it for deletion", () => {
    const own = lease("10.245.7.0/24", "10.0.0.2");
    const choice = chooseSubnet({ config: net16, leases: [own], publicIP: "10.0.0.2", random: first });
    expect(choice.reason).toBe("free");
    expect(shown(choice.subnets)).toBe("10.244.1.0/24");
    expect(choice).toMatchObject({ staleOwnLease: own });
  });

  it("reuses the previous run's subnet when it is free and in range", () => {
    const choice = chooseSubnet({ config: net16, leases: [lease("10.244.1.0/24", "10.0.0.1")], publicIP: "10.0.0.2", previous: v4("10.244.9.0/24") });
    expect(choice.reason).toBe("previous");
    expect(shown(choice.subnets)).toBe("10.244.9.0/24");
  });

  it("does not reuse a previous subnet that is taken, overlapped, out of range or of another length", () => {
    const pick = (previous: string, leases: Lease[] = []) =>
      chooseSubnet({ config: net16, leases, publicIP: "10.0.0.2", previous: v4(previous), random: first }).reason;
    expect(pick("10.244.9.0/24", [lease("10.244.9.0/24", "10.0.0.1")])).toBe("free");
    expect(pick("10.244.9.0/24", [lease("10.244.8.0/23", "10.0.0.1")])).toBe("free");
    expect(pick("10.244.0.0/24")).toBe("free");
    expect(pick("10.245.9.0/24")).toBe("free");
    expect(pick("10.244.9.0/25")).toBe("free");
  });

  it("picks at random among the first 100 free subnets from SubnetMin", () => {
    const leases = [lease("10.244.1.0/24", "10.0.0.1"), lease("10.244.3.0/24", "10.0.0.3")];
    const offered: number[] = [];
    const choice = chooseSubnet({
      config: net16,
      leases,
      publicIP: "10.0.0.2",
      random: (n) => {
        offered.push(n);
        return 1;
      },
    });
    expect(offered).toEqual([100]);
    expect(shown(choice.subnets)).toBe("10.244.4.0/24");
    expect(shown(chooseSubnet({ config: net16, leases, publicIP: "10.0.0.2", random: (n) => n - 1 }).subnets)).toBe("10.244.102.0/24");
    expect(shown(chooseSubnet({ config: net16, leases, publicIP: "10.0.0.2", random: first }).subnets)).toBe("10.244.2.0/24");
  });

  it("walks past a lease of a larger subnet (an older SubnetLen or a reservation)", () => {
    const choice = chooseSubnet({ config: net16, leases: [lease("10.244.0.0/20", "10.0.0.9")], publicIP: "10.0.0.2", random: first });
    expect(shown(choice.subnets)).toBe("10.244.16.0/24");
  });

  it("keeps within SubnetMin and SubnetMax", () => {
    const bounded = config({ Network: "10.244.0.0/16", SubnetMin: "10.244.10.0", SubnetMax: "10.244.11.0", Backend: { Type: "vxlan" } });
    const offered: number[] = [];
    const choice = chooseSubnet({
      config: bounded,
      leases: [],
      random: (n) => {
        offered.push(n);
        return n - 1;
      },
    });
    expect(offered).toEqual([2]);
    expect(shown(choice.subnets)).toBe("10.244.11.0/24");
  });

  it("picks both families for dual stack, and reuses both previous subnets", () => {
    const dual = config({ Network: "10.244.0.0/16", EnableIPv6: true, IPv6Network: "fd00:10:244::/56", Backend: { Type: "vxlan" } });
    const taken: Lease = {
      subnets: { ipv4: cidr("10.244.1.0/24"), ipv6: cidr("fd00:10:244:1::/64") },
      attrs: { publicIP: "10.0.0.1", publicIPv6: "fd00::1", backendType: "vxlan" },
    };
    expect(shown(chooseSubnet({ config: dual, leases: [taken], publicIP: "10.0.0.2", random: first }).subnets)).toBe(
      "10.244.2.0/24 fd00:10:244:2::/64",
    );
    const previous = { ipv4: cidr("10.244.5.0/24"), ipv6: cidr("fd00:10:244:5::/64") };
    expect(chooseSubnet({ config: dual, leases: [taken], publicIP: "10.0.0.2", previous }).reason).toBe("previous");
    // An IPv4-only previous subnet does not fit a dual-stack config.
    expect(chooseSubnet({ config: dual, leases: [taken], publicIP: "10.0.0.2", previous: v4("10.244.5.0/24"), random: first }).reason).toBe("free");
  });

  it("finds an IPv6-only node's own lease by its IPv6 address, not by PublicIP 0.0.0.0", () => {
    const v6 = config({ EnableIPv4: false, EnableIPv6: true, IPv6Network: "fd00::/48", Backend: { Type: "host-gw" } });
    const other: Lease = {
      subnets: { ipv6: cidr("fd00:0:0:1::/64") },
      attrs: { publicIP: "0.0.0.0", publicIPv6: "fd01::1", backendType: "host-gw" },
    };
    const own: Lease = { subnets: { ipv6: cidr("fd00:0:0:2::/64") }, attrs: { publicIP: "0.0.0.0", publicIPv6: "fd01::2", backendType: "host-gw" } };
    expect(chooseSubnet({ config: v6, leases: [other, own], publicIP: "0.0.0.0", publicIPv6: "fd01::2" })).toMatchObject({
      reason: "own-lease",
      lease: own,
    });
  });

  it("says how many subnets the network holds and which are taken when none is free", () => {
    const leases = [lease("10.0.0.4/30", "10.0.0.101"), lease("10.0.0.8/30", "10.0.0.102"), lease("10.0.0.12/30", "10.0.0.103")];
    expect(refusal(() => chooseSubnet({ config: small, leases, publicIP: "10.0.0.104" }))).toContain(
      "no free subnet in Network 10.0.0.0/28: it holds 3 subnets of /30 from 10.0.0.4 to 10.0.0.12, all taken by 3 leases " +
        "(10.0.0.4-10.0.0.15); widen the network or SubnetMin/SubnetMax, or delete the leases of nodes that are gone",
    );
    const sparse: Lease[] = [];
    for (let i = 1; i <= 255; i += 2) sparse.push(lease(`10.244.${i}.0/24`, `10.1.0.${i}`));
    for (let i = 2; i <= 255; i += 2) sparse.push(lease(`10.244.${i}.0/25`, `10.2.0.${i}`), lease(`10.244.${i}.128/25`, `10.3.0.${i}`));
    expect(refusal(() => chooseSubnet({ config: net16, leases: sparse, publicIP: "10.0.0.250" }))).toContain(
      "no free subnet in Network 10.244.0.0/16: it holds 255 subnets of /24 from 10.244.1.0 to 10.244.255.0, all taken by 382 leases " +
        "(10.244.1.0-10.244.255.255); widen the network or SubnetMin/SubnetMax, or delete the leases of nodes that are gone",
    );
    const gappy = [lease("10.0.0.4/30", "10.0.0.101"), lease("10.0.0.12/30", "10.0.0.103")];
    const bounded = config({ Network: "10.0.0.0/28", SubnetMax: "10.0.0.4", Backend: { Type: "host-gw" } });
    expect(refusal(() => chooseSubnet({ config: bounded, leases: gappy, publicIP: "10.0.0.104" }))).toContain(
      "no free subnet in Network 10.0.0.0/28: it holds 1 subnets of /30 from 10.0.0.4 to 10.0.0.4, all taken by 1 leases (10.0.0.4-10.0.0.7);",
    );
  });

  it("walks 5,000 leases to the first free subnet, past the leased ranges", () => {
    const wide = config({ Network: "10.0.0.0/8", Backend: { Type: "vxlan" } });
    const leases: Lease[] = [];
    for (let i = 1; i <= 5000; i++) leases.push(lease(`10.${i >> 8}.${i & 255}.0/24`, `192.168.${i >> 8}.${i & 255}`));
    expect(shown(chooseSubnet({ config: wide, leases, publicIP: "172.16.0.1", random: first }).subnets)).toBe("10.19.137.0/24");
  });
});

describe("edges", () => {
  const parsed = (name: string) => {
    const s = parseSubnetKey("/coreos.com/network", `/coreos.com/network/subnets/${name}`);
    return s && shown(s);
  };

  it("of keys: every length, and nothing around the name", () => {
    expect(parsed("10.244.1.1-32")).toBe("10.244.1.1/32");
    expect(parsed("0.0.0.0-8")).toBe("0.0.0.0/8");
    expect(parsed("10.244.1.0-24&fc00::1-128")).toBe("10.244.1.0/24 fc00::1/128");
    expect(parsed("10.244.1.128-25")).toBe("10.244.1.128/25");
    // Only 0.0.0.0-0 is the placeholder of an IPv6-only lease; another address with length 0 is what the key says.
    expect(parsed("10.0.0.0-0")).toBe("10.0.0.0/0");
    for (const bad of [
      "0.0.0.0-0",
      "x10.244.1.0-24",
      "10.244.1.0-24x",
      "10.244.1.0-24&fc00::-64x",
      "10.244.1.0-24&fg00::-64",
      "10.244.1-24",
      "10.244.1.0-24&10.0.0.0-8",
      "10.244.1.0-24&fc00-64",
      "10.244.1.0-24&1:2:3-64",
    ]) {
      expect(parsed(bad)).toBeUndefined();
    }
  });

  it("of values: null fields, and the V6 data only when present", () => {
    expect(() => parseLeaseValue("null", "k")).toThrow("lease k: not a JSON object");
    expect(() => parseLeaseValue('"x"', "k")).toThrow("lease k: not a JSON object");
    expect(parseLeaseValue('{"PublicIP":null,"PublicIPv6":null,"BackendType":null}', "k")).toEqual({ publicIP: "0.0.0.0", publicIPv6: null });
    const v6 = '{"PublicIP":"10.0.0.2","PublicIPv6":null,"BackendType":"vxlan","BackendV6Data":null}';
    expect(formatLeaseValue(parseLeaseValue(v6, "k"))).toBe(v6);
    expect(Object.keys(parseLeaseValue('{"PublicIP":"10.0.0.2"}', "k"))).toEqual(["publicIP", "publicIPv6"]);
  });

  it("of vxlan data: the VNI's range and type, the MAC's whole form", () => {
    const mac = "c6:d2:32:6f:8f:44";
    expect(parseVxlanBackendData({ VtepMAC: mac }, "k")).toEqual({ vni: 0, vtepMAC: mac });
    expect(parseVxlanBackendData({ VNI: 65535, VtepMAC: mac }, "k").vni).toBe(65535);
    for (const vni of [-1, 1.5, "1", 65536]) {
      expect(() => parseVxlanBackendData({ VNI: vni, VtepMAC: mac }, "k")).toThrow(
        `lease k: BackendData.VNI ${JSON.stringify(vni)} is not a 16-bit unsigned integer`,
      );
    }
    for (const bad of [`x${mac}`, `${mac}x`, "c6:d2-32:6f:8f:44", 5]) {
      expect(() => parseVxlanBackendData({ VNI: 1, VtepMAC: bad }, "k")).toThrow(
        `lease k: BackendData.VtepMAC ${JSON.stringify(bad)} is not a MAC address`,
      );
    }
    expect(() => parseVxlanBackendData([], "k")).toThrow("lease k: BackendData [] is not a vxlan backend's object");
    expect(() => parseVxlanBackendData("x", "k")).toThrow(`lease k: BackendData "x" is not a vxlan backend's object`);
    expect(() => parseVxlanBackendData({ VNI: 1, VtepMAC: [mac] }, "k")).toThrow(`lease k: BackendData.VtepMAC ["${mac}"] is not a MAC address`);
    // Other fields are ignored, as Go's decoder does.
    expect(parseVxlanBackendData({ VNI: 1, VtepMAC: mac, Other: 2 }, "k")).toEqual({ vni: 1, vtepMAC: mac });
  });

  const net16 = config({ Network: "10.244.0.0/16", Backend: { Type: "host-gw" } });

  it("of the walk: adjacent and unsorted leases, and a lease at the very end", () => {
    const leases = [lease("10.244.3.0/24", "a"), lease("10.244.1.0/24", "b"), lease("10.244.2.0/24", "c"), lease("10.244.2.0/25", "d")];
    expect(shown(chooseSubnet({ config: net16, leases, random: first }).subnets)).toBe("10.244.4.0/24");
    const offered: number[] = [];
    chooseSubnet({
      config: config({ Network: "10.0.0.0/28", Backend: { Type: "host-gw" } }),
      leases: [lease("10.0.0.12/30", "a"), lease("10.0.0.4/30", "b")],
      random: (n) => {
        offered.push(n);
        return 0;
      },
    });
    expect(offered).toEqual([1]);
    // A lease inside a larger one, a lease of the other family, single addresses at a subnet's first and last address.
    const pick = (leases: Lease[]) => shown(chooseSubnet({ config: net16, leases, random: first }).subnets);
    expect(pick([lease("10.244.0.0/20", "a"), lease("10.244.1.0/24", "b")])).toBe("10.244.16.0/24");
    const v6Lease: Lease = { subnets: { ipv6: cidr("fd00::/64") }, attrs: { publicIP: "0.0.0.0", publicIPv6: "fd00::9" } };
    expect(pick([v6Lease, lease("10.244.1.0/24", "a")])).toBe("10.244.2.0/24");
    expect(pick([lease("10.244.1.0/32", "a")])).toBe("10.244.2.0/24");
    expect(pick([lease("10.244.1.255/32", "a")])).toBe("10.244.2.0/24");
  });

  it("of an IPv6-only network: a free subnet picked, its exhaustion named IPv6Network", () => {
    const v6 = config({ EnableIPv4: false, EnableIPv6: true, IPv6Network: "fd00::/62", Backend: { Type: "host-gw" } });
    const v6Lease = (subnet: string, publicIPv6: string): Lease => ({ subnets: { ipv6: cidr(subnet) }, attrs: { publicIP: "0.0.0.0", publicIPv6 } });
    const choice = chooseSubnet({ config: v6, leases: [v6Lease("fd00:0:0:1::/64", "fd01::1")], random: first });
    expect(choice).toEqual({ reason: "free", subnets: { ipv6: cidr("fd00:0:0:2::/64") } });
    const full = [v6Lease("fd00:0:0:1::/64", "fd01::1"), v6Lease("fd00:0:0:2::/64", "fd01::2"), v6Lease("fd00:0:0:3::/64", "fd01::3")];
    expect(refusal(() => chooseSubnet({ config: v6, leases: [...full, lease("10.244.1.0/24", "10.0.0.1")] }))).toBe(
      "102 no free subnet in IPv6Network fd00::/62: it holds 3 subnets of /64 from fd00:0:0:1:: to fd00:0:0:3::, all taken by 3 leases " +
        "(fd00:0:0:1::-fd00::3:ffff:ffff:ffff:ffff); widen the network or SubnetMin/SubnetMax, or delete the leases of nodes that are gone",
    );
  });

  it("of the previous subnet: a lease right beside it does not take it, one of another family does not either", () => {
    const besides = [lease("10.244.8.0/24", "a"), lease("10.244.10.0/24", "b")];
    const v6Lease: Lease = { subnets: { ipv6: cidr("fd00::/64") }, attrs: { publicIP: "0.0.0.0", publicIPv6: "fd00::9" } };
    expect(chooseSubnet({ config: net16, leases: [...besides, v6Lease], previous: v4("10.244.9.0/24") }).reason).toBe("previous");
    expect(chooseSubnet({ config: net16, leases: [], previous: v4("10.244.255.0/24") }).reason).toBe("previous");
    expect(chooseSubnet({ config: net16, leases: [], previous: v4("10.244.1.0/24") }).reason).toBe("previous");
    expect(chooseSubnet({ config: net16, leases: [], previous: v4("10.244.1.128/24"), random: first }).reason).toBe("free");
    // A single leased address at its first or last address takes it.
    for (const taken of ["10.244.9.0/32", "10.244.9.255/32"]) {
      expect(chooseSubnet({ config: net16, leases: [lease(taken, "a")], previous: v4("10.244.9.0/24"), random: first }).reason).toBe("free");
    }
  });

  it("of a family the config does not enable: a subnet of it makes the own lease stale and the previous subnets unused, as flanneld", () => {
    // flanneld's isIPv6SubnetConfigCompat: without EnableIPv6, only a lease or subnet.env without an IPv6 subnet fits.
    const dualOwn: Lease = {
      subnets: { ipv4: cidr("10.244.7.0/24"), ipv6: cidr("fd00:10:244:7::/64") },
      attrs: { publicIP: "10.0.0.2", publicIPv6: "fd00::2", backendType: "vxlan" },
    };
    expect(chooseSubnet({ config: net16, leases: [dualOwn], publicIP: "10.0.0.2", random: first })).toEqual({
      reason: "free",
      subnets: v4("10.244.1.0/24"),
      staleOwnLease: dualOwn,
    });
    const previous = { ipv4: cidr("10.244.9.0/24"), ipv6: cidr("fd00:10:244:9::/64") };
    expect(chooseSubnet({ config: net16, leases: [], previous, random: first })).toEqual({ reason: "free", subnets: v4("10.244.1.0/24") });
  });

  it("of a dual-stack previous subnet: taken in either family, it is not reused", () => {
    const dual = config({ Network: "10.244.0.0/16", EnableIPv6: true, IPv6Network: "fd00:10:244::/56", Backend: { Type: "vxlan" } });
    const taken: Lease = {
      subnets: { ipv4: cidr("10.244.1.0/24"), ipv6: cidr("fd00:10:244:1::/64") },
      attrs: { publicIP: "10.0.0.1", publicIPv6: "fd00::1", backendType: "vxlan" },
    };
    const reason = (ipv4: string, ipv6: string) =>
      chooseSubnet({ config: dual, leases: [taken], previous: { ipv4: cidr(ipv4), ipv6: cidr(ipv6) }, random: first }).reason;
    expect(reason("10.244.5.0/24", "fd00:10:244:5::/64")).toBe("previous");
    expect(reason("10.244.5.0/24", "fd00:10:244:1::/64")).toBe("free");
    expect(reason("10.244.1.0/24", "fd00:10:244:5::/64")).toBe("free");
  });

  it("of the own lease: found by address only, and kept out of the taken ones when stale", () => {
    const stale = lease("10.244.0.0/16", "10.0.0.2");
    const choice = chooseSubnet({ config: net16, leases: [stale, lease("10.244.1.0/24", "10.0.0.3")], publicIP: "10.0.0.2", random: first });
    expect(shown(choice.subnets)).toBe("10.244.2.0/24");
    expect(chooseSubnet({ config: net16, leases: [lease("10.244.1.0/24", "10.0.0.3")], random: first }).reason).toBe("free");
  });

  it("of the exhaustion message: ranges past the tenth counted, ranges outside the pool left out", () => {
    const leases: Lease[] = [lease("10.245.0.0/16", "z")];
    for (let i = 1; i <= 255; i += 2) leases.push(lease(`10.244.${i}.0/24`, `a${i}`));
    const bounded = config({
      Network: "10.244.0.0/16",
      SubnetMin: "10.244.1.0",
      SubnetMax: "10.244.23.0",
      SubnetLen: 24,
      Backend: { Type: "host-gw" },
    });
    const filled = [...leases];
    for (let i = 2; i <= 22; i += 2) filled.push(lease(`10.244.${i}.0/24`, `b${i}`));
    expect(refusal(() => chooseSubnet({ config: bounded, leases: filled }))).toContain(
      "no free subnet in Network 10.244.0.0/16: it holds 23 subnets of /24 from 10.244.1.0 to 10.244.23.0, all taken by 23 leases (10.244.1.0-10.244.23.255);",
    );
    const quarters: Lease[] = [];
    for (let i = 1; i <= 23; i++) quarters.push(lease(`10.244.${i}.0/26`, `q${i}`));
    const shownRanges = Array.from({ length: 10 }, (_, k) => `10.244.${k + 1}.0-10.244.${k + 1}.63`).join(", ");
    expect(refusal(() => chooseSubnet({ config: bounded, leases: quarters }))).toContain(
      `no free subnet in Network 10.244.0.0/16: it holds 23 subnets of /24 from 10.244.1.0 to 10.244.23.0, all taken by 23 leases (${shownRanges} and 13 more ranges);`,
    );
    const ten = config({ Network: "10.244.0.0/16", SubnetMin: "10.244.1.0", SubnetMax: "10.244.10.0", Backend: { Type: "host-gw" } });
    expect(refusal(() => chooseSubnet({ config: ten, leases: quarters.slice(0, 10) }))).toContain(
      `no free subnet in Network 10.244.0.0/16: it holds 10 subnets of /24 from 10.244.1.0 to 10.244.10.0, all taken by 10 leases (${shownRanges});`,
    );
  });

  it("of the exhaustion message: leases counted and ranges shown when they touch the pool, at its first and last address", () => {
    const pool = config({ Network: "10.244.0.0/16", SubnetMin: "10.244.2.0", SubnetMax: "10.244.4.0", Backend: { Type: "host-gw" } });
    const leases = [
      lease("10.244.0.0/24", "before"),
      lease("10.244.2.0/32", "at the first address"),
      lease("10.244.3.0/24", "inside"),
      lease("10.244.4.255/32", "at the last address"),
      lease("10.244.5.0/32", "right after"),
    ];
    expect(refusal(() => chooseSubnet({ config: pool, leases }))).toContain(
      "it holds 3 subnets of /24 from 10.244.2.0 to 10.244.4.0, all taken by 3 leases " +
        "(10.244.2.0-10.244.2.0, 10.244.3.0-10.244.3.255, 10.244.4.255-10.244.5.0);",
    );
  });

  it("picks with Math.random by default, within the free subnets, not always the same one", () => {
    const small = config({ Network: "10.0.0.0/28", Backend: { Type: "host-gw" } });
    const picked = new Set<string>();
    // 40 draws among 3 subnets: all the same by chance about once in 10^18 runs.
    for (let i = 0; i < 40; i++) picked.add(shown(chooseSubnet({ config: small, leases: [] }).subnets));
    expect([...picked].every((p) => ["10.0.0.4/30", "10.0.0.8/30", "10.0.0.12/30"].includes(p))).toBe(true);
    expect(picked.size).toBeGreaterThan(1);
  });
});
