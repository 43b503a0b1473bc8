import { describe, expect, it } from "vitest";
import { hostLocal, netconf } from "../../gen/validators.js";
import {
  checkConfigSize,
  configVersion,
  decodeConfig,
  MAX_CONFIG_DEPTH,
  MAX_RESULT_LIST_LENGTH,
  MAX_STDIN_BYTES,
  readPrevResult,
  validateWith,
  type CompiledValidator,
} from "./config.js";
import { CniError } from "../errors/cni.js";
import { SUPPORTED_VERSIONS } from "./version.js";

function failure(fn: () => unknown): CniError {
  try {
    fn();
  } catch (err) {
    if (err instanceof CniError) return err;
    throw err;
  }
  throw new Error("expected a CniError");
}

const bytes = (value: unknown) => Buffer.from(typeof value === "string" ? value : JSON.stringify(value));

/** A JSON object `levels` deep counting itself: 1 is {}, 2 is {"a":{}}. */
function nested(levels: number): Record<string, unknown> {
  let v: Record<string, unknown> = {};
  for (let i = 1; i < levels; i++) v = { a: v };
  return v;
}

/** A validator that refuses with the errors ajv would report, to show how each kind is worded. */
function refusing(errors: CompiledValidator["errors"]): CompiledValidator {
  const validate = (() => false) as CompiledValidator;
  validate.errors = errors;
  return validate;
}

describe("checkConfigSize", () => {
  it("accepts stdin of exactly 1 MiB", () => {
    expect(() => checkConfigSize(MAX_STDIN_BYTES)).not.toThrow();
    expect(() => checkConfigSize(0)).not.toThrow();
  });

  it("refuses one byte more with code 7 and a hint", () => {
    const err = failure(() => checkConfigSize(MAX_STDIN_BYTES + 1));
    expect(err.code).toBe(7);
    expect(err.message).toBe("network config on stdin is larger than 1048576 bytes (1 MiB)");
    expect(err.details).toBe("no real config is this large; a generated one may have repeated a list");
  });
});

describe("decodeConfig: JSON", () => {
  it("returns the decoded object", () => {
    const raw = decodeConfig(bytes({ cniVersion: "1.0.0", name: "cbr0", type: "flannel", delegate: { hairpinMode: true } }));
    expect(raw).toEqual({ cniVersion: "1.0.0", name: "cbr0", type: "flannel", delegate: { hairpinMode: true } });
  });

  it.each(["{", "", "garbage", '{"name": "n",}'])("%j is code 6 with JSON.parse's reason", (text) => {
    let reason = "";
    try {
      JSON.parse(text);
    } catch (err) {
      reason = (err as Error).message;
    }
    const err = failure(() => decodeConfig(bytes(text)));
    expect(err.code).toBe(6);
    expect(err.message).toBe(`error decoding network config from stdin: ${reason}`);
    expect(err.details).toBeUndefined();
  });

  it.each(["[]", '[{"name":"n"}]', "null", "5", '"net"', "true"])("%s is code 6: not an object", (text) => {
    const err = failure(() => decodeConfig(bytes(text)));
    expect(err.code).toBe(6);
    expect(err.message).toBe("error decoding network config from stdin: expected a JSON object");
  });

  it("accepts nulls anywhere inside the config", () => {
    expect(decodeConfig(bytes({ name: "n", ipam: null, dns: { nameservers: [null] } }))).toEqual({
      name: "n",
      ipam: null,
      dns: { nameservers: [null] },
    });
  });
});

