import { execFileSync } from "node:child_process";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createAgentLab, NETWORK, type AgentLab } from "../helpers/agent-lab.js";
import { cniDriverPrerequisite } from "../helpers/cni-driver.js";
import { pathWithTestNode, WEFT_FLANNELD } from "../helpers/executables.js";
import { all, command, rootUser } from "../helpers/prerequisites.js";
import { waitUntil } from "../helpers/wait.js";

// What the daemon does with its netfilter rules and with peers host-gw cannot reach: the rules
// (here nftables, the config's EnableNFTables) in place before subnet.env, restored within
// --iptables-resync after a deletion by hand, removed by `flanneld --cleanup`; a host-gw peer that is
// not on the node's L2 segment refused with a message and no route, the others programmed.

const needs = all(rootUser(), command("etcd", "etcd-server"), command("etcdctl", "etcd-client"), command("nft", "nftables"), cniDriverPrerequisite());

describe.skipIf(needs.skip)(needs.title("the agent's --ip-masq rules with EnableNFTables"), () => {
  let lab: AgentLab | undefined;

  beforeAll(async () => {
    lab = await createAgentLab({
      nodes: 1,
      config: JSON.stringify({ Network: NETWORK, EnableNFTables: true, Backend: { Type: "vxlan" } }),
      agentFlags: ["--ip-masq", "--iptables-resync=1"],
    });
  }, 120_000);

  afterAll(async () => {
    await lab?.remove();
  }, 60_000);

  const table = () => {
    try {
      return lab!.node(0).netns.exec("nft", ["list", "table", "ip", "flannel-ipv4"]);
    } catch {
      return "";
    }
  };

  it("are flanneld's nftables rules for the node's subnet, and subnet.env says the agent masquerades", () => {
    const node = lab!.node(0);
    const subnet = node.subnet();
    const rules = table();
    expect(rules).toContain("chain postrtg");
    expect(rules).toContain("type nat hook postrouting priority srcnat; policy accept;");
    expect(rules).toContain(`ip saddr ${subnet} ip daddr ${NETWORK} return`);
    expect(rules).toContain(`ip saddr ${NETWORK} ip daddr != 224.0.0.0/4 masquerade fully-random`);
    expect(rules).toContain("chain forward");
    expect(node.subnetEnv()?.FLANNEL_IPMASQ).toBe("true");
  });

  it("come back within the resync after a rule is deleted by hand", async () => {
    const node = lab!.node(0);
    const listed = JSON.parse(node.netns.exec("nft", ["-j", "-a", "list", "chain", "ip", "flannel-ipv4", "postrtg"])) as {
      nftables: Array<{ rule?: { handle: number } }>;
    };
    const handle = listed.nftables.find((e) => e.rule)!.rule!.handle;
    node.netns.exec("nft", ["delete", "rule", "ip", "flannel-ipv4", "postrtg", "handle", String(handle)]);
    expect(table()).not.toContain("meta mark 0x00004000 return");
    await waitUntil("the rule restored", 10_000, () => table().includes("meta mark 0x00004000 return") || undefined);
    expect(node.log()).toMatch(/restoring \d+ netfilter rules/);
  });

  it("are removed by flanneld --cleanup, which leaves the device and subnet.env", async () => {
    const node = lab!.node(0);
    await node.stop();
    const out = execFileSync("ip", ["netns", "exec", node.netns.name, WEFT_FLANNELD, "--cleanup"], {
      env: { ...process.env, PATH: pathWithTestNode() },
      encoding: "utf8",
      stdio: "pipe",
    });
    expect(out).toBe("");
    expect(table()).toBe("");
    expect(node.hasLink("flannel.1")).toBe(true);
    expect(node.subnetEnv()).toBeDefined();
  });
});

describe.skipIf(needs.skip)(needs.title("host-gw and a peer that is not on the node's L2 segment"), () => {
  let lab: AgentLab | undefined;

  beforeAll(async () => {
    lab = await createAgentLab({ nodes: 2, backend: "host-gw" });
  }, 120_000);

  afterAll(async () => {
    await lab?.remove();
  }, 60_000);

  it("is refused with a message and gets no route; the on-link peer keeps its route", async () => {
    const l = lab!;
    await l.waitConverged(20_000);
    await l.putLease("10.244.250.0/24", "198.18.7.7");
    const node = l.node(0);
    await waitUntil("the refusal", 10_000, () =>
      node.log().includes("refusing lease /coreos.com/network/subnets/10.244.250.0-24") ? true : undefined,
    );
    expect(node.log()).toMatch(/node 198\.18\.7\.7 \(subnet 10\.244\.250\.0\/24\) is (unreachable|not on-link)[^\n]*host-gw needs/);
    const routes = node.hostGwRoutes();
    expect(routes.some((r) => r.startsWith("10.244.250.0/24"))).toBe(false);
    expect(routes).toContain(`${l.node(1).subnet()} via ${l.node(1).address}`);
  });
});
