import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, afterEach, beforeAll, describe, expect, it, type TestContext } from "vitest";
import { createAgentLab, NETWORK, type AgentLab, type AgentNode, type Lease, type Pod } from "../helpers/agent-lab.js";
import { cniDriver, cniDriverPrerequisite } from "../helpers/cni-driver.js";
import { all, command, rootUser } from "../helpers/prerequisites.js";
import { waitUntil } from "../helpers/wait.js";

// Faults in the cluster lab, each a scenario on one vxlan lab, the destructive ones last: an agent
// restarted under traffic, kernel entries deleted by hand, a lease deleted in etcd, a compaction
// past a cut-off agent's watch, the etcd leader killed, all of etcd stopped for 30 s, a node
// renumbered. Then invalid network configs, on a lab of their own.

const needs = all(rootUser(), command("etcd", "etcd-server"), command("etcdctl", "etcd-client"), cniDriverPrerequisite());

const LAB_WAIT_MS = 90_000;
/** The agents' periodic full reconcile (--route-resync), seconds. */
const ROUTE_RESYNC_S = 3;
/** What the issue allows other nodes to follow a lease's change or removal. */
const PEER_FOLLOW_MS = 5_000;
/** A reconnecting agent's backoff tops out at 5 s; a re-list and the programming come after. */
const RECOVER_MS = 30_000;
const CLUSTER_WAIT_MS = 60_000;

function reportOnFailure(lab: () => AgentLab | undefined) {
  return (context: TestContext) => {
    if (context.task.result?.state === "fail") console.error(lab()?.report() ?? "no lab");
  };
}

/** The entries `node` holds for the peer leasing `lease`. */
function entriesFor(node: AgentNode, lease: Lease): string[] {
  const vtep = lease.subnet.replace(/\/24$/, "");
  const { routes, neighbours, fdb } = node.vxlanState();
  return [
    ...routes.filter((r) => r.startsWith(`${lease.subnet} `)),
    ...neighbours.filter((n) => n.startsWith(`${vtep} `)),
    ...fdb.filter((f) => f.startsWith(`${lease.vtepMac} `) || f.endsWith(` dst ${lease.publicIp}`)),
  ];
}

