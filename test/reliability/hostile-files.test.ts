import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { record } from "./figures.js";
import {
  createNode,
  flannelConf,
  invokeBounded,
  kernelLeftovers,
  killLeftInvocations,
  SUBNET_ENV,
  type BoundedOutcome,
  type BoundedStdin,
  type Invocation,
  type Node,
} from "./sandbox.js";

/**
 * What a stray file or a tenant's input can do to a plugin: a FIFO or a device where a store keeps
 * a file, a symlinked network directory, a DEL without the pod's namespace naming another pod's
 * veth, and inputs far larger than any real config. Each run is killed after a hard timeout and
 * its peak RSS read (GNU time): a hang or a runaway allocation fails the test, not the machine.
 */

/**
 * About three times a plugin's usual peak (40 to 47 MB here), below what holding the 68 MB input
 * whole costs, far below what parsing it or reading /dev/zero reaches (GBs).
 */
const PEAK_RSS_BOUND_KIB = 128 * 1024;
const HARD_TIMEOUT_MS = 20_000;
/** Room for every invocation of a test to hit the hard timeout, so a hang is reported as one. */
const TEST_TIMEOUT_MS = 180_000;

let node: Node;
const peaks: Record<string, number> = {};
beforeAll(() => {
  node = createNode("hfiles");
  writeFileSync(join(node.work, "subnet.env"), SUBNET_ENV);
});
afterAll(() => {
  killLeftInvocations();
  record("hostile-files", { peakRssKiB: peaks });
  node?.remove();
});

const flannelDir = () => join(node.work, "flannel");
const networkDir = () => join(node.work, "networks", "cbr0");

async function run(label: string, inv: Omit<Invocation, "type"> & { type?: string }, stdin?: BoundedStdin): Promise<BoundedOutcome> {
  const o = await invokeBounded(node, { type: "flannel", ...inv }, HARD_TIMEOUT_MS, stdin);
  expect(o.killed, `${label}: hung, killed after ${HARD_TIMEOUT_MS} ms`).toBe(false);
  expect(o.peakRssKiB, `${label}: no peak RSS (${o.stderr.slice(-300)})`).toBeDefined();
  expect(o.peakRssKiB!, `${label}: peak RSS`).toBeLessThan(PEAK_RSS_BOUND_KIB);
  peaks[label] = o.peakRssKiB!;
  return o;
}

const flannel = (label: string, verb: string, id: string, pod: string | undefined, config: unknown = flannelConf(node)) =>
  run(label, { verb, containerId: id, netns: pod ? `/run/netns/${pod}` : "", config });

function expectOk(o: BoundedOutcome): any {
  expect(o.status, o.stdout + o.stderr).toBe(0);
  return o.json;
}

function expectError(o: BoundedOutcome, code: number, ...texts: string[]): void {
  expect(o.status, o.stdout + o.stderr).toBe(1);
  expect(o.json?.code, o.stdout).toBe(code);
  for (const text of texts) expect(o.json?.msg, o.stdout).toContain(text);
}

/** The store's files other than its lock and cursor: the reservations left. */
function reservations(): string[] {
  if (!existsSync(networkDir())) return [];
  return readdirSync(networkDir()).filter((n) => n !== "lock" && !n.startsWith("last_reserved_ip."));
}

function expectNothingLeft(): void {
  expect(kernelLeftovers(node)).toEqual([]);
  expect(reservations()).toEqual([]);
  expect(existsSync(flannelDir()) ? readdirSync(flannelDir()) : []).toEqual([]);
}

