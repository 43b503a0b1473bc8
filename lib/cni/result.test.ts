import { describe, expect, it } from "vitest";
import { formatResult, parseResult, resultAsVersion, type Result } from "./result.js";
import { SUPPORTED_VERSIONS } from "./version.js";

const dualStack: Result = {
  cniVersion: "1.1.0",
  interfaces: [
    { name: "cni0", mac: "6e:38:00:00:00:01" },
    { name: "veth9d4b87b0", mac: "9e:7c:00:00:00:02" },
    { name: "eth0", mac: "f6:e7:00:00:00:03", sandbox: "/run/netns/a" },
  ],
  ips: [
    { interface: 2, address: "10.244.1.2/24", gateway: "10.244.1.1" },
    { interface: 2, address: "fd00:10:244:1::2/64", gateway: "fd00:10:244:1::1" },
  ],
  routes: [
    { dst: "10.244.0.0/16" },
    { dst: "fd00:10:244::/56" },
    { dst: "0.0.0.0/0", gw: "10.244.1.1" },
    { dst: "::/0", gw: "fd00:10:244:1::1" },
  ],
};

describe("printing a result per version, as the Go libraries do", () => {
  it("1.1.0 and 1.0.0: keys sorted (types100 MarshalJSON goes through a map), empty dns left out", () => {
    for (const version of ["1.0.0", "1.1.0"]) {
      expect(formatResult(dualStack, version)).toBe(
        [
          "{",
          `    "cniVersion": "${version}",`,
          '    "interfaces": [',
          "        {",
          '            "mac": "6e:38:00:00:00:01",',
          '            "name": "cni0"',
          "        },",
          "        {",
          '            "mac": "9e:7c:00:00:00:02",',
          '            "name": "veth9d4b87b0"',
          "        },",
          "        {",
          '            "mac": "f6:e7:00:00:00:03",',
          '            "name": "eth0",',
          '            "sandbox": "/run/netns/a"',
          "        }",
          "    ],",
          '    "ips": [',
          "        {",
          '            "address": "10.244.1.2/24",',
          '            "gateway": "10.244.1.1",',
          '            "interface": 2',
          "        },",
          "        {",
          '            "address": "fd00:10:244:1::2/64",',
          '            "gateway": "fd00:10:244:1::1",',
          '            "interface": 2',
          "        }",
          "    ],",
          '    "routes": [',
          "        {",
          '            "dst": "10.244.0.0/16"',
          "        },",
          "        {",
          '            "dst": "fd00:10:244::/56"',
          "        },",
          "        {",
          '            "dst": "0.0.0.0/0",',
          '            "gw": "10.244.1.1"',
          "        },",
          "        {",
          '            "dst": "::/0",',
          '            "gw": "fd00:10:244:1::1"',
          "        }",
          "    ]",
          "}",
        ].join("\n"),
      );
    }
  });

  it("1.x keeps a non-empty dns and the 1.1 fields", () => {
    const printed = resultAsVersion(
      {
        interfaces: [{ name: "eth0", mtu: 1450, sandbox: "/x" }],
        ips: [{ address: "10.0.0.2/24" }],
        routes: [{ dst: "0.0.0.0/0", gw: "10.0.0.1", mtu: 1400, advmss: 1360, priority: 5, table: 100, scope: 0 }],
        dns: { nameservers: ["10.96.0.10"], search: ["svc.cluster.local"] },
      },
      "1.1.0",
    );
    expect(printed).toEqual({
      cniVersion: "1.1.0",
      dns: { nameservers: ["10.96.0.10"], search: ["svc.cluster.local"] },
      interfaces: [{ mtu: 1450, name: "eth0", sandbox: "/x" }],
      ips: [{ address: "10.0.0.2/24" }],
      routes: [{ advmss: 1360, dst: "0.0.0.0/0", gw: "10.0.0.1", mtu: 1400, priority: 5, table: 100 }],
    });
  });

  it.each(["0.3.0", "0.3.1", "0.4.0"])("%s: struct order, a version per IP, dns always there", (version) => {
    expect(formatResult(dualStack, version)).toBe(
      [
        "{",
        `    "cniVersion": "${version}",`,
        '    "interfaces": [',
        "        {",
        '            "name": "cni0",',
        '            "mac": "6e:38:00:00:00:01"',
        "        },",
        "        {",
        '            "name": "veth9d4b87b0",',
        '            "mac": "9e:7c:00:00:00:02"',
        "        },",
        "        {",
        '            "name": "eth0",',
        '            "mac": "f6:e7:00:00:00:03",',
        '            "sandbox": "/run/netns/a"',
        "        }",
        "    ],",
        '    "ips": [',
        "        {",
        '            "version": "4",',
        '            "interface": 2,',
        '            "address": "10.244.1.2/24",',
        '            "gateway": "10.244.1.1"',
        "        },",
        "        {",
        '            "version": "6",',
        '            "interface": 2,',
        '            "address": "fd00:10:244:1::2/64",',
        '            "gateway": "fd00:10:244:1::1"',
        "        }",
        "    ],",
        '    "routes": [',
        "        {",
        '            "dst": "10.244.0.0/16"',
        "        },",
        "        {",
        '            "dst": "fd00:10:244::/56"',
        "        },",
        "        {",
        '            "dst": "0.0.0.0/0",',
        '            "gw": "10.244.1.1"',
        "        },",
        "        {",
        '            "dst": "::/0",',
        '            "gw": "fd00:10:244:1::1"',
        "        }",
        "    ],",
        '    "dns": {}',
        "}",
      ].join("\n"),
    );
  });

  it("0.4.0 drops the 1.1-only interface fields", () => {
    const printed = resultAsVersion({ interfaces: [{ name: "eth0", mtu: 1450, socketPath: "/s", pciID: "0000:00:01.0" }] }, "0.4.0");
    expect(printed.interfaces).toEqual([{ name: "eth0" }]);
  });

  it.each(["0.1.0", "0.2.0"])("%s: first IPv4 and first IPv6 only, routes split by family", (version) => {
    const withSecondV4: Result = { ...dualStack, ips: [...dualStack.ips!, { interface: 2, address: "10.244.1.3/24" }] };
    expect(formatResult(withSecondV4, version)).toBe(
      [
        "{",
        `    "cniVersion": "${version}",`,
        '    "ip4": {',
        '        "ip": "10.244.1.2/24",',
        '        "gateway": "10.244.1.1",',
        '        "routes": [',
        "            {",
        '                "dst": "10.244.0.0/16"',
        "            },",
        "            {",
        '                "dst": "0.0.0.0/0",',
        '                "gw": "10.244.1.1"',
        "            }",
        "        ]",
        "    },",
        '    "ip6": {',
        '        "ip": "fd00:10:244:1::2/64",',
        '        "gateway": "fd00:10:244:1::1",',
        '        "routes": [',
        "            {",
        '                "dst": "fd00:10:244::/56"',
        "            },",
        "            {",
        '                "dst": "::/0",',
        '                "gw": "fd00:10:244:1::1"',
        "            }",
        "        ]",
        "    },",
        '    "dns": {}',
        "}",
      ].join("\n"),
    );
  });

  it("0.2.0 cannot carry a result without addresses (an L2-only bridge)", () => {
    expect(() => resultAsVersion({ interfaces: [{ name: "eth0" }] }, "0.2.0")).toThrow(
      expect.objectContaining({ code: 1, message: "cannot convert: no valid IP addresses" }),
    );
  });

  it("refuses an unknown target version", () => {
    expect(() => resultAsVersion(dualStack, "9.9.9")).toThrow(expect.objectContaining({ code: 1 }));
  });

  it("escapes <, > and & as Go's encoding/json does", () => {
    expect(formatResult({ ips: [{ address: "10.0.0.2/24" }], dns: { domain: "a<b>&c" } }, "1.0.0")).toContain(
      '"domain": "a\\u003cb\\u003e\\u0026c"',
    );
  });
});

