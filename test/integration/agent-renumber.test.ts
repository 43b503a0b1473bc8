import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createAgentLab, type AgentLab, type Pod } from "../helpers/agent-lab.js";
import { cniDriverPrerequisite } from "../helpers/cni-driver.js";
import { all, command, rootUser } from "../helpers/prerequisites.js";

// A node renumbered while its agent was stopped (a reboot with a new DHCP address, a pod restarted
// after the change): flanneld leases a new subnet and leaves the old lease, so its pods' addresses
// are stranded and the other nodes send the new subnet's traffic to the old address. weft's agent
// knows its lease by the VTEP it kept and takes it over with the new address.

const needs = all(rootUser(), command("etcd", "etcd-server"), command("etcdctl", "etcd-client"), cniDriverPrerequisite());

describe.skipIf(needs.skip)(needs.title("a node renumbered while its agent was stopped"), () => {
  let lab: AgentLab | undefined;
  const pods: Pod[] = [];

  beforeAll(async () => {
    lab = await createAgentLab({ nodes: 2, routeResync: 3 });
    for (const node of lab.nodes) pods.push(await lab.addPod(node, `web-${node.name}`));
    await lab.waitConverged(30_000);
  }, 120_000);

  afterAll(async () => {
    await lab?.remove();
  }, 60_000);

  it("keeps its subnet and VTEP MAC, its lease names the new address, the others' fdb entry follows, pods ping", async () => {
    const l = lab!;
    const node = l.node(1);
    const before = (await l.leaseOf(node))!;
    await node.stop();
    node.changeAddress(node.address.replace(/\.\d+$/, ".160"));
    node.start();
    await node.waitReady();
    expect(node.subnet()).toBe(before.subnet);
    const leases = await l.leases();
    expect(leases).toHaveLength(2);
    expect(leases.map((x) => x.publicIp)).not.toContain(before.publicIp);
    expect((await l.leaseOf(node))?.vtepMac).toBe(before.vtepMac);
    await l.waitConverged(5_000);
    expect(await l.pingAcross(pods)).toEqual([]);
  }, 90_000);
});