describe("a FIFO or a device where a store keeps a file", { timeout: TEST_TIMEOUT_MS }, () => {
  it("flannel's saved config replaced by a FIFO: DEL completes with a rebuilt config and removes it", async () => {
    const pod = node.addPod();
    expectOk(await flannel("flannel ADD", "ADD", "fifo-del", pod));
    const saved = join(flannelDir(), "fifo-del");
    rmSync(saved);
    execFileSync("mkfifo", [saved]);
    expectOk(await flannel("flannel DEL, saved config a FIFO", "DEL", "fifo-del", pod));
    expect(existsSync(saved)).toBe(false);
    expectNothingLeft();
  });

  it("flannel's saved config replaced by /dev/zero (a device node, a symlink): CHECK is a clear error naming it, DEL completes", async () => {
    const pod = node.addPod();
    const added = expectOk(await flannel("flannel ADD", "ADD", "zero", pod));
    const saved = join(flannelDir(), "zero");
    const check = () => flannel("flannel CHECK, saved config /dev/zero", "CHECK", "zero", pod, flannelConf(node, { prevResult: added }));
    rmSync(saved);
    execFileSync("mknod", [saved, "c", "1", "5"]);
    expectError(await check(), 5, saved, "is a character device, not a regular file");
    rmSync(saved);
    symlinkSync("/dev/zero", saved);
    expectError(await check(), 5, saved, "is a symlink");
    rmSync(saved);
    execFileSync("mknod", [saved, "c", "1", "5"]);
    expectOk(await flannel("flannel DEL, saved config /dev/zero", "DEL", "zero", pod));
    expect(existsSync(saved)).toBe(false);
    expectNothingLeft();
  });

  it("flannel's saved config larger than 1 MiB: CHECK is a clear error naming it, DEL completes", async () => {
    const pod = node.addPod();
    const added = expectOk(await flannel("flannel ADD", "ADD", "huge", pod));
    const saved = join(flannelDir(), "huge");
    writeFileSync(saved, JSON.stringify({ cniVersion: "1.1.0", name: "cbr0", type: "bridge", pad: "x".repeat(2 * 1024 * 1024) }));
    expectError(
      await flannel("flannel CHECK, saved config 2 MiB", "CHECK", "huge", pod, flannelConf(node, { prevResult: added })),
      5,
      saved,
      "is larger than 1048576 bytes",
    );
    expectOk(await flannel("flannel DEL, saved config 2 MiB", "DEL", "huge", pod));
    expect(existsSync(saved)).toBe(false);
    expectNothingLeft();
  });

  it("flannel's saved config a regular file that reports size 0 and holds 5 MB (/proc/kallsyms bound over it): read no further than 1 MiB", async () => {
    const pod = node.addPod();
    const added = expectOk(await flannel("flannel ADD", "ADD", "sizeless", pod));
    const saved = join(flannelDir(), "sizeless");
    execFileSync("mount", ["--bind", "/proc/kallsyms", saved]);
    try {
      expectError(
        await flannel("flannel CHECK, saved config /proc/kallsyms", "CHECK", "sizeless", pod, flannelConf(node, { prevResult: added })),
        5,
        saved,
        "is larger than 1048576 bytes",
      );
    } finally {
      execFileSync("umount", [saved]);
    }
    expectOk(await flannel("flannel DEL", "DEL", "sizeless", pod));
    expectNothingLeft();
  });

  it("host-local: a FIFO and a device named as reservations, a FIFO as the cursor: ADD passes them by, GC leaves them", async () => {
    mkdirSync(networkDir(), { recursive: true });
    const planted = ["10.244.1.2", "10.244.1.3", "last_reserved_ip.0"].map((n) => join(networkDir(), n));
    for (const path of planted) rmSync(path, { force: true });
    try {
      execFileSync("mkfifo", [planted[0]!]);
      execFileSync("mknod", [planted[1]!, "c", "1", "5"]);
      execFileSync("mkfifo", [planted[2]!]);
      const pod = node.addPod();
      const added = expectOk(await flannel("host-local ADD, FIFO reservation and cursor", "ADD", "fifo-res", pod));
      expect(added.ips.map((ip: { address: string }) => ip.address)).toEqual(["10.244.1.4/24"]);
      expectOk(await flannel("host-local DEL, FIFO reservation", "DEL", "fifo-res", pod));
      const gc = await flannel("host-local GC, FIFO reservation", "GC", "", undefined, flannelConf(node, { "cni.dev/valid-attachments": [] }));
      expectOk(gc);
      expect(existsSync(planted[0]!) && existsSync(planted[1]!)).toBe(true);
    } finally {
      for (const path of planted) rmSync(path, { force: true });
    }
    expectNothingLeft();
  });

  it("host-local: a FIFO as the lock file: ADD is a clear error naming it (code 5), nothing made", async () => {
    mkdirSync(networkDir(), { recursive: true });
    const lock = join(networkDir(), "lock");
    rmSync(lock, { force: true });
    try {
      execFileSync("mkfifo", [lock]);
      const pod = node.addPod();
      expectError(await flannel("host-local ADD, FIFO lock", "ADD", "fifo-lock", pod), 5, lock, "is a FIFO, not a regular file");
      expectNothingLeft();
    } finally {
      rmSync(lock, { force: true });
    }
  });
});