describe("reading results of every version", () => {
  it.each(SUPPORTED_VERSIONS)("a result printed as %s reads back to the same addresses and routes", (version) => {
    const reread = parseResult(JSON.parse(formatResult(dualStack, version)));
    expect(reread.cniVersion).toBe(version);
    expect(reread.ips?.map((ip) => [ip.address, ip.gateway])).toEqual(dualStack.ips!.map((ip) => [ip.address, ip.gateway]));
    if (version >= "0.3.0") {
      expect(reread.routes).toEqual(dualStack.routes);
      expect(reread.interfaces).toEqual(dualStack.interfaces);
      expect(reread.ips?.map((ip) => ip.interface)).toEqual([2, 2]);
    } else {
      // R3: 0.2.0 -> newer has no interfaces and no interface index; routes come back ip4's first.
      const v4 = dualStack.routes!.filter((r) => !r.dst.includes(":"));
      const v6 = dualStack.routes!.filter((r) => r.dst.includes(":"));
      expect(reread.routes).toEqual([...v4, ...v6]);
      expect(reread.interfaces).toEqual([]);
      expect(reread.ips?.every((ip) => ip.interface === undefined)).toBe(true);
    }
  });

  it("up-converts 0.2.0 to 1.0.0 as Go does: routes of ip4 then ip6, no interfaces", () => {
    const old = { cniVersion: "0.2.0", ip4: { ip: "10.9.0.2/24", gateway: "10.9.0.1", routes: [{ dst: "0.0.0.0/0" }] }, dns: {} };
    expect(resultAsVersion(parseResult(old), "1.0.0")).toEqual({
      cniVersion: "1.0.0",
      ips: [{ address: "10.9.0.2/24", gateway: "10.9.0.1" }],
      routes: [{ dst: "0.0.0.0/0" }],
    });
  });

  it("canonicalises addresses as Go prints them", () => {
    const r = parseResult({ cniVersion: "1.0.0", ips: [{ address: "FD00:0:0::02/64", gateway: "fd00::0:1" }] });
    expect(r.ips).toEqual([{ address: "fd00::2/64", gateway: "fd00::1" }]);
  });

  it("a result without cniVersion takes the fallback (libcni fills a prevResult's from the config)", () => {
    expect(parseResult({ ips: [{ address: "10.0.0.2/24" }] }, "prevResult", "1.0.0").cniVersion).toBe("1.0.0");
    expect(parseResult({ ip4: { ip: "10.0.0.2/24" } }).cniVersion).toBe("0.1.0");
  });

  it.each([
    [{ cniVersion: 4 }, "cniVersion must be a string"],
    [{ cniVersion: "0.9.0" }, 'cniVersion "0.9.0" is not a supported version'],
    [{ cniVersion: "1.0.0", ips: {} }, "ips must be a list"],
    [{ cniVersion: "1.0.0", ips: [{ address: "10.0.0.300/24" }] }, "ips[0].address must be an address with a prefix length"],
    [{ cniVersion: "1.0.0", ips: [{ address: "10.0.0.3" }] }, "ips[0].address must be an address with a prefix length"],
    [{ cniVersion: "1.0.0", ips: [{ address: "10.0.0.3/24", gateway: "x" }] }, "ips[0].gateway must be an IP address"],
    [{ cniVersion: "1.0.0", ips: [{ address: "10.0.0.3/24", interface: 1.5 }] }, "ips[0].interface must be an integer"],
    [{ cniVersion: "1.0.0", routes: [{ dst: "10.0.0.0/33" }] }, "routes[0].dst must be an address with a prefix length"],
    [{ cniVersion: "1.0.0", interfaces: [{ name: 3 }] }, "interfaces[0].name must be a string"],
    [{ cniVersion: "1.0.0", dns: { nameservers: "8.8.8.8" } }, "dns.nameservers must be a list"],
    [{ cniVersion: "0.2.0", ip4: { ip: "nope" } }, "ip4.ip must be an address with a prefix length"],
    ["a string", "the result must be an object"],
  ])("rejects %j with code 6: %s", (raw, message) => {
    expect(() => parseResult(raw, "invalid prevResult")).toThrow(
      expect.objectContaining({ code: 6, message: expect.stringContaining(`invalid prevResult: ${message}`) }),
    );
  });
});
