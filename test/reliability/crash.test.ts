import { execFileSync } from "node:child_process";
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CRASH_POINTS, type CrashPoint } from "../../plugins/registry.js";
import { record } from "./figures.js";
import { createNode, invoke, kernelLeftovers, type Invocation, type Node, type Outcome } from "./sandbox.js";

/**
 * Crashes: the flannel chain (flannel -> bridge -> host-local, one process) is killed with
 * SIGKILL at each point of ADD in turn (WEFT_CRASH_AT, lib/crash/crash.ts). Then either the
 * runtime's DEL and a GC, or (the runtime lost the pod) the pod's namespace goes and only GC runs.
 * Either way no veth, pod address, masquerade rule, reservation file or saved config may remain,
 * and the same container can be added again. Corrupt store files come after.
 */

const SUBNET_ENV =
  "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.1.1/24\nFLANNEL_IPV6_NETWORK=fd00:10:244::/56\n" +
  "FLANNEL_IPV6_SUBNET=fd00:10:244:1::1/64\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=false\n";

let node: Node;
let injected = 0;
let leaks = 0;

beforeAll(() => {
  node = createNode("crash");
  writeFileSync(join(node.work, "subnet.env"), SUBNET_ENV);
});
afterAll(() => node?.remove());

const flannelDir = () => join(node.work, "flannel");
const storeDir = () => join(node.work, "networks", "cbr0");

function conf(version = "1.1.0", extra: Record<string, unknown> = {}) {
  return {
    cniVersion: version,
    name: "cbr0",
    type: "flannel",
    subnetFile: join(node.work, "subnet.env"),
    dataDir: flannelDir(),
    delegate: { hairpinMode: true, isDefaultGateway: true },
    ipam: { dataDir: join(node.work, "networks") },
    ...extra,
  };
}

function call(verb: string, containerId: string, pod: string | undefined, extra: Partial<Invocation> = {}, config: unknown = conf()): Outcome {
  return invoke(node, { type: "flannel", verb, containerId, netns: pod ? `/run/netns/${pod}` : "", config, ...extra });
}

function gc(valid: Array<{ containerID: string; ifname: string }> = []): Outcome {
  return invoke(node, { type: "flannel", verb: "GC", config: { ...conf(), "cni.dev/valid-attachments": valid } });
}

/** Reservation files, weft's temporaries and saved configs: the disk half of "nothing left". */
function diskLeftovers(): string[] {
  const out: string[] = [];
  if (existsSync(storeDir())) {
    for (const f of readdirSync(storeDir())) if (f !== "lock" && !f.startsWith("last_reserved_ip.")) out.push(`store ${f}`);
  }
  if (existsSync(flannelDir())) for (const f of readdirSync(flannelDir())) out.push(`flannel ${f}`);
  return out;
}

/** flock(2)s held on the store's lock file by anyone: a dead holder's lock must be gone. */
function lockHolders(): string[] {
  const lock = join(storeDir(), "lock");
  if (!existsSync(lock)) return [];
  const ino = statSync(lock).ino;
  return readFileSync("/proc/locks", "utf8")
    .split("\n")
    .filter((l) => l.includes("FLOCK") && l.split(/\s+/)[5]?.endsWith(`:${ino}`));
}

function expectClean(when: string): void {
  const left = [...kernelLeftovers(node), ...diskLeftovers(), ...lockHolders()];
  if (left.length) leaks++;
  expect(left, when).toEqual([]);
}

function ok(o: Outcome, what: string): void {
  expect(o.status, `${what}: ${o.stdout} ${o.stderr.slice(-800)}`).toBe(0);
}

/** ADD with the crash point set: the process must die of SIGKILL there, or the point was never reached. */
function crashAdd(point: CrashPoint, containerId: string, pod: string): void {
  const o = call("ADD", containerId, pod, { env: { WEFT_CRASH_AT: point } });
  expect({ signal: o.signal, status: o.status }, `ADD did not reach ${point}: ${o.stdout} ${o.stderr.slice(-500)}`).toEqual({
    signal: "SIGKILL",
    status: null,
  });
  injected++;
}

// portmap is a plugin of its own in the chain; its point is exercised in its own test below.
const CHAIN_POINTS = CRASH_POINTS.filter((p) => !p.startsWith("portmap:"));

describe("kill -9 at every step of ADD", () => {
  it.each(CHAIN_POINTS)("%s, then DEL and GC: nothing left; the pod can be added again", (point) => {
    const pod = node.addPod();
    const id = `crash-del-${point.replace(/[^a-z]/g, "")}`;
    crashAdd(point, id, pod);
    ok(call("DEL", id, pod), "DEL after the crash");
    ok(gc(), "GC after the crash");
    expectClean(`after ${point}: DEL and GC`);
    // A retry (the runtime adds the pod again) works and cleans up as usual.
    const again = call("ADD", id, pod);
    ok(again, "ADD after the crash");
    ok(call("DEL", id, pod), "DEL");
    expectClean(`after ${point}: ADD again and DEL`);
  });

  it.each(CHAIN_POINTS)("%s, then the pod's namespace is gone and only GC runs: nothing left", (point) => {
    const pod = node.addPod();
    const id = `crash-gc-${point.replace(/[^a-z]/g, "")}`;
    crashAdd(point, id, pod);
    node.pods.splice(node.pods.indexOf(pod), 1);
    execFileSync("ip", ["netns", "delete", pod]);
    // A pod that stays valid keeps what it holds.
    const keeper = node.addPod();
    ok(call("ADD", "keeper", keeper), "ADD of a pod that stays");
    ok(gc([{ containerID: "keeper", ifname: "eth0" }]), "GC");
    const kept = diskLeftovers();
    expect(kept.filter((f) => f.startsWith("flannel"))).toEqual(["flannel keeper"]);
    expect(kept.filter((f) => f.startsWith("store"))).toHaveLength(2);
    ok(call("DEL", "keeper", keeper), "DEL of the pod that stayed");
    expectClean(`after ${point}: netns gone, GC`);
  });
});

