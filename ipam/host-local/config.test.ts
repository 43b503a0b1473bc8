import { describe, expect, it } from "vitest";
import { hostLocal } from "../../gen/validators.js";
import { validateWith } from "../../lib/cni/config.js";
import { CniError } from "../../lib/errors/cni.js";
import type { SpecVersion } from "../../lib/cni/version.js";
import { formatAddress, formatRangeSet, formatValue } from "./allocator.js";
import { DEFAULT_DATA_DIR, loadIpamConfig, storeLocation, type HostLocalConf } from "./config.js";
import { parseResolvConf } from "./resolv-conf.js";

function conf(extra: Record<string, unknown>, ipam: Record<string, unknown> = {}): HostLocalConf {
  return validateWith<HostLocalConf>(hostLocal, {
    cniVersion: "1.0.0",
    name: "net",
    type: "bridge",
    ...extra,
    ipam: { type: "host-local", ...ipam },
  });
}

function load(ipam: Record<string, unknown>, extra: Record<string, unknown> = {}, args = new Map<string, string>(), version: SpecVersion = "1.0.0") {
  return loadIpamConfig(conf(extra, ipam), version, args);
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

describe("loadIpamConfig", () => {
  it("fills the reference's defaults for IPv4 and IPv6 ranges", () => {
    const ipam = load({ ranges: [[{ subnet: "10.244.1.0/24" }], [{ subnet: "fd00:10:244:1::/64" }]] });
    expect(ipam.rangeSets.map(formatRangeSet)).toEqual(["10.244.1.1-10.244.1.254", "fd00:10:244:1::1-fd00:10:244:1:ffff:ffff:ffff:ffff"]);
    expect(formatValue(4, ipam.rangeSets[0]![0]!.gateway)).toBe("10.244.1.1");
    expect(ipam.dataDir).toBe(DEFAULT_DATA_DIR);
    expect(ipam.network).toBe("net");
    expect(ipam.lockTimeoutMs).toBe(30_000);
    expect(ipam.routes).toEqual([]);
  });

  it("orders range sets as the reference: runtimeConfig.ipRanges, the legacy range, then ipam.ranges", () => {
    const ipam = load(
      { subnet: "10.2.0.0/24", rangeStart: "10.2.0.50", gateway: "10.2.0.254", ranges: [[{ subnet: "10.3.0.0/24" }]] },
      { runtimeConfig: { ipRanges: [[{ subnet: "10.1.0.0/24" }]] } },
    );
    expect(ipam.rangeSets.map(formatRangeSet)).toEqual(["10.1.0.1-10.1.0.254", "10.2.0.50-10.2.0.254", "10.3.0.1-10.3.0.254"]);
    expect(formatValue(4, ipam.rangeSets[1]![0]!.gateway)).toBe("10.2.0.254");
  });

  it("ignores legacy keys without a subnet and treats empty strings and nulls as unset", () => {
    const ipam = load({ rangeStart: "10.9.0.5", dataDir: "", ranges: [[{ subnet: "10.3.0.0/24", rangeStart: "", gateway: null }]] });
    expect(ipam.rangeSets.map(formatRangeSet)).toEqual(["10.3.0.1-10.3.0.254"]);
    expect(ipam.dataDir).toBe(DEFAULT_DATA_DIR);
  });

  it("collects requested addresses from CNI_ARGS, args.cni.ips and runtimeConfig.ips, in that order, once each", () => {
    const ipam = load(
      { ranges: [[{ subnet: "10.9.0.0/24" }], [{ subnet: "fd00::/64" }]] },
      { args: { cni: { ips: ["10.9.0.9/24", "fd00::0:9"] } }, runtimeConfig: { ips: ["10.9.0.8", "10.9.0.9"] } },
      new Map([["IP", "10.9.0.7"]]),
    );
    expect(ipam.requestedIps.map(formatAddress)).toEqual(["10.9.0.7", "10.9.0.9", "fd00::9", "10.9.0.8"]);
  });

  it("canonicalizes routes and keeps their optional fields", () => {
    const ipam = load({ subnet: "10.9.0.0/24", routes: [{ dst: "0.0.0.0/0" }, { dst: "fd00:0::/8", gw: "fd00::0:1", mtu: 1400 }] });
    expect(ipam.routes).toEqual([{ dst: "0.0.0.0/0" }, { dst: "fd00::/8", gw: "fd00::1", mtu: 1400 }]);
  });

  it("stores reservations under /var/lib/cni/networks unless dataDir says otherwise", () => {
    expect(load({ subnet: "10.9.0.0/24" }).dataDir).toBe("/var/lib/cni/networks");
    expect(load({ subnet: "10.9.0.0/24", dataDir: "/run/weft/ipam" }).dataDir).toBe("/run/weft/ipam");
  });

  it("passes resolvConf on only when it is set", () => {
    expect(load({ subnet: "10.9.0.0/24", resolvConf: "/etc/weft/resolv.conf" }).resolvConf).toBe("/etc/weft/resolv.conf");
    expect("resolvConf" in load({ subnet: "10.9.0.0/24" })).toBe(false);
    expect("resolvConf" in load({ subnet: "10.9.0.0/24", resolvConf: "" })).toBe(false);
  });

  it("accepts the smallest subnets that leave an address, a range of one address, and apart ranges in one set", () => {
    expect(load({ ranges: [[{ subnet: "10.9.0.0/30" }], [{ subnet: "fd00::/126" }]] }).rangeSets.map(formatRangeSet)).toEqual([
      "10.9.0.1-10.9.0.2",
      "fd00::1-fd00::3",
    ]);
    expect(load({ subnet: "10.9.0.0/24", rangeStart: "10.9.0.7", rangeEnd: "10.9.0.7" }).rangeSets.map(formatRangeSet)).toEqual([
      "10.9.0.7-10.9.0.7",
    ]);
    const set = [{ subnet: "10.9.0.0/24", rangeEnd: "10.9.0.99" }, { subnet: "10.9.0.0/24", rangeStart: "10.9.0.100" }, { subnet: "10.8.0.0/24" }];
    expect(load({ ranges: [set] }).rangeSets.map(formatRangeSet)).toEqual(["10.9.0.1-10.9.0.99,10.9.0.100-10.9.0.254,10.8.0.1-10.8.0.254"]);
  });

  it("accepts one IPv4 and one IPv6 range set with a 0.2.0 config", () => {
    const ipam = load({ ranges: [[{ subnet: "10.9.0.0/24" }], [{ subnet: "fd00::/64" }]] }, {}, new Map(), "0.2.0");
    expect(ipam.rangeSets.map(formatRangeSet)).toEqual(["10.9.0.1-10.9.0.254", "fd00::1-fd00::ffff:ffff:ffff:ffff"]);
    expect(load({ subnet: "10.9.0.0/24" }, {}, new Map(), "0.1.0").rangeSets).toHaveLength(1);
  });

  it("leaves out route fields that are unset or zero, as the reference's omitempty does", () => {
    const ipam = load({
      subnet: "10.9.0.0/24",
      routes: [
        { dst: "10.0.0.0/8", gw: null, mtu: 0 },
        { dst: "10.1.0.0/16", gw: "", advmss: 1360, priority: 5, table: 100, scope: 253 },
      ],
    });
    expect(ipam.routes).toStrictEqual([{ dst: "10.0.0.0/8" }, { dst: "10.1.0.0/16", advmss: 1360, priority: 5, table: 100, scope: 253 }]);
  });

  it("ignores an empty CNI_ARGS IP and an args object without cni", () => {
    expect(load({ subnet: "10.9.0.0/24" }, { args: {} }, new Map([["IP", ""]])).requestedIps).toEqual([]);
    expect(load({ subnet: "10.9.0.0/24" }, { args: { cni: null } }).requestedIps).toEqual([]);
  });

  it("reads only the store's location for DEL and GC, whatever the ranges say", () => {
    expect(storeLocation(conf({}, { subnet: "not a cidr", dataDir: "/d", lockTimeoutMs: 5 }))).toEqual({
      network: "net",
      dataDir: "/d",
      lockTimeoutMs: 5,
    });
  });

  describe("rejects with code 7, naming the field", () => {
    const cases: [string, Record<string, unknown>, Record<string, unknown>, RegExp][] = [
      ["no ranges", {}, {}, /no IP ranges specified/],
      ["an invalid CIDR", { ranges: [[{ subnet: "10.0.0.0/33" }]] }, {}, /ipam\.ranges\[0\]\[0\]\.subnet "10\.0\.0\.0\/33" is not a CIDR/],
      [
        "host bits",
        { ranges: [[{ subnet: "10.1.2.1/24" }]] },
        {},
        /ipam\.ranges\[0\]\[0\]\.subnet 10\.1\.2\.1\/24 has host bits set: .* network address is 10\.1\.2\.0/,
      ],
      [
        "a /31",
        { ranges: [[{ subnet: "10.1.2.0/31" }]] },
        {},
        /ipam\.ranges\[0\]\[0\]\.subnet 10\.1\.2\.0\/31 is too small to allocate from \(at most \/30\)/,
      ],
      ["a /127", { ranges: [[{ subnet: "fd00::/127" }]] }, {}, /too small to allocate from \(at most \/126\)/],
      [
        "rangeStart outside",
        { ranges: [[{ subnet: "10.1.3.0/24", rangeStart: "10.1.4.1" }]] },
        {},
        /ipam\.ranges\[0\]\[0\]\.rangeStart 10\.1\.4\.1 is not in ipam\.ranges\[0\]\[0\]\.subnet 10\.1\.3\.0\/24/,
      ],
      ["gateway outside", { subnet: "10.1.3.0/24", gateway: "10.1.4.1" }, {}, /ipam\.gateway 10\.1\.4\.1 is not in ipam\.subnet/],
      [
        "rangeEnd not an IP",
        { ranges: [[{ subnet: "10.1.3.0/24", rangeEnd: "10.1.3.x" }]] },
        {},
        /ipam\.ranges\[0\]\[0\]\.rangeEnd "10\.1\.3\.x" is not an IP address/,
      ],
      [
        "start after end",
        { ranges: [[{ subnet: "10.4.0.0/24", rangeStart: "10.4.0.20", rangeEnd: "10.4.0.10" }]] },
        {},
        /rangeStart 10\.4\.0\.20 is after ipam\.ranges\[0\]\[0\]\.rangeEnd 10\.4\.0\.10/,
      ],
      [
        "mixed families",
        { ranges: [[{ subnet: "10.5.0.0/24" }, { subnet: "fd00::/64" }]] },
        {},
        /ipam\.ranges\[0\]\[1\]\.subnet "fd00::\/64" is IPv6 but ipam\.ranges\[0\]\[0\]\.subnet is IPv4/,
      ],
      [
        "overlapping ranges",
        { ranges: [[{ subnet: "10.1.3.0/24" }, { subnet: "10.1.3.0/25" }]] },
        {},
        /ipam\.ranges\[0\]\[0\] \(10\.1\.3\.1-10\.1\.3\.254\) and ipam\.ranges\[0\]\[1\] \(10\.1\.3\.1-10\.1\.3\.126\) overlap/,
      ],
      [
        "overlapping sets",
        { ranges: [[{ subnet: "10.1.3.0/24" }], [{ subnet: "10.1.3.0/25" }]] },
        {},
        /range set 0 overlaps with 1 \(ipam\.ranges\[0\] and ipam\.ranges\[1\]\)/,
      ],
      [
        "a runtime range overlapping the legacy one",
        { subnet: "10.1.0.0/24" },
        { runtimeConfig: { ipRanges: [[{ subnet: "10.1.0.0/16" }]] } },
        /range set 0 overlaps with 1 \(runtimeConfig\.ipRanges\[0\] and ipam\)/,
      ],
      [
        "an IPv6 gateway in an IPv4 subnet",
        { ranges: [[{ subnet: "10.0.0.0/8", gateway: "::a00:1" }]] },
        {},
        /ipam\.ranges\[0\]\[0\]\.gateway ::a00:1 is not in ipam\.ranges\[0\]\[0\]\.subnet 10\.0\.0\.0\/8$/,
      ],
      [
        "a range set overlapping another in one of its ranges",
        {
          ranges: [
            [{ subnet: "10.1.0.0/24" }, { subnet: "10.2.0.0/24" }],
            [{ subnet: "10.2.0.0/25" }, { subnet: "10.3.0.0/24" }],
          ],
        },
        {},
        /range set 0 overlaps with 1/,
      ],
      [
        "a bad route gateway",
        { subnet: "10.1.0.0/24", routes: [{ dst: "10.0.0.0/8", gw: "10.1.0.x" }] },
        {},
        /ipam\.routes\[0\]\.gw "10\.1\.0\.x" is not an IP address/,
      ],
      [
        "a bad requested IP with a prefix length",
        { subnet: "10.1.0.0/24" },
        { runtimeConfig: { ips: ["10.1.0.5/24", "10.1.0.300/24"] } },
        /runtimeConfig\.ips\[1\] "10\.1\.0\.300\/24" is not an IP address/,
      ],
      ["a bad route", { subnet: "10.1.0.0/24", routes: [{ dst: "default" }] }, {}, /ipam\.routes\[0\]\.dst "default" is not a CIDR/],
      [
        "a bad requested IP",
        { subnet: "10.1.0.0/24" },
        { runtimeConfig: { ips: ["garbage"] } },
        /runtimeConfig\.ips\[0\] "garbage" is not an IP address/,
      ],
      [
        "a bad args IP",
        { subnet: "10.1.0.0/24" },
        { args: { cni: { ips: ["10.1.0.300"] } } },
        /args\.cni\.ips\[0\] "10\.1\.0\.300" is not an IP address/,
      ],
    ];
    it.each(cases)("%s", (_, ipam, extra, message) => {
      const err = failure(() => load(ipam, extra));
      expect(err.code).toBe(7);
      expect(err.message).toMatch(/^invalid network config: /);
      expect(err.message).toMatch(message);
    });

    it("two range sets of one family with a 0.2.0 config", () => {
      const err = failure(() => load({ ranges: [[{ subnet: "10.9.0.0/24" }], [{ subnet: "10.8.0.0/24" }]] }, {}, new Map(), "0.2.0"));
      expect(err.code).toBe(7);
      expect(err.message).toContain("CNI version 0.2.0 does not support more than 1 address per family");
      expect(err.details).toBe("use cniVersion 0.3.0 or newer for several range sets of one family");
    });

    it("with details that tell the operator what to do", () => {
      expect(failure(() => load({})).details).toBe("set ipam.ranges (a list of range sets), or the single-range ipam.subnet");
      expect(failure(() => load({ ranges: [[{ subnet: "10.5.0.0/24" }, { subnet: "fd00::/64" }]] })).details).toBe(
        "a range set holds ranges of one family; put the other family in a range set of its own",
      );
      expect(failure(() => load({ ranges: [[{ subnet: "10.1.3.0/24" }], [{ subnet: "10.1.3.0/25" }]] })).details).toBe(
        "an address can belong to one range set only",
      );
    });

    it("a key of the wrong type, through the schema", () => {
      const err = failure(() => conf({}, { ranges: [[{ subnet: 5 }]] }));
      expect(err.code).toBe(7);
      expect(err.message).toBe("invalid network config: ipam.ranges[0][0].subnet must be string (got 5)");
      expect(failure(() => validateWith(hostLocal, { name: "n" })).message).toBe("invalid network config: ipam is required");
      expect(failure(() => conf({}, { ranges: [[]] })).message).toContain("ipam.ranges[0] must NOT have fewer than 1 items");
    });
  });

  it("gives code 4 for an unparseable CNI_ARGS IP", () => {
    const err = failure(() => load({ subnet: "10.1.0.0/24" }, {}, new Map([["IP", "garbage"]])));
    expect(err.code).toBe(4);
    expect(err.message).toBe("CNI_ARGS: IP=garbage is not an IP address");
  });
});

describe("parseResolvConf", () => {
  it("reads nameservers, the last domain, search and options as the reference does", () => {
    const text = [
      "# comment",
      "; also a comment",
      "nameserver 10.96.0.10",
      "nameserver   fd00::a  ignored",
      "domain first.example",
      "domain cluster.local",
      "search a.svc.cluster.local svc.cluster.local\r",
      "search cluster.local",
      "options ndots:5 edns0",
      "nameserver",
      "sortlist 10.0.0.0/8",
      "",
    ].join("\n");
    expect(parseResolvConf(text)).toEqual({
      nameservers: ["10.96.0.10", "fd00::a"],
      domain: "cluster.local",
      search: ["a.svc.cluster.local", "svc.cluster.local", "cluster.local"],
      options: ["ndots:5", "edns0"],
    });
    expect(parseResolvConf("")).toEqual({});
  });
});