describe("a symlinked network directory", { timeout: TEST_TIMEOUT_MS }, () => {
  it("is refused by ADD, DEL and GC with a clear error; nothing in its target is read, removed or created", async () => {
    const target = join(node.work, "network-elsewhere");
    const dataDir = join(node.work, "networks-linked");
    mkdirSync(target);
    mkdirSync(dataDir);
    // A reservation whose holder is gone: GC would remove it if it followed the link.
    writeFileSync(join(target, "10.244.1.9"), "gone\r\neth0");
    symlinkSync(target, join(dataDir, "cbr0"));
    const hostLocal = (verb: string, id: string, pod: string | undefined, extra: Record<string, unknown> = {}) =>
      run(`host-local ${verb}, symlinked network directory`, {
        type: "host-local",
        verb,
        containerId: id,
        netns: pod ? `/run/netns/${pod}` : "",
        config: { cniVersion: "1.1.0", name: "cbr0", type: "host-local", ipam: { type: "host-local", subnet: "10.244.1.0/24", dataDir }, ...extra },
      });
    const refusal = [join(dataDir, "cbr0"), "is a symlink, not a directory"];
    expectError(await hostLocal("GC", "", undefined, { "cni.dev/valid-attachments": [] }), 5, ...refusal);
    expectError(await hostLocal("DEL", "gone", node.addPod()), 5, ...refusal);
    const pod = node.addPod();
    expectError(
      await flannel("flannel ADD, symlinked network directory", "ADD", "linked", pod, flannelConf(node, { ipam: { dataDir } })),
      5,
      ...refusal,
    );
    expect(readdirSync(target)).toEqual(["10.244.1.9"]);
    expect(readFileSync(join(target, "10.244.1.9"), "utf8")).toBe("gone\r\neth0");
    expectNothingLeft();
  });
});

describe("bridge DEL without the pod's namespace", { timeout: TEST_TIMEOUT_MS }, () => {
  const hostVeths = () =>
    (JSON.parse(node.ip("-j", "-d", "link", "show")) as Array<{ ifname: string; linkinfo?: { info_kind?: string } }>)
      .filter((l) => l.linkinfo?.info_kind === "veth")
      .map((l) => l.ifname);

  it.each([
    ["CNI_NETNS empty", () => ""],
    ["CNI_NETNS a file that is no namespace", () => join(node.work, "not-a-netns")],
  ])("%s: another pod's veth named in prevResult stays, with its address", async (_case, netnsPath) => {
    const pod = node.addPod();
    const added = expectOk(await flannel("flannel ADD", "ADD", "victim", pod));
    const victimVeth = (added.interfaces as Array<{ name: string; sandbox?: string }>).find((i) => !i.sandbox && i.name !== "cni0")!.name;
    expect(hostVeths()).toEqual([victimVeth]);
    const netns = netnsPath();
    if (netns) writeFileSync(netns, "");
    const del = await run("bridge DEL without netns", {
      type: "bridge",
      verb: "DEL",
      containerId: "intruder",
      netns,
      config: {
        cniVersion: "1.1.0",
        name: "cbr0",
        type: "bridge",
        bridge: "cni0",
        ipam: { type: "host-local", subnet: "10.244.1.0/24", dataDir: join(node.work, "networks") },
        prevResult: added,
      },
    });
    expectOk(del);
    expect(hostVeths()).toEqual([victimVeth]);
    expect(execFileSync("ip", ["-n", pod, "-j", "link", "show", "eth0"], { encoding: "utf8" })).toContain('"eth0"');
    expect(reservations()).toEqual([added.ips[0].address.split("/")[0]]);
    expectOk(await flannel("flannel DEL", "DEL", "victim", pod));
    if (netns) rmSync(netns);
    expectNothingLeft();
  });
});

