import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { record } from "./figures.js";
import { createNode, flannelConf, invokeAsync, kernelLeftovers, REFERENCE_DIR, SUBNET_ENV, type Node, type Outcome } from "./sandbox.js";

/**
 * Races: many ADDs and DELs at once on one network, weft's host-local mixed with the
 * reference's (they share the store format and the flock), ADD and DEL of one container racing,
 * and whole flannel chains in parallel. Afterwards no address is held twice, every store file is
 * one an attachment wrote, and no lock is held.
 */

const REFERENCE_HOST_LOCAL = join(REFERENCE_DIR, "host-local");
const haveReference = existsSync(REFERENCE_HOST_LOCAL);
const NET = "racenet";

let node: Node;
let parallelPods = 0;
let problems = 0;

beforeAll(() => {
  node = createNode("race");
});
afterAll(() => node?.remove());

const store = () => join(node.work, "data", NET);

function ipamConf() {
  return {
    cniVersion: "1.0.0",
    name: NET,
    type: "bridge",
    ipam: { type: "host-local", dataDir: join(node.work, "data"), ranges: [[{ subnet: "10.77.0.0/24" }], [{ subnet: "fd77::/64" }]] },
  };
}

/** Even-numbered containers go through weft, odd ones through the reference (when installed). */
function hostLocal(verb: string, containerId: string, i: number): Promise<Outcome> {
  const reference = haveReference && i % 2 === 1;
  // host-local never enters the namespace, but the skel of both insists on one for ADD.
  return invokeAsync(node, {
    type: "host-local",
    verb,
    containerId,
    netns: "/run/netns/never-entered",
    config: ipamConf(),
    ...(reference ? { binary: REFERENCE_HOST_LOCAL } : {}),
  });
}

interface StoreState {
  /** address -> "containerId/ifname" */
  holders: Map<string, string>;
  corrupt: string[];
  temporaries: string[];
}

function readStore(): StoreState {
  const state: StoreState = { holders: new Map(), corrupt: [], temporaries: [] };
  if (!existsSync(store())) return state;
  for (const name of readdirSync(store())) {
    if (name === "lock") continue;
    const content = readFileSync(join(store(), name), "utf8");
    if (name.startsWith("last_reserved_ip.")) {
      if (!/^(10\.77\.0\.\d+|fd77::[0-9a-f:]+)$/.test(content)) state.corrupt.push(`${name}: ${JSON.stringify(content)}`);
    } else if (name.startsWith(".")) {
      state.temporaries.push(name);
    } else {
      const m = /^([a-z0-9-]+)\r\n(eth0)$/.exec(content);
      if (!m) state.corrupt.push(`${name}: ${JSON.stringify(content)}`);
      else state.holders.set(name, `${m[1]}/${m[2]}`);
    }
  }
  return state;
}

function lockHeld(): string[] {
  const lock = join(store(), "lock");
  if (!existsSync(lock)) return [];
  const ino = statSync(lock).ino;
  return readFileSync("/proc/locks", "utf8")
    .split("\n")
    .filter((l) => l.includes("FLOCK") && l.split(/\s+/).some((f) => f.endsWith(`:${ino}`)));
}

const addressesOf = (o: Outcome) => ((o.json?.ips ?? []) as Array<{ address: string }>).map((ip) => ip.address.split("/")[0]!);

function expectSound(live: Map<string, Outcome>, when: string): void {
  const state = readStore();
  const issues: string[] = [
    ...state.corrupt.map((c) => `corrupt ${c}`),
    ...state.temporaries.map((t) => `temporary ${t}`),
    ...lockHeld().map((l) => `lock held ${l}`),
  ];
  // Each live attachment holds exactly the addresses it was given, and nothing else is held.
  const expected = new Map<string, string>();
  for (const [id, out] of live) {
    for (const a of addressesOf(out)) {
      if (expected.has(a)) issues.push(`${a} given to ${expected.get(a)} and ${id}`);
      expected.set(a, `${id}/eth0`);
    }
  }
  for (const [a, holder] of state.holders)
    if (expected.get(a) !== holder) issues.push(`${a} held by ${holder}, expected ${expected.get(a) ?? "nobody"}`);
  for (const [a, holder] of expected)
    if (state.holders.get(a) !== holder) issues.push(`${holder} was given ${a} but the store says ${state.holders.get(a) ?? "free"}`);
  if (issues.length) problems++;
  expect(issues, when).toEqual([]);
}