describe("decodeConfig: nesting depth", () => {
  it(`accepts a config ${MAX_CONFIG_DEPTH} objects deep`, () => {
    const raw = { name: "n", deep: nested(MAX_CONFIG_DEPTH - 1) };
    expect(decodeConfig(bytes(raw))).toEqual(raw);
  });

  it(`refuses ${MAX_CONFIG_DEPTH + 1} levels with code 6`, () => {
    const err = failure(() => decodeConfig(bytes({ name: "n", deep: nested(MAX_CONFIG_DEPTH) })));
    expect(err.code).toBe(6);
    expect(err.message).toBe("error decoding network config from stdin: nested more than 64 levels deep");
  });

  it("counts arrays as levels", () => {
    let v: unknown = [];
    for (let i = 2; i < MAX_CONFIG_DEPTH; i++) v = [v];
    expect(decodeConfig(bytes({ name: "n", v }))).toEqual({ name: "n", v });
    expect(failure(() => decodeConfig(bytes({ name: "n", v: [v] }))).code).toBe(6);
  });

  it("does not count scalars and nulls in the deepest object as a level", () => {
    const raw = { name: "n", deep: nested(MAX_CONFIG_DEPTH - 1) };
    let innermost = raw.deep;
    while (innermost.a !== undefined) innermost = innermost.a as Record<string, unknown>;
    Object.assign(innermost, { s: "leaf", n: 1, z: null, t: true });
    expect(decodeConfig(bytes(raw))).toEqual(raw);
  });

  it("finds the too-deep branch even after a branch exactly at the limit", () => {
    // The deeper branch first, so that a walk which stops at the limit has not reached it yet.
    const err = failure(() => decodeConfig(bytes({ name: "n", deeper: nested(MAX_CONFIG_DEPTH), atLimit: nested(MAX_CONFIG_DEPTH - 1) })));
    expect(err.message).toBe("error decoding network config from stdin: nested more than 64 levels deep");
    const err2 = failure(() => decodeConfig(bytes({ name: "n", atLimit: nested(MAX_CONFIG_DEPTH - 1), deeper: nested(MAX_CONFIG_DEPTH) })));
    expect(err2.code).toBe(6);
  });

  it("refuses a deep config without overflowing the stack", () => {
    const text = `{"name":"n","x":${"[".repeat(100_000)}${"]".repeat(100_000)}}`;
    expect(failure(() => decodeConfig(bytes(text))).message).toBe("error decoding network config from stdin: nested more than 64 levels deep");
  });
});

describe("decodeConfig: the network name, checked as the Go skel does", () => {
  it.each([{}, { name: "" }, { cniVersion: "1.0.0", type: "bridge" }])("%j: missing network name (code 7)", (config) => {
    const err = failure(() => decodeConfig(bytes(config)));
    expect(err.code).toBe(7);
    expect(err.message).toBe("missing network name");
  });

  it.each([
    [5, "5"],
    [null, "null"],
    [true, "true"],
    [["a"], '["a"]'],
    [{ n: 1 }, '{"n":1}'],
  ])("name %j is code 7: must be a string", (name, shown) => {
    const err = failure(() => decodeConfig(bytes({ name })));
    expect(err.code).toBe(7);
    expect(err.message).toBe(`network name must be a string, got ${shown}`);
  });

  it("accepts a name of 200 characters and refuses 201", () => {
    expect(decodeConfig(bytes({ name: "n".repeat(200) })).name).toBe("n".repeat(200));
    const err = failure(() => decodeConfig(bytes({ name: "n".repeat(201) })));
    expect(err.code).toBe(7);
    expect(err.message).toBe("network name is 201 characters long; at most 200 are allowed");
  });

  it.each(["x y", "-net", ".net", "_net", "net/0", "net:0", "net\n", "ünet"])("name %j: invalid characters (code 7)", (name) => {
    const err = failure(() => decodeConfig(bytes({ name })));
    expect(err.code).toBe(7);
    expect(err.message).toBe("invalid characters found in network name");
    expect(err.details).toBe(`name ${JSON.stringify(name)} must match ^[a-zA-Z0-9][a-zA-Z0-9_.\\-]*$`);
  });

  it.each(["cbr0", "k8s-pod-network", "a", "0", "net_1.v-2"])("name %j is accepted", (name) => {
    expect(decodeConfig(bytes({ name })).name).toBe(name);
  });
});

describe("configVersion", () => {
  it.each(SUPPORTED_VERSIONS)("%s is taken as it is", (version) => {
    expect(configVersion({ name: "n", cniVersion: version })).toBe(version);
  });

  it.each([{}, { cniVersion: "" }, { cniVersion: null }])("%j is 0.1.0, as libcni decodes it", (extra) => {
    expect(configVersion({ name: "n", ...extra })).toBe("0.1.0");
  });

  it.each([
    [1, "1"],
    [1.1, "1.1"],
    [true, "true"],
    [["1.0.0"], '["1.0.0"]'],
  ])("cniVersion %j is code 6: must be a string", (version, shown) => {
    const err = failure(() => configVersion({ name: "n", cniVersion: version }));
    expect(err.code).toBe(6);
    expect(err.message).toBe(`cniVersion must be a string, got ${shown}`);
  });

  it.each(["9.9.9", "1.0", "v1.0.0", "0.5.0", " 1.0.0"])("cniVersion %j is code 1 naming what weft supports", (version) => {
    const err = failure(() => configVersion({ name: "n", cniVersion: version }));
    expect(err.code).toBe(1);
    expect(err.message).toBe("incompatible CNI versions");
    expect(err.details).toBe(`config is ${JSON.stringify(version)}, plugin supports ["0.1.0" "0.2.0" "0.3.0" "0.3.1" "0.4.0" "1.0.0" "1.1.0"]`);
  });
});

