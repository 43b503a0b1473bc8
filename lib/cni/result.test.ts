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
  routes: [{ dst: "10.244.0.0/16" }, { dst: "fd00:10:244::/56" }, { dst: "0.0.0.0/0", gw: "10.244.1.1" }, { dst: "::/0", gw: "fd00:10:244:1::1" }],
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
    expect(formatResult({ ips: [{ address: "10.0.0.2/24" }], dns: { domain: "a<b>&c" } }, "1.0.0")).toContain('"domain": "a\\u003cb\\u003e\\u0026c"');
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

describe("reading what other plugins print: absent, null and empty fields", () => {
  it("reads null lists and a null dns as empty, as Go's decoder does", () => {
    expect(parseResult({ cniVersion: "1.0.0", interfaces: null, ips: null, routes: null, dns: null })).toStrictEqual({
      cniVersion: "1.0.0",
      interfaces: [],
      ips: [],
      routes: [],
    });
    expect(parseResult({ cniVersion: "0.2.0", ip4: null, ip6: { ip: "fd00::2/64", routes: null }, dns: null })).toStrictEqual({
      cniVersion: "0.2.0",
      interfaces: [],
      ips: [{ address: "fd00::2/64" }],
      routes: [],
    });
  });

  it("a null or empty cniVersion takes the fallback", () => {
    expect(parseResult({ cniVersion: null, ips: [] }, "prevResult", "0.4.0").cniVersion).toBe("0.4.0");
    expect(parseResult({ cniVersion: "", ips: [] }, "prevResult", "1.1.0").cniVersion).toBe("1.1.0");
  });

  it("leaves out empty strings, nulls and zero numbers as Go's omitempty does (absent, not undefined), but keeps interface index 0", () => {
    const r = parseResult({
      cniVersion: "1.1.0",
      interfaces: [{ name: "", mac: "", mtu: 0, sandbox: null, socketPath: "", pciID: "" }, { mtu: null }],
      ips: [
        { interface: 0, address: "10.0.0.2/24", gateway: "" },
        { interface: null, address: "10.0.0.3/24", gateway: null },
      ],
      routes: [
        { dst: "0.0.0.0/0", gw: "", mtu: 0, advmss: 0, priority: 0, table: 0, scope: 0 },
        { dst: "10.1.0.0/16", gw: null, mtu: null },
      ],
    });
    expect(r).toStrictEqual({
      cniVersion: "1.1.0",
      interfaces: [{ name: "" }, { name: "" }],
      ips: [{ interface: 0, address: "10.0.0.2/24" }, { address: "10.0.0.3/24" }],
      routes: [{ dst: "0.0.0.0/0" }, { dst: "10.1.0.0/16" }],
    });
  });

  it("keeps every 1.1 interface and route field that is set", () => {
    const r = parseResult({
      cniVersion: "1.1.0",
      interfaces: [
        { name: "net1", mac: "02:00:00:00:00:01", mtu: 9000, sandbox: "/run/netns/p", socketPath: "/run/vhost.sock", pciID: "0000:03:00.1" },
      ],
      routes: [{ dst: "10.2.0.0/16", gw: "10.0.0.1", mtu: 1400, advmss: 1360, priority: 10, table: 100, scope: 253 }],
    });
    expect(r.interfaces).toEqual([
      { name: "net1", mac: "02:00:00:00:00:01", mtu: 9000, sandbox: "/run/netns/p", socketPath: "/run/vhost.sock", pciID: "0000:03:00.1" },
    ]);
    expect(r.routes).toEqual([{ dst: "10.2.0.0/16", gw: "10.0.0.1", mtu: 1400, advmss: 1360, priority: 10, table: 100, scope: 253 }]);
  });

  it("reads a dns with any one field set, and drops a dns with none (empty lists, empty domain)", () => {
    const dnsOf = (dns: unknown) => parseResult({ cniVersion: "1.0.0", dns }).dns;
    expect(dnsOf({ nameservers: ["10.96.0.10"] })).toEqual({ nameservers: ["10.96.0.10"] });
    expect(dnsOf({ domain: "cluster.local" })).toEqual({ domain: "cluster.local" });
    expect(dnsOf({ search: ["svc.cluster.local"] })).toEqual({ search: ["svc.cluster.local"] });
    expect(dnsOf({ options: ["ndots:5"] })).toEqual({ options: ["ndots:5"] });
    expect(dnsOf({ nameservers: [], domain: "", search: null, options: [] })).toBeUndefined();
    expect(dnsOf({})).toBeUndefined();
  });

  it("reads a 0.2.0 result's ip6 block: address, gateway and its routes, after ip4's", () => {
    const r = parseResult({
      cniVersion: "0.2.0",
      ip4: { ip: "10.0.0.2/24", routes: [{ dst: "0.0.0.0/0", gw: "10.0.0.1" }] },
      ip6: { ip: "FD00::2/64", gateway: "fd00:0::1", routes: [{ dst: "::/0" }] },
    });
    expect(r).toStrictEqual({
      cniVersion: "0.2.0",
      interfaces: [],
      ips: [{ address: "10.0.0.2/24" }, { address: "fd00::2/64", gateway: "fd00::1" }],
      routes: [{ dst: "0.0.0.0/0", gw: "10.0.0.1" }, { dst: "::/0" }],
    });
  });

  it.each([
    [{ cniVersion: "1.0.0", ips: [{}] }, "ips[0].address must be an address with a prefix length, got undefined"],
    [{ cniVersion: "1.0.0", ips: [{ address: 5 }] }, "ips[0].address must be a string"],
    [{ cniVersion: "1.0.0", ips: [{ address: "10.0.0.300/24" }] }, 'ips[0].address must be an address with a prefix length, got "10.0.0.300/24"'],
    [{ cniVersion: "1.0.0", ips: [{ address: "10.0.0.3/24", gateway: "x" }] }, 'ips[0].gateway must be an IP address, got "x"'],
    [{ cniVersion: "1.0.0", ips: [{ address: "10.0.0.3/24", interface: "0" }] }, "ips[0].interface must be an integer"],
    [{ cniVersion: "1.0.0", ips: ["10.0.0.3/24"] }, "ips[0] must be an object"],
    [{ cniVersion: "1.0.0", interfaces: [null] }, "interfaces[0] must be an object"],
    [{ cniVersion: "1.0.0", interfaces: [{ name: "eth0", mtu: "1500" }] }, "interfaces[0].mtu must be an integer"],
    [{ cniVersion: "1.0.0", interfaces: [{ name: "eth0", sandbox: 1 }] }, "interfaces[0].sandbox must be a string"],
    [{ cniVersion: "1.0.0", routes: [[]] }, "routes[0] must be an object"],
    [{ cniVersion: "1.0.0", routes: [{ dst: "0.0.0.0/0", gw: "0.0.0.0/0" }] }, 'routes[0].gw must be an IP address, got "0.0.0.0/0"'],
    [{ cniVersion: "1.0.0", routes: [{ dst: "0.0.0.0/0", table: 1.5 }] }, "routes[0].table must be an integer"],
    [{ cniVersion: "1.0.0", routes: [{ dst: "0.0.0.0/0", scope: true }] }, "routes[0].scope must be an integer"],
    [{ cniVersion: "1.0.0", dns: [] }, "dns must be an object"],
    [{ cniVersion: "1.0.0", dns: { search: ["a", 1] } }, "dns.search[1] must be a string"],
    [{ cniVersion: "1.0.0", dns: { options: [null] } }, "dns.options[0] must be a string"],
    [{ cniVersion: "1.0.0", dns: { domain: ["a"] } }, "dns.domain must be a string"],
    [{ cniVersion: "0.2.0", ip4: "10.0.0.2/24" }, "ip4 must be an object"],
    [{ cniVersion: "0.2.0", ip6: { ip: "fd00::2/64", gateway: "fd00::/64" } }, 'ip6.gateway must be an IP address, got "fd00::/64"'],
    [
      { cniVersion: "0.2.0", ip6: { ip: "fd00::2/64", routes: [{ dst: "::" }] } },
      'ip6.routes[0].dst must be an address with a prefix length, got "::"',
    ],
    [{ cniVersion: "1.0.0", routes: {} }, "routes must be a list"],
    [{ cniVersion: "1.0.0", interfaces: "eth0" }, "interfaces must be a list"],
    [{ cniVersion: "1.2.0" }, 'cniVersion "1.2.0" is not a supported version'],
    [[], "the result must be an object"],
    [null, "the result must be an object"],
  ])("rejects %j with code 6 and exactly: %s", (raw, message) => {
    expect(() => parseResult(raw, "invalid prevResult")).toThrow(expect.objectContaining({ code: 6, message: `invalid prevResult: ${message}` }));
  });

  it("names what it reads in the message: a plain result by default", () => {
    expect(() => parseResult({ cniVersion: "1.0.0", ips: 1 })).toThrow(expect.objectContaining({ message: "result: ips must be a list" }));
  });
});