describe("host-local, weft and the reference on one store", () => {
  it("32 DELs and 32 ADDs at once, then 32 DELs and 32 ADDs again: no address twice, no corrupt file, no lock held", async () => {
    const live = new Map<string, Outcome>();
    const first = Array.from({ length: 32 }, (_, i) => `race-a${i}`);
    const outs = await Promise.all(first.map((id, i) => hostLocal("ADD", id, i)));
    outs.forEach((o, i) => {
      expect(o.status, o.stdout).toBe(0);
      live.set(first[i]!, o);
    });
    expectSound(live, "after 32 parallel ADDs");

    for (const round of ["b", "c"]) {
      const leaving = [...live.keys()];
      const coming = Array.from({ length: 32 }, (_, i) => `race-${round}${i}`);
      const [dels, adds] = await Promise.all([
        Promise.all(leaving.map((id, i) => hostLocal("DEL", id, i + 1))),
        Promise.all(coming.map((id, i) => hostLocal("ADD", id, i))),
      ]);
      parallelPods += leaving.length + coming.length;
      for (const o of dels) expect(o.status, o.stdout).toBe(0);
      live.clear();
      adds.forEach((o, i) => {
        expect(o.status, o.stdout).toBe(0);
        live.set(coming[i]!, o);
      });
      expectSound(live, `after round ${round}: 64 operations at once`);
    }
    await Promise.all([...live.keys()].map((id, i) => hostLocal("DEL", id, i)));
    live.clear();
    expectSound(live, "after the last DELs");
  }, 120_000);

  it("ADD and DEL of the same container racing, 24 containers: whatever the order, a final DEL leaves nothing", async () => {
    const ids = Array.from({ length: 24 }, (_, i) => `race-same${i}`);
    const outcomes = await Promise.all(ids.flatMap((id, i) => [hostLocal("ADD", id, i), hostLocal("DEL", id, i + 1)]));
    parallelPods += outcomes.length;
    for (const o of outcomes) expect(o.status, o.stdout).toBe(0);
    // An ADD that ran after its DEL holds its addresses now; one that ran before holds nothing.
    const state = readStore();
    expect(state.corrupt).toEqual([]);
    const seen = new Set<string>();
    for (const holder of state.holders.values()) expect(ids.map((id) => `${id}/eth0`)).toContain(holder);
    for (const [a] of state.holders) {
      expect(seen.has(a)).toBe(false);
      seen.add(a);
    }
    await Promise.all(ids.map((id, i) => hostLocal("DEL", id, i)));
    expectSound(new Map(), "after the final DELs");
  }, 120_000);
});

describe("whole flannel chains in parallel", () => {
  const conf = () => flannelConf(node, { delegate: { hairpinMode: true, isDefaultGateway: true }, ipam: { dataDir: join(node.work, "data") } });
  const chain = (verb: string, id: string, pod: string) =>
    invokeAsync(node, { type: "flannel", verb, containerId: id, netns: `/run/netns/${pod}`, config: conf() });

  it("24 pods added at once, then deleted at once while 24 others are added: distinct addresses, nothing left", async () => {
    writeFileSync(join(node.work, "subnet.env"), SUBNET_ENV);
    const first = Array.from({ length: 24 }, (_, i) => ({ id: `chain-a${i}`, pod: node.addPod() }));
    const second = Array.from({ length: 24 }, (_, i) => ({ id: `chain-b${i}`, pod: node.addPod() }));
    const adds = await Promise.all(first.map((p) => chain("ADD", p.id, p.pod)));
    for (const o of adds) expect(o.status, `${o.stdout} ${o.stderr.slice(-500)}`).toBe(0);
    const [dels, adds2] = await Promise.all([
      Promise.all(first.map((p) => chain("DEL", p.id, p.pod))),
      Promise.all(second.map((p) => chain("ADD", p.id, p.pod))),
    ]);
    parallelPods += 24 + 48;
    for (const o of [...dels, ...adds2]) expect(o.status, `${o.stdout} ${o.stderr.slice(-500)}`).toBe(0);
    const addresses = adds2.flatMap(addressesOf);
    expect(new Set(addresses).size).toBe(24);
    // Every pod of the second wave has its address on its eth0.
    for (const [i, p] of second.entries()) {
      expect(node.exec("ip", ["-n", p.pod, "-br", "addr", "show", "dev", "eth0"])).toContain(addressesOf(adds2[i]!)[0]);
    }
    await Promise.all(second.map((p) => chain("DEL", p.id, p.pod)));
    expect(kernelLeftovers(node)).toEqual([]);
    expect(readdirSync(join(node.work, "flannel"))).toEqual([]);
    expect(readdirSync(join(node.work, "data", "cbr0")).filter((f) => f !== "lock" && !f.startsWith("last_reserved_ip."))).toEqual([]);
    expect(
      readFileSync("/proc/locks", "utf8")
        .split("\n")
        .filter((l) => l.includes(`:${statSync(join(node.work, "data", "cbr0", "lock")).ino} `)),
    ).toEqual([]);
  }, 120_000);
});

describe("figures", () => {
  it("records parallel pods and problems", () => {
    console.log(`races: ${parallelPods} operations run concurrently in waits of up to 64, ${problems} problems`);
    record("races", { parallelOperations: parallelPods, problems, reference: haveReference });
    expect(parallelPods).toBeGreaterThan(0);
  });
});
