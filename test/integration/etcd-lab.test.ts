import { execFileSync, spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createEtcdLab, processesMentioning, type EtcdLab, type LabNode } from "../helpers/etcd-lab.js";
import { all, command, rootUser } from "../helpers/prerequisites.js";
import { waitUntil } from "../helpers/wait.js";

const needs = all(rootUser(), command("etcd", "etcd-server"), command("etcdctl", "etcd-client"));

/** Bounds for the cluster's own waits (start, election, catching up) on a loaded 2-core machine. */
const CLUSTER_WAIT_MS = 60_000;

describe.skipIf(needs.skip)(needs.title("the etcd lab: a 3-member cluster of Debian's etcd in namespaces"), () => {
  let lab: EtcdLab | undefined;
  let client: LabNode;

  beforeAll(async () => {
    lab = await createEtcdLab();
    client = lab.addNode("client");
    await lab.waitHealthy(CLUSTER_WAIT_MS);
  }, CLUSTER_WAIT_MS + 10_000);

  afterAll(async () => {
    await lab?.remove();
  }, 30_000);

  const theLab = () => lab ?? expect.unreachable("the lab was not made");
  const put = (key: string, value: string, endpoint: string) => theLab().etcdctl(["put", key, value], { endpoints: [endpoint], from: client.netns });
  /** A serializable read: what this member itself holds, not what the leader answers. */
  const localValue = async (key: string, endpoint: string) =>
    (await theLab().etcdctl(["get", key, "--print-value-only", "--consistency=s"], { endpoints: [endpoint], from: client.netns })).trim();

  it("forms one cluster on the underlay: three members, each on its own address, MTU 1500", async () => {
    const l = theLab();
    const list = await l.etcdctl(["member", "list", "-w", "simple"]);
    // id, status, name, peer URLs, client URLs, is learner
    const listed = list
      .trim()
      .split("\n")
      .map((line) => line.split(", "))
      .map(([, status, name, , clientUrls]) => ({ status, name, clientUrls }));
    expect(listed.sort((a, b) => a.name!.localeCompare(b.name!))).toEqual(
      l.members.map((m) => ({ status: "started", name: m.name, clientUrls: m.endpoint })),
    );
    expect(new Set(l.members.map((m) => m.address)).size).toBe(3);
    for (const m of l.members) {
      expect(m.address.startsWith(l.subnet.replace(/0\/24$/, ""))).toBe(true);
      const [eth0] = m.netns.ipJson<{ mtu: number }[]>("link", "show", "eth0");
      expect(eth0?.mtu).toBe(1500);
    }
    const [bridge] = l.underlay.ipJson<{ mtu: number }[]>("link", "show", "br0");
    expect(bridge?.mtu).toBe(1500);
  });

  it("a value put through one member is read from another, by etcdctl in a node namespace", async () => {
    const l = theLab();
    expect(client.address.startsWith(l.subnet.replace(/0\/24$/, ""))).toBe(true);
    await put("/lab/written-on-m0", "hello", l.endpoints[0]!);
    const read = await l.etcdctl(["get", "/lab/written-on-m0", "--print-value-only"], { endpoints: [l.endpoints[2]!], from: client.netns });
    expect(read.trim()).toBe("hello");
  });

  it(
    "the leader killed, the other two elect a new one and keep serving; restarted, it rejoins and catches up",
    async () => {
      const l = theLab();
      const old = await waitUntil("a leader", CLUSTER_WAIT_MS, () => l.leader());
      await l.member(old).kill();
      expect(l.member(old).running).toBe(false);

      const elected = await waitUntil("a new leader among the two left", CLUSTER_WAIT_MS, () => l.leader());
      expect(elected).not.toBe(old);
      const survivors = l.members.filter((m) => m.index !== old);
      await waitUntil("a write through the survivors", CLUSTER_WAIT_MS, () =>
        put("/lab/while-down", "written", survivors[0]!.endpoint).then(() => true),
      );
      const read = await l.etcdctl(["get", "/lab/while-down", "--print-value-only"], { endpoints: [survivors[1]!.endpoint], from: client.netns });
      expect(read.trim()).toBe("written");

      l.member(old).start();
      await l.waitHealthy(CLUSTER_WAIT_MS);
      // What it missed while down, in its own store: it took the cluster's log back.
      const caughtUp = await waitUntil("the restarted member to hold the write it missed", CLUSTER_WAIT_MS, async () =>
        (await localValue("/lab/while-down", l.member(old).endpoint)) === "written" ? true : undefined,
      );
      expect(caughtUp).toBe(true);
      expect(await l.leader()).toBeTypeOf("number");
      const list = await l.etcdctl(["member", "list", "-w", "simple"]);
      expect(list.trim().split("\n")).toHaveLength(3);
    },
    4 * CLUSTER_WAIT_MS,
  );

  it(
    "a stopped member (SIGTERM) leaves a serving quorum and starts again",
    async () => {
      const l = theLab();
      const member = l.member(1);
      await member.stop();
      expect(member.running).toBe(false);
      await l.waitHealthy(CLUSTER_WAIT_MS);
      await put("/lab/while-stopped", "yes", l.endpoints[0]!);
      member.start();
      await l.waitHealthy(CLUSTER_WAIT_MS);
      await waitUntil("the restarted member to hold the write it missed", CLUSTER_WAIT_MS, async () =>
        (await localValue("/lab/while-stopped", member.endpoint)) === "yes" ? true : undefined,
      );
    },
    3 * CLUSTER_WAIT_MS,
  );
});