describe("printing edge cases as the Go libraries do", () => {
  it("1.x: keeps an empty interface name (no omitempty) and interface index 0, drops zero MTUs and empty strings", () => {
    const printed = resultAsVersion(
      {
        interfaces: [{ name: "", mac: "", mtu: 0, sandbox: "", socketPath: "", pciID: "" }],
        ips: [{ interface: 0, address: "10.0.0.2/24", gateway: "" }],
        routes: [{ dst: "0.0.0.0/0", gw: "", mtu: 0, advmss: 0, priority: 0, table: 0, scope: 0 }],
      },
      "1.1.0",
    );
    expect(printed).toEqual({
      cniVersion: "1.1.0",
      interfaces: [{ name: "" }],
      ips: [{ address: "10.0.0.2/24", interface: 0 }],
      routes: [{ dst: "0.0.0.0/0" }],
    });
  });

  it("1.x: prints every 1.1 interface and route field, keys sorted", () => {
    const out = formatResult({
      cniVersion: "1.1.0",
      interfaces: [
        { name: "net1", mac: "02:00:00:00:00:01", mtu: 9000, sandbox: "/run/netns/p", socketPath: "/run/vhost.sock", pciID: "0000:03:00.1" },
      ],
      routes: [{ dst: "10.2.0.0/16", gw: "10.0.0.1", mtu: 1400, advmss: 1360, priority: 10, table: 100, scope: 253 }],
    });
    expect(JSON.parse(out)).toEqual({
      cniVersion: "1.1.0",
      interfaces: [
        { mac: "02:00:00:00:00:01", mtu: 9000, name: "net1", pciID: "0000:03:00.1", sandbox: "/run/netns/p", socketPath: "/run/vhost.sock" },
      ],
      routes: [{ advmss: 1360, dst: "10.2.0.0/16", gw: "10.0.0.1", mtu: 1400, priority: 10, scope: 253, table: 100 }],
    });
    expect(Object.keys(JSON.parse(out).interfaces[0])).toEqual(["mac", "mtu", "name", "pciID", "sandbox", "socketPath"]);
    expect(Object.keys(JSON.parse(out).routes[0])).toEqual(["advmss", "dst", "gw", "mtu", "priority", "scope", "table"]);
  });

  it("1.x: a dns with any one field is printed, one with only empty fields is left out", () => {
    const dnsAs1x = (dns: Result["dns"]) => resultAsVersion({ ips: [{ address: "10.0.0.2/24" }], dns }, "1.0.0").dns;
    expect(dnsAs1x({ nameservers: ["10.96.0.10"] })).toEqual({ nameservers: ["10.96.0.10"] });
    expect(dnsAs1x({ domain: "cluster.local" })).toEqual({ domain: "cluster.local" });
    expect(dnsAs1x({ search: ["svc.cluster.local"] })).toEqual({ search: ["svc.cluster.local"] });
    expect(dnsAs1x({ options: ["ndots:5"] })).toEqual({ options: ["ndots:5"] });
    expect(dnsAs1x({ nameservers: [], domain: "", search: [], options: [] })).toBeUndefined();
    expect(dnsAs1x({})).toBeUndefined();
    expect(dnsAs1x(undefined)).toBeUndefined();
  });

  it("1.x: prints a full dns with its keys sorted", () => {
    const out = formatResult(
      { ips: [{ address: "10.0.0.2/24" }], dns: { search: ["b"], options: ["ndots:5"], nameservers: ["10.96.0.10"], domain: "a" } },
      "1.1.0",
    );
    expect(out).toContain(
      '"dns": {\n        "domain": "a",\n        "nameservers": [\n            "10.96.0.10"\n        ],\n        "options": [\n            "ndots:5"\n        ],\n        "search": [\n            "b"\n        ]\n    }',
    );
  });

  it("0.4.0: prints dns fields in struct order, leaves out empty interfaces, ips and routes", () => {
    const out = formatResult({ ips: [], dns: { search: ["b"], options: ["ndots:5"], nameservers: ["10.96.0.10"], domain: "a" } }, "0.4.0");
    expect(out).toBe(
      [
        "{",
        '    "cniVersion": "0.4.0",',
        '    "dns": {',
        '        "nameservers": [',
        '            "10.96.0.10"',
        "        ],",
        '        "domain": "a",',
        '        "search": [',
        '            "b"',
        "        ],",
        '        "options": [',
        '            "ndots:5"',
        "        ]",
        "    }",
        "}",
      ].join("\n"),
    );
  });

  it("0.4.0: keeps interface index 0, prints an IPv6 address as version 6, and route fields in struct order", () => {
    const printed = resultAsVersion(
      {
        interfaces: [{ name: "eth0", mac: "", sandbox: "" }],
        ips: [{ interface: 0, address: "fd00::2/64" }],
        routes: [{ dst: "::/0", gw: "fd00::1", mtu: 1400, advmss: 1360, priority: 10, table: 100, scope: 253 }],
      },
      "0.4.0",
    );
    expect(printed).toEqual({
      cniVersion: "0.4.0",
      interfaces: [{ name: "eth0" }],
      ips: [{ version: "6", interface: 0, address: "fd00::2/64" }],
      routes: [{ dst: "::/0", gw: "fd00::1", mtu: 1400, advmss: 1360, priority: 10, table: 100, scope: 253 }],
      dns: {},
    });
    expect(Object.keys((printed.routes as object[])[0]!)).toEqual(["dst", "gw", "mtu", "advmss", "priority", "table", "scope"]);
    expect(Object.keys((printed.ips as object[])[0]!)).toEqual(["version", "interface", "address"]);
  });

  it("0.2.0: an IPv6-only result has only ip6; a block without gateway or routes has only ip; route extras are dropped", () => {
    expect(resultAsVersion({ ips: [{ address: "fd00::2/64" }], routes: [{ dst: "::/0", gw: "fd00::1", mtu: 1400 }] }, "0.2.0")).toEqual({
      cniVersion: "0.2.0",
      ip6: { ip: "fd00::2/64", routes: [{ dst: "::/0", gw: "fd00::1" }] },
      dns: {},
    });
    expect(resultAsVersion({ ips: [{ address: "10.0.0.2/24", gateway: "" }], dns: { domain: "a" } }, "0.1.0")).toEqual({
      cniVersion: "0.1.0",
      ip4: { ip: "10.0.0.2/24" },
      dns: { domain: "a" },
    });
  });

  it("0.2.0: a result without addresses is code 1 with the version in the details", () => {
    expect(() => resultAsVersion({ routes: [{ dst: "0.0.0.0/0" }] }, "0.1.0")).toThrow(
      expect.objectContaining({ code: 1, message: "cannot convert: no valid IP addresses", details: "result version 0.1.0" }),
    );
  });

  it("refuses an unknown target version by name", () => {
    expect(() => formatResult(dualStack, "0.5.0")).toThrow(
      expect.objectContaining({ code: 1, message: 'cannot convert a result to version "0.5.0"' }),
    );
  });

  it("prints in the result's own version unless told otherwise, in 1.1.0 when it has none", () => {
    expect(JSON.parse(formatResult({ cniVersion: "0.3.1", ips: [{ address: "10.0.0.2/24" }] })).ips).toEqual([
      { version: "4", address: "10.0.0.2/24" },
    ]);
    expect(JSON.parse(formatResult({ ips: [{ address: "10.0.0.2/24" }] }))).toEqual({ cniVersion: "1.1.0", ips: [{ address: "10.0.0.2/24" }] });
  });

  it("escapes U+2028 and U+2029 as Go's encoding/json does", () => {
    expect(formatResult({ ips: [{ address: "10.0.0.2/24" }], dns: { domain: "a\u2028b\u2029c" } }, "1.0.0")).toContain(
      '"domain": "a\\u2028b\\u2029c"',
    );
  });
});