describe("validateWith: the compiled schemas", () => {
  it("returns the config itself, with the schema's defaults filled in", () => {
    const raw = { cniVersion: "1.0.0", name: "n", type: "bridge", ipam: { type: "host-local", ranges: [[{ subnet: "10.1.0.0/24" }]] } };
    expect(validateWith(hostLocal, raw)).toBe(raw);
    expect(validateWith(netconf, { name: "n" })).toEqual({ name: "n" });
  });

  it.each([
    [{}, "name is required"],
    [{ name: 5 }, "name must be string (got 5)"],
    [{ name: "n", ipam: { type: 7 } }, "ipam.type must be string (got 7)"],
    [{ name: "n", dns: { nameservers: "8.8.8.8" } }, 'dns.nameservers must be array (got "8.8.8.8")'],
    [{ name: "n", dns: { search: ["a", 2] } }, "dns.search[1] must be string (got 2)"],
    [{ name: "n", capabilities: { portMappings: "yes" } }, 'capabilities.portMappings must be boolean (got "yes")'],
  ])("netconf %j: code 7, %s", (raw, msg) => {
    const err = failure(() => validateWith(netconf, raw));
    expect(err.code).toBe(7);
    expect(err.message).toBe(`invalid network config: ${msg}`);
  });

  it("names a nested missing key by its path", () => {
    const raw = { name: "n", type: "bridge", ipam: { type: "host-local", ranges: [[{ subnet: "10.1.0.0/24" }, { gateway: "10.2.0.1" }]] } };
    expect(failure(() => validateWith(hostLocal, raw)).message).toBe("invalid network config: ipam.ranges[0][1].subnet is required");
  });

  it("says what was validated", () => {
    expect(failure(() => validateWith(netconf, {}, "delegate config")).message).toBe("invalid delegate config: name is required");
  });
});