describe("inputs larger than any real config", { timeout: TEST_TIMEOUT_MS }, () => {
  const hostLocalConf = (extra: Record<string, unknown> = {}) => ({
    cniVersion: "1.1.0",
    name: "sizes",
    type: "host-local",
    ipam: { type: "host-local", subnet: "10.244.7.0/24", dataDir: join(node.work, "sizes") },
    ...extra,
  });
  const hostLocal = async (label: string, verb: string, config: unknown, stdin?: BoundedStdin) => {
    const pod = node.addPod();
    return run(label, { type: "host-local", verb, containerId: "sizes", netns: `/run/netns/${pod}`, config }, stdin);
  };

  it("a 68 MB config of 5,000,000 keys is refused with code 7 after reading 1 MiB", async () => {
    const keys: string[] = [];
    for (let i = 0; i < 5_000_000; i++) keys.push(`"k${i}":0`);
    const head = JSON.stringify(hostLocalConf()).slice(0, -1);
    const stdin = Buffer.from(`${head},${keys.join(",")}}`);
    keys.length = 0;
    expect(stdin.length).toBeGreaterThan(60_000_000);
    expectError(await hostLocal("68 MB config", "ADD", undefined, stdin), 7, "larger than 1048576 bytes");
    expect(existsSync(join(node.work, "sizes"))).toBe(false);
  });

  it("a stdin that never ends is refused with code 7 after reading 1 MiB", async () => {
    let first = true;
    const chunk = Buffer.from('"k":0,'.repeat(10_000));
    const endless = () => {
      if (!first) return chunk;
      first = false;
      return Buffer.from(`${JSON.stringify(hostLocalConf()).slice(0, -1)},`);
    };
    expectError(await hostLocal("endless stdin", "ADD", undefined, endless), 7, "larger than 1048576 bytes");
    expect(existsSync(join(node.work, "sizes"))).toBe(false);
  });

  it("a config just under 1 MiB is read whole and works", async () => {
    const config = hostLocalConf({ pad: "" });
    const padding = 1024 * 1024 - Buffer.byteLength(JSON.stringify(config));
    const added = expectOk(await hostLocal("config of 1 MiB", "ADD", { ...config, pad: "x".repeat(padding) }));
    expect(added.ips[0].address).toBe("10.244.7.2/24");
    expectOk(await hostLocal("config of 1 MiB, DEL", "DEL", hostLocalConf()));
    rmSync(join(node.work, "sizes"), { recursive: true });
  });

  it("a prevResult of 1,000,000 addresses is refused with code 7", async () => {
    const ips = Array.from({ length: 1_000_000 }, (_, i) => ({ address: `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}/32` }));
    expectError(
      await hostLocal("prevResult of 1,000,000 ips", "ADD", hostLocalConf({ prevResult: { cniVersion: "1.1.0", ips } })),
      7,
      "larger than 1048576 bytes",
    );
    expect(existsSync(join(node.work, "sizes"))).toBe(false);
  });

  it.each([
    ["ips", { ips: Array.from({ length: 1025 }, () => ({ address: "10.244.7.9/24" })) }],
    ["routes", { routes: Array.from({ length: 1025 }, () => ({ dst: "0.0.0.0/0" })) }],
    ["interfaces", { interfaces: Array.from({ length: 1025 }, () => ({ name: "eth0" })) }],
    ["dns.nameservers", { dns: { nameservers: Array.from({ length: 1025 }, () => "10.0.0.10") } }],
  ])("a prevResult with 1,025 %s is refused with code 7 naming the list", async (list, prevResult) => {
    expectError(
      await hostLocal(`prevResult of 1,025 ${list}`, "ADD", hostLocalConf({ prevResult: { cniVersion: "1.1.0", ...prevResult } })),
      7,
      `prevResult: ${list} has 1025 entries; at most 1024`,
    );
    expect(existsSync(join(node.work, "sizes"))).toBe(false);
  });

  it.each([
    ["65 range sets", "ipam.ranges", Array.from({ length: 65 }, (_, i) => [{ subnet: `10.245.${i}.0/24` }]), "must NOT have more than 64 items"],
    [
      "1,025 ranges in one set",
      "ipam.ranges[0]",
      [Array.from({ length: 1025 }, (_, i) => ({ subnet: `10.${246 + (i >> 8)}.${i & 255}.0/24` }))],
      "must NOT have more than 1024 items",
    ],
  ])("%s are refused with code 7 naming the list", async (label, field, ranges, text) => {
    const config = hostLocalConf();
    const o = await hostLocal(label, "ADD", { ...config, ipam: { ...config.ipam, subnet: undefined, ranges } });
    expectError(o, 7, `${field} ${text}`);
    expect(existsSync(join(node.work, "sizes"))).toBe(false);
  });
});
