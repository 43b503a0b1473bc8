import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createAgentLab, NETWORK, PREFIX, type AgentLab } from "../helpers/agent-lab.js";
import { cniDriverPrerequisite } from "../helpers/cni-driver.js";
import { all, command, rootUser } from "../helpers/prerequisites.js";
import { waitUntil } from "../helpers/wait.js";

// A cluster upgraded from a flanneld older than 0.10 has its network config in etcd's v2 store,
// which the v3 API does not see (flannel-io/flannel#554, #1057): the agent says so and how to copy
// it, creates nothing, and goes on once the config is in the v3 store.

const needs = all(rootUser(), command("etcd", "etcd-server"), command("etcdctl", "etcd-client"), command("curl"), cniDriverPrerequisite());

describe.skipIf(needs.skip)(needs.title("a network config in etcd's v2 store only"), () => {
  let lab: AgentLab | undefined;
  const config = `{"Network": "${NETWORK}", "Backend": {"Type": "vxlan"}}`;

  beforeAll(async () => {
    lab = await createAgentLab({ nodes: 1, backend: "vxlan", config: null, waitReady: false, agents: false });
    // What flanneld before 0.10 did: a PUT on the v2 keys API.
    lab.etcd.underlay.exec("curl", ["-sSf", "-XPUT", `${lab.etcd.endpoints[0]}/v2/keys${PREFIX}/config`, "--data-urlencode", `value=${config}`]);
  }, 90_000);

  afterAll(async () => {
    await lab?.remove();
  }, 60_000);

  it("is in the v2 store, which the v3 API does not see", async () => {
    const v2 = lab!.etcd.underlay.exec("curl", ["-sSf", `${lab!.etcd.endpoints[0]}/v2/keys${PREFIX}/config`]);
    expect((JSON.parse(v2) as { node: { value: string } }).node.value).toBe(config);
    expect(await lab!.etcd.etcdctl(["get", `${PREFIX}/config`])).toBe("");
  });

  it("is named in the agent's log with the command that copies it; nothing is made until the v3 store has it", async () => {
    const node = lab!.node(0);
    node.start();
    await waitUntil("the migration message", 20_000, () => node.log().includes("v2 store only") || undefined);
    expect(node.log()).toContain(`ETCDCTL_API=3 etcdctl put ${PREFIX}/config "$(ETCDCTL_API=2 etcdctl get ${PREFIX}/config)"`);
    expect(await node.readyz()).toBe(503);
    expect(node.hasLink("flannel.1")).toBe(false);
    expect(node.subnetEnv()).toBeUndefined();
    expect(await lab!.leases()).toEqual([]);

    await lab!.putConfig(config);
    await node.waitReady(30_000);
    expect(node.hasLink("flannel.1")).toBe(true);
    expect(node.subnetEnv()?.FLANNEL_NETWORK).toBe(NETWORK);
  }, 60_000);
});