describe("validateWith: wording of each kind of schema error", () => {
  const refuse = (errors: CompiledValidator["errors"], raw: Record<string, unknown> = {}) => failure(() => validateWith(refusing(errors), raw));

  it("a missing key, at the top and nested", () => {
    expect(refuse([{ keyword: "required", instancePath: "", params: { missingProperty: "name" } }]).message).toBe(
      "invalid network config: name is required",
    );
    expect(refuse([{ keyword: "required", instancePath: "/ipam/ranges/0/12", params: { missingProperty: "subnet" } }]).message).toBe(
      "invalid network config: ipam.ranges[0][12].subnet is required",
    );
  });

  it("an unknown key", () => {
    const err = refuse([
      { keyword: "additionalProperties", instancePath: "/runtimeConfig/portMappings/3", params: { additionalProperty: "hostIp" } },
    ]);
    expect(err.code).toBe(7);
    expect(err.message).toBe("invalid network config: runtimeConfig.portMappings[3].hostIp is not a known key");
    expect(refuse([{ keyword: "additionalProperties", instancePath: "", params: { additionalProperty: "nmae" } }]).message).toBe(
      "invalid network config: nmae is not a known key",
    );
  });

  it("a bad value, with the value as it arrived", () => {
    const raw = { name: "n", ipam: { ranges: [[{ subnet: "10.1.0.0/33" }]] } };
    const err = refuse([{ keyword: "format", instancePath: "/ipam/ranges/0/0/subnet", message: 'must match format "cidr"', params: {} }], raw);
    expect(err.message).toBe('invalid network config: ipam.ranges[0][0].subnet must match format "cidr" (got "10.1.0.0/33")');
  });

  it("the whole config, when the error is at the top", () => {
    expect(
      refuse([{ keyword: "minProperties", instancePath: "", message: "must NOT have fewer than 9 properties", params: {} }], { a: 1 }).message,
    ).toBe('invalid network config: the config must NOT have fewer than 9 properties (got {"a":1})');
  });

  it("says 'is invalid' when the error has no message", () => {
    expect(refuse([{ keyword: "type", instancePath: "/mtu", params: {} }], { mtu: "x" }).message).toBe(
      'invalid network config: mtu is invalid (got "x")',
    );
  });

  it("shows no value when there is none at the path", () => {
    const errors = [{ keyword: "type", instancePath: "/ipam/type", message: "must be string", params: {} }];
    expect(refuse(errors, { name: "n" }).message).toBe("invalid network config: ipam.type must be string");
    expect(refuse(errors, { name: "n", ipam: null }).message).toBe("invalid network config: ipam.type must be string");
    expect(refuse(errors, { name: "n", ipam: "host-local" }).message).toBe("invalid network config: ipam.type must be string");
    const under = [{ keyword: "type", instancePath: "/ipam/length", message: "must be object", params: {} }];
    expect(refuse(under, { ipam: "host-local" }).message).toBe("invalid network config: ipam.length must be object");
  });

  it("shows null as null", () => {
    const errors = [{ keyword: "type", instancePath: "/ipam", message: "must be object", params: {} }];
    expect(refuse(errors, { ipam: null }).message).toBe("invalid network config: ipam must be object (got null)");
  });

  it("reports only the first error", () => {
    const err = refuse(
      [
        { keyword: "required", instancePath: "", params: { missingProperty: "name" } },
        { keyword: "required", instancePath: "", params: { missingProperty: "type" } },
      ],
      {},
    );
    expect(err.message).toBe("invalid network config: name is required");
  });

  it("keys with digits are names, only all-digit keys are indices", () => {
    const at = (instancePath: string) => refuse([{ keyword: "required", instancePath, params: { missingProperty: "k" } }]).message;
    expect(at("/a1")).toBe("invalid network config: a1.k is required");
    expect(at("/1a")).toBe("invalid network config: 1a.k is required");
    expect(at("/x/1a/2")).toBe("invalid network config: x.1a[2].k is required");
    expect(at("/x/10")).toBe("invalid network config: x[10].k is required");
    expect(at("/0")).toBe("invalid network config: [0].k is required");
  });

  it("unescapes JSON pointer segments (~1 is /, ~0 is ~) in names and when reading the value", () => {
    const raw = { "cni.dev/a/b": { "x~y~z": "v" }, "~1": 3 };
    const err = refuse([{ keyword: "const", instancePath: "/cni.dev~1a~1b/x~0y~0z", message: "must be equal to constant", params: {} }], raw);
    expect(err.message).toBe('invalid network config: cni.dev/a/b.x~y~z must be equal to constant (got "v")');
    expect(refuse([{ keyword: "type", instancePath: "/~01", message: "must be string", params: {} }], raw).message).toBe(
      "invalid network config: ~1 must be string (got 3)",
    );
    expect(refuse([{ keyword: "required", instancePath: "/a~1b", params: { missingProperty: "c~1d" } }]).message).toBe(
      "invalid network config: a/b.c/d is required",
    );
  });

  it("shows a value of up to 80 characters whole and cuts a longer one to 77 and ...", () => {
    const error = [{ keyword: "type", instancePath: "/v", message: "must be number", params: {} }];
    const exactly80 = "x".repeat(78);
    expect(refuse(error, { v: exactly80 }).message).toBe(`invalid network config: v must be number (got "${exactly80}")`);
    const is81 = "x".repeat(79);
    expect(refuse(error, { v: is81 }).message).toBe(`invalid network config: v must be number (got "${"x".repeat(76)}...)`);
  });

  it("falls back to a general message when the validator gives no errors", () => {
    for (const errors of [null, undefined, []]) {
      const err = refuse(errors);
      expect(err.code).toBe(7);
      expect(err.message).toBe("invalid network config: does not match its schema");
    }
  });
});

describe("readPrevResult", () => {
  it("is undefined without a prevResult", () => {
    expect(readPrevResult({ name: "n" }, "1.0.0")).toBeUndefined();
    expect(readPrevResult({ name: "n", prevResult: null }, "1.0.0")).toBeUndefined();
  });

  it("converts a prevResult to the 1.1.0 shape, keeping its version", () => {
    const prevResult = { cniVersion: "0.4.0", interfaces: [{ name: "eth0" }], ips: [{ version: "4", address: "10.1.0.5/24", interface: 0 }] };
    expect(readPrevResult({ name: "n", cniVersion: "1.0.0", prevResult }, "1.0.0")).toEqual({
      cniVersion: "0.4.0",
      interfaces: [{ name: "eth0" }],
      ips: [{ interface: 0, address: "10.1.0.5/24" }],
      routes: [],
    });
  });

  it("takes the config's version for a prevResult without one, as libcni does", () => {
    const prevResult = { ip4: { ip: "10.1.0.5/24", routes: [{ dst: "0.0.0.0/0" }] } };
    expect(readPrevResult({ name: "n", prevResult }, "0.2.0")).toEqual({
      cniVersion: "0.2.0",
      interfaces: [],
      ips: [{ address: "10.1.0.5/24" }],
      routes: [{ dst: "0.0.0.0/0" }],
    });
  });

  it.each([
    ["x", "invalid prevResult: the result must be an object"],
    [5, "invalid prevResult: the result must be an object"],
    [{ cniVersion: "1.0.0", ips: [{ address: "x" }] }, /^invalid prevResult: ips\[0\]\.address /],
    [{ cniVersion: "1.0.0", dns: null, ip4: null }, null],
    [{ cniVersion: "0.2.0", ip4: null, ip6: null, dns: null }, null],
  ])("prevResult %j", (prevResult, msg) => {
    const read = () => readPrevResult({ name: "n", prevResult }, "1.0.0");
    if (msg === null) {
      expect(read()?.ips).toEqual([]);
      return;
    }
    const err = failure(read);
    expect(err.code).toBe(6);
    if (typeof msg === "string") expect(err.message).toBe(msg);
    else expect(err.message).toMatch(msg);
  });
});