describe.skipIf(needs.skip)(needs.title("faults in a 3-node vxlan lab"), () => {
  let lab: AgentLab | undefined;
  const pods: Pod[] = [];
  const theLab = () => lab ?? expect.unreachable("the lab was not made");

  beforeAll(async () => {
    cniDriver(); // built here, within the hook's bound, not in the first test that adds a pod
    lab = await createAgentLab({ nodes: 3, backend: "vxlan", routeResync: ROUTE_RESYNC_S });
    for (const node of lab.nodes) pods.push(await lab.addPod(node, `web-${node.name}`));
    await lab.waitConverged(CLUSTER_WAIT_MS);
    expect(await lab.pingAcross(pods)).toEqual([]);
  }, LAB_WAIT_MS);

  afterEach(reportOnFailure(() => lab));

  afterAll(async () => {
    await lab?.remove();
  }, 60_000);

  it("an agent restarted under a continuous cross-node ping: no reply lost, the same subnet and VTEP MAC, one etcd lease per node", async () => {
    const l = theLab();
    const node = l.node(1);
    const before = { subnet: node.subnet(), mac: node.vtepMac(), lease: await l.leaseOf(node) };
    const toNode = l.continuousPing(pods[0]!, pods[1]!.ip);
    const fromNode = l.continuousPing(pods[1]!, pods[2]!.ip);
    await sleep(500);
    expect(await node.stop()).toBe(0);
    // SIGTERM leaves the data path: the device and the peers' entries stay while no agent runs.
    expect(node.vtepMac()).toBe(before.mac);
    await sleep(1000);
    node.start();
    await node.waitReady();
    const [to, from] = await Promise.all([toNode.stop(), fromNode.stop()]);
    expect(to.lost).toEqual([]);
    expect(from.lost).toEqual([]);
    expect(to.transmitted).toBeGreaterThan(20);
    expect(node.subnet()).toBe(before.subnet);
    expect(node.vtepMac()).toBe(before.mac);
    const after = await l.leaseOf(node);
    expect(after?.subnet).toBe(before.subnet);
    expect(after?.vtepMac).toBe(before.mac);
    // One etcd lease per node: a restart that grants a new one revokes the old.
    expect(await l.etcdLeaseIds()).toHaveLength(l.nodes.length);
    await l.waitConverged(RECOVER_MS);
  }, 60_000);

  it("a route, a neighbour and an fdb entry deleted by hand are restored within the resync bound", async () => {
    const l = theLab();
    const node = l.node(0);
    const leases = await l.waitConverged(RECOVER_MS);
    const [one, two] = leases.filter((x) => x.publicIp !== node.address);
    node.netns.exec("ip", ["route", "del", one!.subnet, "dev", "flannel.1"]);
    node.netns.exec("bridge", ["fdb", "del", two!.vtepMac!, "dev", "flannel.1", "dst", two!.publicIp]);
    node.netns.exec("ip", ["neigh", "del", two!.subnet.replace(/\/24$/, ""), "dev", "flannel.1"]);
    await waitUntil("the deleted entries restored", ROUTE_RESYNC_S * 1000 + 2000, () =>
      JSON.stringify(node.vxlanState()) === JSON.stringify(l.expectedVxlanState(node, leases)) ? true : undefined,
    );
    expect(await l.pingAcross(pods)).toEqual([]);
  }, 60_000);

  it("a node's lease deleted in etcd: every other node removes its route, neighbour and fdb entry within 5 s; the node re-acquires its subnet", async () => {
    const l = theLab();
    const node = l.node(2);
    const others = l.nodes.filter((n) => n !== node);
    const lease = (await l.leaseOf(node))!;
    for (const other of others) expect(entriesFor(other, lease)).toHaveLength(3);

    // Cut off etcd, the node cannot take its lease back before the others have seen it gone.
    node.partitionFromEtcd();
    await l.deleteLease(lease.subnet);
    await waitUntil("the other nodes without the deleted lease's entries", PEER_FOLLOW_MS, () =>
      others.every((other) => entriesFor(other, lease).length === 0) ? true : undefined,
    );
    node.healPartition();
    const back = await waitUntil("the node's lease back", RECOVER_MS, async () => await l.leaseOf(node));
    expect(back.subnet).toBe(lease.subnet);
    expect(back.vtepMac).toBe(lease.vtepMac);
    await node.waitReady();
    await l.waitConverged(RECOVER_MS);

    // Connected, it takes the lease back at once.
    await l.deleteLease(lease.subnet);
    const again = await waitUntil("the node's lease back again", RECOVER_MS, async () => await l.leaseOf(node));
    expect(again.subnet).toBe(lease.subnet);
    await l.waitConverged(RECOVER_MS);
    expect(node.running).toBe(true);
    expect(await l.pingAcross(pods)).toEqual([]);
  }, 90_000);

  it("etcd compacted past a cut-off agent's watch: reconnected, the agent recovers and misses no put, change or delete", async () => {
    const l = theLab();
    const node = l.node(0);
    // Other nodes' leases the cut-off agent has programmed: one deleted, one moved while it is away.
    await l.putLease("10.244.251.0/24", "172.31.255.251", "0a:58:0a:f4:fb:00");
    await l.putLease("10.244.252.0/24", "172.31.255.252", "0a:58:0a:f4:fc:00");
    await l.waitConverged(RECOVER_MS);
    const revisionBefore = (await node.metrics()).get("weft_agent_watch_revision");
    const logOffset = node.log().length;

    node.partitionFromEtcd();
    try {
      await l.putLease("10.244.253.0/24", "172.31.255.253", "0a:58:0a:f4:fd:00");
      await l.deleteLease("10.244.251.0/24");
      await l.putLease("10.244.252.0/24", "172.31.255.242", "0a:58:0a:f4:fc:00");
      const revision = await l.revision();
      await l.etcd.etcdctl(["compact", String(revision)]);
      expect(revision).toBeGreaterThan(revisionBefore ?? Infinity);
      // The others follow; the cut-off node still holds the old picture.
      await l.waitConverged(
        RECOVER_MS,
        l.nodes.filter((n) => n !== node),
      );
      expect(node.vxlanState().fdb).toContain("0a:58:0a:f4:fb:00 dst 172.31.255.251");
    } finally {
      node.healPartition();
    }
    await l.waitConverged(RECOVER_MS);
    expect(node.vxlanState().fdb).toContain("0a:58:0a:f4:fc:00 dst 172.31.255.242");
    await node.waitReady();
    // The path taken: the reopened watch refused as compacted, the leases listed anew.
    expect(node.log().slice(logOffset)).toMatch(/compacted/);

    await l.deleteLease("10.244.252.0/24");
    await l.deleteLease("10.244.253.0/24");
    await l.waitConverged(RECOVER_MS);
  }, 120_000);

  it("the etcd leader killed: pods keep talking, agents stay ready, and a new node joins through the two members left", async () => {
    const l = theLab();
    const old = await waitUntil("a leader", CLUSTER_WAIT_MS, () => l.etcd.leader());
    await l.etcd.member(old).kill();
    await waitUntil("a new leader", CLUSTER_WAIT_MS, () => l.etcd.leader());
    expect(await l.pingAcross(pods)).toEqual([]);

    const joined = l.addNode("n3");
    await joined.waitReady();
    const pod = await l.addPod(joined, "web-n3");
    pods.push(pod);
    const leases = await l.waitConverged(RECOVER_MS);
    expect(leases.map((x) => x.publicIp)).toContain(joined.address);
    expect(await l.pingAcross(pods)).toEqual([]);
    for (const node of l.nodes) await waitUntil(`${node.name} ready`, 10_000, async () => ((await node.readyz()) === 200 ? true : undefined));

    l.etcd.member(old).start();
    await l.etcd.waitHealthy(CLUSTER_WAIT_MS);
  }, 180_000);

  it("all of etcd stopped for 30 s: pod traffic never stops, the data path stays, /readyz says so; restarted, the agents reconnect and follow changes", async () => {
    const l = theLab();
    const before = new Map(l.nodes.map((n) => [n, n.vxlanState()]));
    const pings = [l.continuousPing(pods[0]!, pods[1]!.ip, 100), l.continuousPing(pods[2]!, pods.at(-1)!.ip, 100)];
    const stoppedAt = Date.now();
    await Promise.all(l.etcd.members.map((m) => m.stop()));
    for (const node of l.nodes) {
      await waitUntil(`${node.name}'s /readyz 503 while etcd is unreachable`, 20_000, async () => ((await node.readyz()) === 503 ? true : undefined));
    }
    await sleep(Math.max(0, 30_000 - (Date.now() - stoppedAt)));
    for (const node of l.nodes) {
      expect(node.running, node.name).toBe(true);
      expect(node.vxlanState(), node.name).toEqual(before.get(node));
    }
    for (const member of l.etcd.members) member.start();
    await l.etcd.waitHealthy(CLUSTER_WAIT_MS);
    await Promise.all(l.nodes.map((n) => n.waitReady(RECOVER_MS)));
    const results = await Promise.all(pings.map((p) => p.stop()));
    for (const result of results) {
      expect(result.lost).toEqual([]);
      expect(result.transmitted).toBeGreaterThan(250);
    }

    // Reconnected watches: a lease written now reaches every node, and its removal too.
    await l.putLease("10.244.254.0/24", "172.31.255.254", "0a:58:0a:f4:fe:00");
    const leases = await l.waitConverged(RECOVER_MS);
    expect(leases.map((x) => x.subnet)).toContain("10.244.254.0/24");
    await l.deleteLease("10.244.254.0/24");
    await l.waitConverged(RECOVER_MS);
  }, 150_000);

  it("a node's public IP changed under its agent: the node keeps its subnet and VTEP MAC, every other node moves its fdb entry within 5 s", async () => {
    const l = theLab();
    const node = l.node(1);
    const others = l.nodes.filter((n) => n !== node);
    const before = (await l.leaseOf(node))!;
    const renumbered = node.address.replace(/\.\d+$/, ".150");
    node.changeAddress(renumbered);
    const moved = await waitUntil("the node's lease with its new address", RECOVER_MS, async () => {
      const leases = await l.leases();
      const lease = leases.find((x) => x.publicIp === renumbered);
      if (!lease) throw new Error(`no lease has ${renumbered}: ${leases.map((x) => `${x.subnet} ${x.publicIp}`).join(", ")}`);
      return lease;
    });
    expect(moved.subnet).toBe(before.subnet);
    expect(moved.vtepMac).toBe(before.vtepMac);
    await waitUntil("the other nodes' fdb entries moved", PEER_FOLLOW_MS, () =>
      others.every((other) => {
        const fdb = other.vxlanState().fdb;
        return fdb.includes(`${moved.vtepMac} dst ${renumbered}`) && !fdb.some((f) => f.endsWith(` dst ${before.publicIp}`));
      })
        ? true
        : undefined,
    );
    expect((await l.leases()).map((x) => x.publicIp)).not.toContain(before.publicIp);
    await l.waitConverged(RECOVER_MS);
    expect(await l.pingAcross(pods)).toEqual([]);

    // Restarted with its new address, the agent takes its own lease again.
    await node.restart();
    expect(node.subnet()).toBe(before.subnet);
    expect((await l.leaseOf(node))?.subnet).toBe(before.subnet);
    await l.waitConverged(RECOVER_MS);
  }, 90_000);
});

