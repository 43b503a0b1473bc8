import { readdirSync } from "node:fs";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { referencePlugins } from "../helpers/prerequisites.js";
import {
  addressesOf,
  makeSandbox,
  REFERENCE,
  run,
  runAsync,
  snapshot,
  WEFT,
  type Call,
  type Outcome,
  type Sandbox,
} from "../helpers/host-local-harness.js";

let sandbox: Sandbox;

beforeEach(() => {
  sandbox = makeSandbox();
});

afterEach(() => {
  sandbox.remove();
});

const NET = "parnet";

function config(ranges: unknown[][]) {
  return { cniVersion: "1.0.0", name: NET, type: "bridge", ipam: { type: "host-local", dataDir: join(sandbox.root, "data"), ranges } };
}

function store(): string {
  return join(sandbox.root, "data", NET);
}

function call(binary: string, c: Call): Promise<Outcome> {
  return runAsync(binary, c, binary === WEFT ? sandbox.env : {});
}

/** Every reservation file holds the attachment that got its address, and no address is held twice. */
function expectConsistent(results: { containerId: string; out: Outcome }[]) {
  const files = snapshot(store());
  const addresses = results
    .filter((r) => r.out.status === 0)
    .flatMap((r) => addressesOf(r.out).map((a) => ({ a: a.split("/")[0]!, id: r.containerId })));
  expect(new Set(addresses.map((x) => x.a)).size).toBe(addresses.length);
  for (const { a, id } of addresses) expect(files[a]?.content, a).toBe(JSON.stringify(`${id}\r\neth0`));
  const reserved = Object.keys(files).filter((n) => /^\d|:/.test(n));
  expect(reserved.sort()).toEqual(addresses.map((x) => x.a).sort());
}

function leftovers(): string[] {
  return readdirSync(store()).sort();
}

describe("host-local under parallel calls", () => {
  it("64 parallel ADDs on one /24 get 64 distinct addresses; 64 parallel DELs leave only lock and last_reserved_ip", async () => {
    const conf = config([[{ subnet: "10.77.0.0/24" }]]);
    const ids = Array.from({ length: 64 }, (_, i) => `par-${i}`);
    const adds = await Promise.all(
      ids.map(async (containerId) => ({ containerId, out: await call(WEFT, { command: "ADD", containerId, ifName: "eth0", config: conf }) })),
    );
    for (const { out } of adds) expect(out.status, out.stdout).toBe(0);
    expectConsistent(adds);
    expect(new Set(adds.map((r) => addressesOf(r.out)[0])).size).toBe(64);
    const dels = await Promise.all(ids.map((containerId) => call(WEFT, { command: "DEL", containerId, ifName: "eth0", config: conf })));
    for (const out of dels) expect(out.status, out.stdout).toBe(0);
    expect(leftovers()).toEqual(["last_reserved_ip.0", "lock"]);
  });

  it("dual-stack: 32 parallel ADDs reserve 32 pairs, and parallel DELs release them all", async () => {
    const conf = config([[{ subnet: "10.77.0.0/24" }], [{ subnet: "fd77::/64" }]]);
    const ids = Array.from({ length: 32 }, (_, i) => `dual-${i}`);
    const adds = await Promise.all(
      ids.map(async (containerId) => ({ containerId, out: await call(WEFT, { command: "ADD", containerId, ifName: "eth0", config: conf }) })),
    );
    for (const { out } of adds) expect(addressesOf(out)).toHaveLength(2);
    expectConsistent(adds);
    await Promise.all(ids.map((containerId) => call(WEFT, { command: "DEL", containerId, ifName: "eth0", config: conf })));
    expect(leftovers()).toEqual(["last_reserved_ip.0", "last_reserved_ip.1", "lock"]);
  });
});