describe("readPrevResult: list lengths", () => {
  const n = MAX_RESULT_LIST_LENGTH;
  const entries = {
    ips: { address: "10.1.0.2/24" },
    routes: { dst: "10.0.0.0/8" },
    interfaces: { name: "eth0" },
  };
  const dns = { nameservers: "10.96.0.10", search: "cluster.local", options: "ndots:5" };

  it.each(Object.entries(entries))(`accepts ${n} %s and refuses ${n + 1} with code 7`, (key, entry) => {
    const ok = readPrevResult({ name: "n", prevResult: { cniVersion: "1.0.0", [key]: Array(n).fill(entry) } }, "1.0.0");
    expect((ok as Record<string, unknown[]>)[key]).toHaveLength(n);
    const err = failure(() => readPrevResult({ name: "n", prevResult: { cniVersion: "1.0.0", [key]: Array(n + 1).fill(entry) } }, "1.0.0"));
    expect(err.code).toBe(7);
    expect(err.message).toBe(`invalid prevResult: ${key} has ${n + 1} entries; at most 1024 are allowed`);
  });

  it.each(Object.entries(dns))(`accepts ${n} dns.%s and refuses ${n + 1} with code 7`, (key, entry) => {
    const ok = readPrevResult({ name: "n", prevResult: { cniVersion: "1.0.0", dns: { [key]: Array(n).fill(entry) } } }, "1.0.0");
    expect((ok?.dns as Record<string, unknown[]>)[key]).toHaveLength(n);
    const err = failure(() => readPrevResult({ name: "n", prevResult: { cniVersion: "1.0.0", dns: { [key]: Array(n + 1).fill(entry) } } }, "1.0.0"));
    expect(err.code).toBe(7);
    expect(err.message).toBe(`invalid prevResult: dns.${key} has ${n + 1} entries; at most 1024 are allowed`);
  });

  it.each(["ip4", "ip6"])(`accepts ${n} %s.routes of a 0.2.0 prevResult and refuses ${n + 1}`, (key) => {
    const ip = key === "ip4" ? "10.1.0.2/24" : "fd00::2/64";
    const dst = key === "ip4" ? "10.0.0.0/8" : "fd00::/8";
    const prev = (count: number) => ({ cniVersion: "0.2.0", [key]: { ip, routes: Array(count).fill({ dst }) } });
    expect(readPrevResult({ name: "n", prevResult: prev(n) }, "0.2.0")?.routes).toHaveLength(n);
    const err = failure(() => readPrevResult({ name: "n", prevResult: prev(n + 1) }, "0.2.0"));
    expect(err.code).toBe(7);
    expect(err.message).toBe(`invalid prevResult: ${key}.routes has ${n + 1} entries; at most 1024 are allowed`);
  });

  it("checks the lengths before parsing any entry", () => {
    const err = failure(() => readPrevResult({ name: "n", prevResult: { cniVersion: "1.0.0", ips: Array(n + 1).fill("not an ip") } }, "1.0.0"));
    expect(err.message).toBe("invalid prevResult: ips has 1025 entries; at most 1024 are allowed");
  });

  it("leaves a list that is no array to the parser", () => {
    const err = failure(() => readPrevResult({ name: "n", prevResult: { cniVersion: "1.0.0", ips: { length: n + 1 } } }, "1.0.0"));
    expect(err.code).toBe(6);
    expect(err.message).toBe("invalid prevResult: ips must be a list");
  });
});
