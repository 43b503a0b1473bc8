import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createAgentLab, NETWORK, type AgentLab, type Pod } from "../helpers/agent-lab.js";
import { cniDriverPrerequisite } from "../helpers/cni-driver.js";
import { all, command, rootUser } from "../helpers/prerequisites.js";
import { waitUntil } from "../helpers/wait.js";

// Dual stack over vxlan, as flanneld: EnableIPv6 with an IPv6Network, each node's lease holding an
// IPv4 and an IPv6 subnet (key 10.244.x.0-24&fd00:...-64), PublicIPv6 and BackendV6Data in the value,
// flannel-v6.<VNI> beside flannel.<VNI>, subnet.env with both families, pods with both addresses.

const needs = all(rootUser(), command("etcd", "etcd-server"), command("etcdctl", "etcd-client"), cniDriverPrerequisite());

const IPV6_NETWORK = "fd00:10:244::/56";
const CONFIG = JSON.stringify({ Network: NETWORK, EnableIPv6: true, IPv6Network: IPV6_NETWORK, Backend: { Type: "vxlan" } });

interface IpAddress {
  addr_info: Array<{ family: string; local: string; prefixlen: number; scope: string }>;
}

/** The pod's global IPv6 address. */
function ipv6Of(pod: Pod): string {
  const [link] = pod.netns.ipJson<IpAddress[]>("-6", "addr", "show", "eth0", "scope", "global");
  const address = link?.addr_info.find((a) => a.family === "inet6")?.local;
  if (!address) throw new Error(`pod ${pod.name} has no global IPv6 address`);
  return address;
}

describe.skipIf(needs.skip)(needs.title("dual stack over vxlan"), () => {
  let lab: AgentLab | undefined;
  const pods: Pod[] = [];

  beforeAll(async () => {
    lab = await createAgentLab({ nodes: 2, config: CONFIG, agents: false });
    lab.nodes.forEach((node, i) => {
      node.netns.exec("sysctl", ["-qw", "net.ipv6.conf.all.forwarding=1"]);
      node.netns.exec("ip", ["-6", "addr", "add", `fd00:99::${i + 1}/64`, "dev", node.ifName, "nodad"]);
    });
    for (const node of lab.nodes) node.start();
    for (const node of lab.nodes) await node.waitReady();
    for (const node of lab.nodes) pods.push(await lab.addPod(node, `web-${node.name}`));
  }, 120_000);

  afterAll(async () => {
    await lab?.remove();
  }, 60_000);

  it("leases an IPv4 and an IPv6 subnet per node, in flanneld's key and value", async () => {
    const out = await lab!.etcd.etcdctl(["get", "--prefix", "/coreos.com/network/subnets/"]);
    const lines = out.trim().split("\n");
    expect(lines).toHaveLength(4);
    for (let i = 0; i < lines.length; i += 2) {
      expect(lines[i]).toMatch(/^\/coreos\.com\/network\/subnets\/10\.244\.\d+\.0-24&fd00:10:244:[0-9a-f]*::-64$/);
      expect(lines[i + 1]).toMatch(
        /^\{"PublicIP":"172\.31\.\d+\.\d+","PublicIPv6":"fd00:99::\d","BackendType":"vxlan","BackendData":\{"VNI":1,"VtepMAC":"[0-9a-f:]{17}"\},"BackendV6Data":\{"VNI":1,"VtepMAC":"[0-9a-f:]{17}"\}\}$/,
      );
    }
    for (const node of lab!.nodes) {
      const env = node.subnetEnv()!;
      expect(env.FLANNEL_IPV6_NETWORK).toBe(IPV6_NETWORK);
      expect(env.FLANNEL_IPV6_SUBNET).toMatch(/^fd00:10:244:[0-9a-f]*::1\/64$/);
      expect(env.FLANNEL_MTU).toBe("1430");
      expect(node.hasLink("flannel-v6.1")).toBe(true);
    }
  });

  it("pods on the two nodes reach each other over IPv4 and IPv6", async () => {
    expect(await lab!.pingAcross(pods)).toEqual([]);
    const [a, b] = pods as [Pod, Pod];
    for (const [from, to] of [
      [a, b],
      [b, a],
    ] as const) {
      const result = await lab!.ping(from, ipv6Of(to), { count: 2 });
      expect(result.received, result.output).toBe(2);
    }
  });

  it("puts an IPv6 route deleted by hand on flannel-v6.1 back", async () => {
    const node = lab!.node(0);
    const routes = () =>
      node.netns
        .ipJson<Array<{ dst: string; gateway?: string }>>("-6", "route", "show", "dev", "flannel-v6.1")
        .filter((r) => r.gateway)
        .map((r) => r.dst);
    const [route] = routes();
    expect(route).toMatch(/^fd00:10:244:/);
    node.netns.exec("ip", ["-6", "route", "del", route!, "dev", "flannel-v6.1"]);
    await waitUntil("the IPv6 route restored", 5000, () => routes().includes(route!) || undefined);
  });
});