const needs = referencePlugins("host-local");
describe.skipIf(needs.skip)(needs.title("host-local mixed with the reference"), () => {
  it("releases the reference's reservations, and the reference releases weft's", () => {
    const conf = config([[{ subnet: "10.77.0.0/24" }], [{ subnet: "fd77::/64" }]]);
    const ids = ["x1", "x2", "x3"];
    for (const containerId of ids) expect(run(REFERENCE, { command: "ADD", containerId, ifName: "eth0", config: conf }).status).toBe(0);
    // weft sees them: CHECK passes, a duplicate ADD is refused, and the next ADD continues the round-robin.
    expect(run(WEFT, { command: "CHECK", containerId: "x1", ifName: "eth0", config: conf }, sandbox.env).status).toBe(0);
    expect(run(WEFT, { command: "ADD", containerId: "x1", ifName: "eth0", config: conf }, sandbox.env).json?.msg).toContain(
      "duplicate allocation is not allowed",
    );
    expect(addressesOf(run(WEFT, { command: "ADD", containerId: "y1", ifName: "eth0", config: conf }, sandbox.env))).toEqual([
      "10.77.0.5/24",
      "fd77::5/64",
    ]);
    for (const containerId of ids) expect(run(WEFT, { command: "DEL", containerId, ifName: "eth0", config: conf }, sandbox.env).status).toBe(0);
    expect(leftovers()).toEqual(["10.77.0.5", "fd77::5", "last_reserved_ip.0", "last_reserved_ip.1", "lock"]);

    for (const containerId of ["y2", "y3"]) run(WEFT, { command: "ADD", containerId, ifName: "eth0", config: conf }, sandbox.env);
    expect(run(REFERENCE, { command: "CHECK", containerId: "y2", ifName: "eth0", config: conf }).status).toBe(0);
    expect(addressesOf(run(REFERENCE, { command: "ADD", containerId: "x4", ifName: "eth0", config: conf }))).toEqual(["10.77.0.8/24", "fd77::8/64"]);
    for (const containerId of ["y1", "y2", "y3", "x4"])
      expect(run(REFERENCE, { command: "DEL", containerId, ifName: "eth0", config: conf }).status).toBe(0);
    expect(leftovers()).toEqual(["last_reserved_ip.0", "last_reserved_ip.1", "lock"]);
  });

  it("64 parallel ADDs, half weft and half reference, never hand out an address twice; mixed DELs clean up", async () => {
    const conf = config([[{ subnet: "10.77.0.0/24" }]]);
    const jobs = Array.from({ length: 64 }, (_, i) => ({ containerId: `mix-${i}`, binary: i % 2 ? REFERENCE : WEFT }));
    const adds = await Promise.all(
      jobs.map(async ({ containerId, binary }) => ({
        containerId,
        out: await call(binary, { command: "ADD", containerId, ifName: "eth0", config: conf }),
      })),
    );
    for (const { out } of adds) expect(out.status, out.stdout).toBe(0);
    expectConsistent(adds);
    // Each releases the other's.
    const dels = await Promise.all(
      jobs.map(({ containerId, binary }) => call(binary === WEFT ? REFERENCE : WEFT, { command: "DEL", containerId, ifName: "eth0", config: conf })),
    );
    for (const out of dels) expect(out.status, out.stdout).toBe(0);
    expect(leftovers()).toEqual(["last_reserved_ip.0", "lock"]);
  });

  it("70 mixed parallel ADDs on a /26 with 61 addresses: exactly 61 succeed, all distinct, the rest say the set is full", async () => {
    const conf = config([[{ subnet: "10.77.0.0/26" }]]);
    const jobs = Array.from({ length: 70 }, (_, i) => ({ containerId: `full-${i}`, binary: i % 3 ? WEFT : REFERENCE }));
    const adds = await Promise.all(
      jobs.map(async ({ containerId, binary }) => ({
        containerId,
        out: await call(binary, { command: "ADD", containerId, ifName: "eth0", config: conf }),
      })),
    );
    expect(adds.filter((r) => r.out.status === 0)).toHaveLength(61);
    for (const { out } of adds.filter((r) => r.out.status !== 0)) {
      expect(out.json?.msg).toBe("failed to allocate for range 0: no IP addresses available in range set: 10.77.0.1-10.77.0.62");
    }
    expectConsistent(adds);
    const status = run(WEFT, { command: "STATUS", config: { ...conf, cniVersion: "1.1.0" } }, sandbox.env);
    expect(status.json).toMatchObject({ code: 50 });
  });
});
