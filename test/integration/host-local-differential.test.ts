import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { referencePlugins } from "../helpers/prerequisites.js";
import { addressesOf, makeSandbox, REFERENCE, run, snapshot, WEFT, type Call, type Sandbox } from "../helpers/host-local-harness.js";

// Drives weft's host-local and the reference (Debian's containernetworking-plugins) with the same
// calls, each against its own data dir, and after every call compares the outcome (exit status,
// addresses, error message) and the whole store directory: names, modes and bytes.

let sandbox: Sandbox;

beforeEach(() => {
  sandbox = makeSandbox();
});

afterEach(() => {
  sandbox.remove();
});

/** mulberry32: a fixed sequence of pseudo-random numbers for a given seed. */
function random(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

type Step = Omit<Call, "config"> & { label: string };

/**
 * 16 ADDs that exhaust the 13 IPv4 addresses, then a seeded mix: ADDs, DELs of live and unknown
 * attachments, duplicate ADDs, requested addresses (free, taken, the gateway), CHECKs.
 */
function sequence(seed: number, fill: number, total: number, requestable: () => string): Step[] {
  const next = random(seed);
  const pick = <T>(items: T[]): T => items[Math.floor(next() * items.length)]!;
  const live: { containerId: string; ifName: string }[] = [];
  const steps: Step[] = [];
  let counter = 0;
  const fresh = () => ({ containerId: `pod-${++counter}`, ifName: next() < 0.8 ? "eth0" : "net1" });
  for (let i = 0; i < fill; i++) {
    const a = fresh();
    live.push(a);
    steps.push({ label: "add", command: "ADD", ...a });
  }
  while (steps.length < total) {
    const r = next();
    if (r < 0.3 || live.length === 0) {
      const a = fresh();
      live.push(a);
      steps.push({ label: "add", command: "ADD", ...a });
    } else if (r < 0.6) {
      const a = live.splice(Math.floor(next() * live.length), 1)[0]!;
      steps.push({ label: "del", command: "DEL", ...a });
    } else if (r < 0.65) {
      steps.push({ label: "del unknown", command: "DEL", containerId: "never-added", ifName: "eth0" });
    } else if (r < 0.72) {
      steps.push({ label: "duplicate add", command: "ADD", ...pick(live) });
    } else if (r < 0.85) {
      const a = fresh();
      live.push(a);
      steps.push({ label: "requested", command: "ADD", ...a, args: `IgnoreUnknown=1;K8S_POD_NAME=p;IP=${requestable()}` });
    } else if (r < 0.93) {
      steps.push({ label: "check", command: "CHECK", ...(next() < 0.7 ? pick(live) : { containerId: "never-added", ifName: "eth0" }) });
    } else {
      // A DEL of a container whose ADD may have failed: the runtime sends one either way.
      steps.push({ label: "del twice", command: "DEL", ...pick(live) });
    }
  }
  return steps;
}

function drive(steps: Step[], ipam: Record<string, unknown>) {
  const config = (dir: string) => ({ cniVersion: "1.0.0", name: "diffnet", type: "bridge", ipam: { type: "host-local", dataDir: dir, ...ipam } });
  const refDir = join(sandbox.root, "reference");
  const weftDir = join(sandbox.root, "weft");
  const labels = new Map<string, number>();
  const errors: string[] = [];
  steps.forEach((step, i) => {
    const ref = run(REFERENCE, { ...step, config: config(refDir) });
    const ours = run(WEFT, { ...step, config: config(weftDir) }, sandbox.env);
    const where = `call ${i + 1} (${step.label} ${step.containerId}/${step.ifName}${step.args ? ` ${step.args}` : ""})`;
    expect(ours.status, `${where}: exit status; weft said ${ours.stdout}`).toBe(ref.status);
    if (ref.status === 0) {
      expect(addressesOf(ours), `${where}: addresses`).toEqual(addressesOf(ref));
    } else {
      errors.push(String(ref.json?.msg));
      expect(ours.json?.msg, `${where}: error message`).toBe(ref.json?.msg);
    }
    expect(snapshot(join(weftDir, "diffnet")), `${where}: store`).toEqual(snapshot(join(refDir, "diffnet")));
    labels.set(step.label, (labels.get(step.label) ?? 0) + 1);
  });
  return { labels, errors, store: snapshot(join(weftDir, "diffnet")) };
}

const needs = referencePlugins("host-local");
describe.skipIf(needs.skip)(needs.title("host-local against the reference, call by call"), () => {
  it("50 ADD/DEL/CHECK calls on a dual-stack config: same addresses, same errors, byte-identical stores", () => {
    const next = random(7);
    const steps = sequence(3, 16, 50, () => `10.66.0.${1 + Math.floor(next() * 15)}`);
    expect(steps).toHaveLength(50);
    const { labels, errors, store } = drive(steps, { ranges: [[{ subnet: "10.66.0.0/28" }], [{ subnet: "fd66::/124" }]] });
    // The sequence covers what it claims to: exhaustion, wrap-around, every kind of call.
    for (const kind of [
      /no IP addresses available in range set: 10\.66\.0\.1-10\.66\.0\.14$/,
      /duplicate allocation is not allowed/,
      /requested IP address .* is not available/,
      /requested ip 10\.66\.0\.1 is subnet's gateway/,
      /Failed to find address added by container never-added/,
    ]) {
      expect(
        errors.some((m) => kind.test(m)),
        String(kind),
      ).toBe(true);
    }
    for (const label of ["add", "del", "del unknown", "duplicate add", "requested", "check"]) expect(labels.get(label), label).toBeGreaterThan(0);
    expect(Object.keys(store)).toEqual(expect.arrayContaining(["lock", "last_reserved_ip.0", "last_reserved_ip.1"]));
  });

  it("the same on a legacy single range plus a set of two ranges with a gateway inside one", () => {
    const next = random(11);
    const steps = sequence(5, 12, 40, () => (next() < 0.5 ? `10.67.0.${Math.floor(next() * 16)}` : `10.68.0.${1 + Math.floor(next() * 14)}`));
    drive(steps, {
      subnet: "10.67.0.0/28",
      rangeStart: "10.67.0.4",
      rangeEnd: "10.67.0.12",
      gateway: "10.67.0.8",
      ranges: [[{ subnet: "10.68.0.0/29" }, { subnet: "10.68.0.8/29", gateway: "10.68.0.12" }]],
    });
  });
});