describe.skipIf(needs.skip)(needs.title("invalid network configs: each named in the agent's log, nothing applied, then fixed"), () => {
  let lab: AgentLab | undefined;
  const theLab = () => lab ?? expect.unreachable("the lab was not made");

  beforeAll(async () => {
    lab = await createAgentLab({ nodes: 1, backend: "vxlan", config: null, waitReady: false });
  }, LAB_WAIT_MS);

  afterEach(reportOnFailure(() => lab));

  afterAll(async () => {
    await lab?.remove();
  }, 60_000);

  const cases: Array<[string, string, RegExp]> = [
    ["malformed JSON", `{"Network": "${NETWORK}", "Backend": {"Type": "vxlan"}`, /not valid JSON/],
    ["no Network", `{"Backend": {"Type": "vxlan"}}`, /Network is missing/],
    ["SubnetLen out of range", `{"Network": "${NETWORK}", "SubnetLen": 31, "Backend": {"Type": "vxlan"}}`, /SubnetLen is 31/],
    ["a network too small", `{"Network": "10.244.0.0/30", "Backend": {"Type": "vxlan"}}`, /Network 10\.244\.0\.0\/30 is too small/],
    [
      "SubnetMin outside the network",
      `{"Network": "${NETWORK}", "SubnetMin": "10.245.0.0", "Backend": {"Type": "vxlan"}}`,
      /SubnetMin 10\.245\.0\.0 is outside Network/,
    ],
    [
      "SubnetMax below SubnetMin",
      `{"Network": "${NETWORK}", "SubnetMin": "10.244.9.0", "SubnetMax": "10.244.2.0", "Backend": {"Type": "vxlan"}}`,
      /SubnetMin 10\.244\.9\.0 is above SubnetMax/,
    ],
    ["an unknown backend type", `{"Network": "${NETWORK}", "Backend": {"Type": "vxlam"}}`, /Backend.*vxlam|vxlam.*Backend/],
  ];

  function nothingApplied(node: AgentNode): void {
    expect(node.running, "the agent waits on the config").toBe(true);
    expect(node.hasLink("flannel.1"), "flannel.1").toBe(false);
    expect(node.subnetEnv(), "subnet.env").toBeUndefined();
  }

  it.each(cases)("%s: the message names it; no device, no subnet.env, no lease", async (_, config, message) => {
    const l = theLab();
    const node = l.node(0);
    const offset = node.log().length;
    await l.putConfig(config);
    const said = await waitUntil(`the agent's message about ${config}`, 20_000, () => {
      const lines = node
        .log()
        .slice(offset)
        .split("\n")
        .filter((line) => message.test(line));
      return lines.length > 0 ? lines[0] : undefined;
    });
    expect(said).toMatch(/config/i);
    nothingApplied(node);
    expect(await l.leases()).toEqual([]);
    expect(await node.readyz()).toBe(503);
  });

  it("the config fixed in etcd, the waiting agent proceeds: lease, flannel.1, subnet.env, ready", async () => {
    const l = theLab();
    const node = l.node(0);
    await l.putConfig(`{"Network": "${NETWORK}", "Backend": {"Type": "vxlan"}}`);
    await node.waitReady();
    const lease = await l.leaseOf(node);
    expect(lease?.subnet).toBe(node.subnet());
    expect(node.vtepMac()).toBe(lease?.vtepMac);
    expect(node.subnetEnv()?.FLANNEL_MTU).toBe("1450");
  });
});