describe("kill -9 in portmap", () => {
  it("portmap:rules, then DEL: its rules go", () => {
    const pod = node.addPod();
    const added = call("ADD", "crash-pm", pod);
    ok(added, "flannel ADD");
    const pm = {
      cniVersion: "1.1.0",
      name: "cbr0",
      type: "portmap",
      capabilities: { portMappings: true },
      runtimeConfig: { portMappings: [{ hostPort: 18080, containerPort: 80, protocol: "tcp" }] },
      prevResult: added.json,
    };
    const killed = invoke(node, {
      type: "portmap",
      verb: "ADD",
      containerId: "crash-pm",
      netns: `/run/netns/${pod}`,
      config: pm,
      env: { WEFT_CRASH_AT: "portmap:rules" },
    });
    expect(killed.signal).toBe("SIGKILL");
    injected++;
    expect(node.exec("nft", ["list", "ruleset"])).toContain("18080");
    ok(invoke(node, { type: "portmap", verb: "DEL", containerId: "crash-pm", netns: `/run/netns/${pod}`, config: pm }), "portmap DEL");
    ok(call("DEL", "crash-pm", pod), "flannel DEL");
    expect(node.exec("nft", ["list", "ruleset"])).not.toContain("18080");
    expectClean("after portmap:rules");
  });
});

describe("corrupt store files", () => {
  it("a truncated, empty or garbage last_reserved_ip file only restarts the round robin", () => {
    const pod = node.addPod();
    ok(call("ADD", "cursor-0", pod), "first ADD");
    ok(call("DEL", "cursor-0", pod), "DEL");
    for (const content of ["10.24", "", "\u0000\u00ff garbage", "fd00::1", "10.244.1.300"]) {
      writeFileSync(join(storeDir(), "last_reserved_ip.0"), content);
      writeFileSync(join(storeDir(), "last_reserved_ip.1"), content);
      const o = call("ADD", "cursor-1", pod);
      ok(o, `ADD with last_reserved_ip ${JSON.stringify(content)}`);
      ok(call("DEL", "cursor-1", pod), "DEL");
    }
    expectClean("after corrupt cursors");
  });

  it("an empty or garbage reservation file (a crash inside the reference's write) blocks only its address, and GC frees it", () => {
    const pod = node.addPod();
    writeFileSync(join(storeDir(), "10.244.1.2"), "");
    writeFileSync(join(storeDir(), "10.244.1.3"), "\u0000\u0001\u0002");
    writeFileSync(join(storeDir(), "10.244.1.4"), "half-written-id");
    writeFileSync(join(storeDir(), "last_reserved_ip.0"), "10.244.1.1");
    const o = call("ADD", "after-corrupt", pod);
    ok(o, "ADD beside corrupt files");
    const v4 = (o.json.ips as Array<{ address: string }>).find((ip) => ip.address.startsWith("10."))!.address;
    expect(["10.244.1.2/24", "10.244.1.3/24", "10.244.1.4/24"]).not.toContain(v4);
    ok(call("DEL", "after-corrupt", pod), "DEL");
    ok(gc(), "GC");
    expectClean("after GC of corrupt reservations");
  });

  it.each([
    ["truncated", (s: string) => s.slice(0, s.length >> 1)],
    ["empty", () => ""],
    ["not an object", () => "[]"],
    ["without a type", (s: string) => s.replace(/"type":"bridge",?/, "")],
    ["binary", () => "\u0000\u00ff\u00fe"],
  ])("a %s saved flannel config: DEL still frees the address and the veth, and removes the file", (_, corrupt) => {
    const pod = node.addPod();
    ok(call("ADD", "saved-corrupt", pod), "ADD");
    const saved = join(flannelDir(), "saved-corrupt");
    writeFileSync(saved, corrupt(readFileSync(saved, "utf8")));
    ok(call("DEL", "saved-corrupt", pod), "DEL with a corrupt saved config");
    expectClean("after DEL with a corrupt saved config");
  });
});

describe("figures", () => {
  it("records crash points injected and leaks found", () => {
    console.log(`crash points: ${CRASH_POINTS.length} named, ${injected} kills injected, ${leaks} leaks`);
    record("crash", { points: CRASH_POINTS.length, injected, leaks });
    expect(injected).toBe(CHAIN_POINTS.length * 2 + 1);
  });
});
