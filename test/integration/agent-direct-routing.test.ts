import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createAgentLab, NETWORK, type AgentLab, type Pod } from "../helpers/agent-lab.js";
import { cniDriverPrerequisite } from "../helpers/cni-driver.js";
import { all, command, rootUser } from "../helpers/prerequisites.js";
import { waitUntil } from "../helpers/wait.js";

// vxlan with DirectRouting: nodes on one L2 segment reach each other's pods without encapsulation,
// by a plain route via the peer's public address, as flanneld does; the VTEP stays for peers
// behind a router. Here every node shares the underlay, so every peer is direct.

const needs = all(rootUser(), command("etcd", "etcd-server"), command("etcdctl", "etcd-client"), cniDriverPrerequisite());

describe.skipIf(needs.skip)(needs.title("vxlan with DirectRouting on one L2 segment"), () => {
  let lab: AgentLab | undefined;
  const pods: Pod[] = [];

  beforeAll(async () => {
    lab = await createAgentLab({
      nodes: 2,
      backend: "vxlan",
      config: `{"Network": "${NETWORK}", "Backend": {"Type": "vxlan", "DirectRouting": true}}`,
    });
    for (const node of lab.nodes) pods.push(await lab.addPod(node, `web-${node.name}`));
  }, 120_000);

  afterAll(async () => {
    await lab?.remove();
  }, 60_000);

  it("routes each peer's subnet via its public address on the underlay, nothing on the VTEP, and the pods ping", async () => {
    const l = lab!;
    const leases = await l.leases();
    for (const node of l.nodes) {
      await waitUntil(
        `${node.name}'s direct routes`,
        10_000,
        () => JSON.stringify(node.hostGwRoutes()) === JSON.stringify(l.expectedHostGwRoutes(node, leases)) || undefined,
      );
      expect(node.vxlanState()).toEqual({ routes: [], neighbours: [], fdb: [] });
      expect(node.subnetEnv()?.FLANNEL_MTU).toBe("1450");
    }
    expect(await l.pingAcross(pods)).toEqual([]);
  });

  it("puts a direct route deleted by hand back", async () => {
    const l = lab!;
    const node = l.node(0);
    const [route] = node.hostGwRoutes();
    node.netns.exec("ip", ["route", "del", route!.split(" ")[0]!]);
    await waitUntil("the route restored", 10_000, () => node.hostGwRoutes().includes(route!) || undefined);
  });
});