describe.skipIf(needs.skip)(needs.title("the etcd lab's remove()"), () => {
  it(
    "leaves no process, namespace, link or file, with a node added and a member killed",
    async () => {
      const lab = await createEtcdLab();
      let made;
      try {
        lab.addNode("agent-a");
        await lab.waitHealthy(CLUSTER_WAIT_MS);
        await lab.member(0).kill();
        made = lab.resources();
        expect(made.processIds).toHaveLength(3);
      } finally {
        await lab.remove();
      }
      expectGone(made, lab.dir);
      await lab.remove();
    },
    CLUSTER_WAIT_MS + 30_000,
  );

  it(
    "removes everything after a member failed to start, and waitHealthy says why",
    async () => {
      const lab = await createEtcdLab({ members: 1 });
      let made;
      try {
        await lab.waitHealthy(CLUSTER_WAIT_MS);
        const member = lab.member(0);
        await member.kill();
        // etcd refuses a data dir that is a file, and exits.
        const dataDir = join(lab.dir, member.name);
        rmSync(dataDir, { recursive: true });
        writeFileSync(dataDir, "");
        member.start();
        await waitUntil("the member to exit", CLUSTER_WAIT_MS, () => (member.running ? undefined : true));
        await expect(lab.waitHealthy(1_000)).rejects.toThrow(/m0 \(not running\)[\s\S]*failed to list data directory/);
        made = lab.resources();
        expect(made.processIds).toHaveLength(2);
      } finally {
        await lab.remove();
      }
      expectGone(made, lab.dir);
    },
    CLUSTER_WAIT_MS + 30_000,
  );
});

describe.skipIf(needs.skip)(needs.title("a lab abandoned by a test process that died"), () => {
  it("is swept by the next lab made: its namespaces, temp dir and reservation", async () => {
    const deadPid = spawnSync("true").pid;
    const abandonedId = randomBytes(4).toString("hex");
    const abandonedDir = mkdtempSync(join(tmpdir(), "weft-etcd-lab-"));
    const abandonedNs = `weftlab-${abandonedId}-m0-x`;
    const reservation = `/run/weft-etcd-lab/abandoned-${abandonedId}`;
    execFileSync("ip", ["netns", "add", abandonedNs]);
    try {
      mkdirSync("/run/weft-etcd-lab", { recursive: true });
      writeFileSync(reservation, JSON.stringify({ pid: deadPid, id: abandonedId, dir: abandonedDir }));
      const lab = await createEtcdLab({ members: 1 });
      await lab.remove();
      expect(existsSync(`/run/netns/${abandonedNs}`)).toBe(false);
      expect(existsSync(abandonedDir)).toBe(false);
      expect(existsSync(reservation)).toBe(false);
    } finally {
      if (existsSync(`/run/netns/${abandonedNs}`)) execFileSync("ip", ["netns", "delete", abandonedNs]);
      rmSync(abandonedDir, { recursive: true, force: true });
      rmSync(reservation, { force: true });
    }
  }, 30_000);
});

function expectGone(made: ReturnType<EtcdLab["resources"]> | undefined, dir: string): void {
  expect(made).toBeDefined();
  if (!made) return;
  const namespaces = execFileSync("ip", ["netns", "list"], { encoding: "utf8" });
  for (const name of made.namespaces) {
    expect(namespaces).not.toContain(name);
    expect(existsSync(`/run/netns/${name}`)).toBe(false);
  }
  const hostLinks = JSON.parse(execFileSync("ip", ["-j", "link", "show"], { encoding: "utf8" })) as { ifname: string }[];
  for (const link of made.links) expect(hostLinks.map((l) => l.ifname)).not.toContain(link);
  for (const pid of made.processIds) expect(existsSync(`/proc/${pid}`)).toBe(false);
  expect(processesMentioning(dir)).toEqual([]);
  expect(existsSync(made.dir)).toBe(false);
  expect(existsSync(made.reservation)).toBe(false);
}
