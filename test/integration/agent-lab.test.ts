import { execFile } from "node:child_process";
import { existsSync, readdirSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { afterAll, afterEach, beforeAll, describe, expect, it, type TestContext } from "vitest";
import { createAgentLab, NETWORK, type AgentLab, type Pod } from "../helpers/agent-lab.js";
import { cniDriver, cniDriverPrerequisite } from "../helpers/cni-driver.js";
import { processesMentioning } from "../helpers/etcd-lab.js";
import { all, command, rootUser } from "../helpers/prerequisites.js";
import { waitUntil } from "../helpers/wait.js";

// The cluster lab: a 3-member etcd on an underlay (MTU 1500), nodes each running weft's agent,
// pods on every node added through the libcni driver and weft's plugins reading the subnet.env the
// agent wrote. Once with vxlan, once with host-gw.

const needs = all(rootUser(), command("etcd", "etcd-server"), command("etcdctl", "etcd-client"), cniDriverPrerequisite());

const LAB_WAIT_MS = 90_000;
const CONVERGE_MS = 20_000;

interface FlannelDevice {
  mtu: number;
  address: string;
  linkinfo: { info_kind: string; info_data: { id: number; port: number; local: string; learning: boolean; link: string } };
}

/** Prints the agents' logs when the test failed. */
function reportOnFailure(lab: () => AgentLab | undefined) {
  return (context: TestContext) => {
    if (context.task.result?.state === "fail") console.error(lab()?.report() ?? "no lab");
  };
}

describe.skipIf(needs.skip)(needs.title("the cluster lab, vxlan: 4 nodes running the agent, a pod on each"), () => {
  let lab: AgentLab | undefined;
  const pods: Pod[] = [];
  const theLab = () => lab ?? expect.unreachable("the lab was not made");

  beforeAll(async () => {
    cniDriver(); // built here, within the hook's bound, not in the first test that adds a pod
    lab = await createAgentLab({ nodes: 4, backend: "vxlan" });
  }, LAB_WAIT_MS);

  afterEach(reportOnFailure(() => lab));

  afterAll(async () => {
    await lab?.remove();
  }, 60_000);

  it("each node leases its own subnet, announced in flanneld's format with its underlay address and VTEP MAC", async () => {
    const l = theLab();
    const leases = await l.leases();
    expect(leases).toHaveLength(4);
    expect(new Set(leases.map((x) => x.subnet)).size).toBe(4);
    for (const node of l.nodes) {
      const lease = leases.find((x) => x.publicIp === node.address);
      expect(lease, `${node.name}'s lease`).toBeDefined();
      expect(lease!.subnet).toBe(node.subnet());
      expect(lease!.subnet).toMatch(/^10\.244\.\d+\.0\/24$/);
      expect(lease!.raw).toBe(
        `{"PublicIP":"${node.address}","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"${node.vtepMac()}"}}`,
      );
      expect(lease!.leaseId).not.toBe("0");
    }
  });

  it("each node has subnet.env and flannel.1 as flanneld makes them (VNI 1, port 8472, nolearning, MTU 1450, .0/32)", () => {
    for (const node of theLab().nodes) {
      const subnet = node.subnet();
      expect(node.subnetEnv()).toEqual({
        FLANNEL_NETWORK: NETWORK,
        FLANNEL_SUBNET: subnet.replace(/\.0\//, ".1/"),
        FLANNEL_MTU: "1450",
        FLANNEL_IPMASQ: "false",
      });
      const [device] = node.netns.ipJson<FlannelDevice[]>("-d", "link", "show", "flannel.1");
      expect(device?.mtu).toBe(1450);
      expect(device?.linkinfo.info_kind).toBe("vxlan");
      expect(device?.linkinfo.info_data).toMatchObject({ id: 1, port: 8472, local: node.address, learning: false, link: "eth0" });
      const addresses = node.netns.ipJson<Array<{ addr_info: Array<{ local: string; prefixlen: number }> }>>("-4", "addr", "show", "flannel.1");
      expect(addresses[0]?.addr_info.map((a) => `${a.local}/${a.prefixlen}`)).toEqual([subnet.replace("/24", "/32")]);
    }
  });

  it("every node holds a route, a permanent neighbour and an fdb entry for each other node, and nothing else", async () => {
    const l = theLab();
    const leases = await l.waitConverged(CONVERGE_MS);
    for (const node of l.nodes) {
      const state = node.vxlanState();
      expect(state.routes).toHaveLength(3);
      expect(state).toEqual(l.expectedVxlanState(node, leases));
    }
  });

  it("a pod added on every node through the libcni driver gets an address of its node's subnet and MTU 1450; every pair across nodes pings", async () => {
    const l = theLab();
    for (const node of l.nodes) pods.push(await l.addPod(node, `web-${node.name}`));
    for (const pod of pods) {
      const prefix = pod.node.subnet().replace(/\.0\/24$/, ".");
      expect(pod.ip.startsWith(prefix)).toBe(true);
      expect(pod.netns.ipJson<Array<{ mtu: number }>>("link", "show", "eth0")[0]?.mtu).toBe(1450);
    }
    expect(await l.pingAcross(pods)).toEqual([]);
  });

  it("a DF packet of exactly 1450 bytes crosses between pods on two nodes, 1451 is refused; from a node's flannel.1 too", async () => {
    const l = theLab();
    const [from, to] = [pods[0]!, pods[1]!];
    expect((await l.ping(from, to.ip, { count: 2, size: 1450, df: true })).received).toBe(2);
    const tooBig = await l.ping(from, to.ip, { count: 1, size: 1451, df: true });
    expect(tooBig.received).toBe(0);
    expect(tooBig.output).toMatch(/message too long, mtu=1450/);

    // The tunnel itself, not only the pod's MTU: from node 0's VTEP address to the pod on node 1.
    const node = from.node;
    const vtep = node.subnet().replace(/\/24$/, "");
    const fromVtep = (size: number) =>
      node.netns.exec("ping", ["-n", "-c", "1", "-W", "2", "-M", "do", "-s", String(size - 28), "-I", vtep, to.ip], { stdio: "pipe" });
    expect(fromVtep(1450)).toContain("1 received");
    expect(() => fromVtep(1451)).toThrow(/message too long|mtu=1450/);
  });

  it("remove() leaves no process, namespace or file of the lab", async () => {
    const l = theLab();
    const { namespaces, dir } = l.etcd.resources();
    const podNamespaces = pods.map((p) => p.netns.name);
    await l.remove();
    expect(processesMentioning(dir)).toEqual([]);
    for (const ns of [...namespaces, ...podNamespaces]) expect(existsSync(`/run/netns/${ns}`), ns).toBe(false);
    expect(existsSync(dir)).toBe(false);
  });
});

describe.skipIf(needs.skip)(needs.title("the cluster lab, host-gw: 3 nodes running the agent, a pod on each"), () => {
  let lab: AgentLab | undefined;
  const pods: Pod[] = [];
  const theLab = () => lab ?? expect.unreachable("the lab was not made");

  beforeAll(async () => {
    cniDriver(); // built here, within the hook's bound, not in the first test that adds a pod
    lab = await createAgentLab({ nodes: 3, backend: "host-gw" });
  }, LAB_WAIT_MS);

  afterEach(reportOnFailure(() => lab));

  afterAll(async () => {
    await lab?.remove();
  }, 60_000);

  it("each node leases a subnet announced as host-gw, writes subnet.env with the underlay's MTU 1500 and makes no VTEP", async () => {
    const l = theLab();
    const leases = await l.leases();
    expect(leases).toHaveLength(3);
    for (const node of l.nodes) {
      const lease = leases.find((x) => x.publicIp === node.address);
      expect(lease?.raw).toBe(`{"PublicIP":"${node.address}","PublicIPv6":null,"BackendType":"host-gw","BackendData":null}`);
      expect(lease?.subnet).toBe(node.subnet());
      expect(node.subnetEnv()?.FLANNEL_MTU).toBe("1500");
      expect(node.hasLink("flannel.1")).toBe(false);
    }
  });

  it("every node routes each other node's subnet via that node's underlay address", async () => {
    const l = theLab();
    const leases = await l.waitConverged(CONVERGE_MS);
    for (const node of l.nodes) expect(node.hostGwRoutes()).toEqual(l.expectedHostGwRoutes(node, leases));
    expect(l.node(0).hostGwRoutes()).toHaveLength(2);
  });

  it("pods on every node ping across nodes; a 1500-byte DF packet crosses, 1501 is refused", async () => {
    const l = theLab();
    for (const node of l.nodes) pods.push(await l.addPod(node, `web-${node.name}`));
    for (const pod of pods) expect(pod.netns.ipJson<Array<{ mtu: number }>>("link", "show", "eth0")[0]?.mtu).toBe(1500);
    expect(await l.pingAcross(pods)).toEqual([]);
    expect((await l.ping(pods[0]!, pods[2]!.ip, { count: 2, size: 1500, df: true })).received).toBe(2);
    const tooBig = await l.ping(pods[0]!, pods[2]!.ip, { count: 1, size: 1501, df: true });
    expect(tooBig.received).toBe(0);
    expect(tooBig.output).toMatch(/message too long, mtu=1500/);
  });

  it("a node joins and its pod is reached from every node; its lease deleted, every other node drops its route, and gets it back with the lease", async () => {
    const l = theLab();
    const joined = l.addNode("n3");
    await joined.waitReady();
    const pod = await l.addPod(joined, "web-n3");
    pods.push(pod);
    await l.waitConverged(CONVERGE_MS);
    expect(await l.pingAcross(pods)).toEqual([]);

    const lease = (await l.leaseOf(joined))!;
    const others = l.nodes.filter((n) => n !== joined);
    joined.partitionFromEtcd();
    await l.deleteLease(lease.subnet);
    await waitUntil("the other nodes without the deleted lease's route", 5_000, () =>
      others.every((n) => !n.hostGwRoutes().some((r) => r.startsWith(`${lease.subnet} `))) ? true : undefined,
    );
    joined.healPartition();
    const back = await waitUntil("the lease back", CONVERGE_MS, async () => await l.leaseOf(joined));
    expect(back.subnet).toBe(lease.subnet);
    await l.waitConverged(CONVERGE_MS);
    expect(await l.pingAcross(pods)).toEqual([]);
  }, 90_000);
});

describe.skipIf(needs.skip)(needs.title("make demo (scripts/demo): the cluster demo runs to the end and removes its lab"), () => {
  it("prints each node's lease, subnet.env, flannel.1 and routes, pings every pod pair across nodes, and removes everything", async () => {
    const root = fileURLToPath(new URL("../..", import.meta.url));
    const { code, output } = await new Promise<{ code: number | null; output: string }>((resolve) => {
      execFile("bash", ["scripts/demo"], { cwd: root, timeout: 120_000, killSignal: "SIGTERM", encoding: "utf8" }, (err, stdout, stderr) =>
        resolve({ code: err ? ((err as { code?: number }).code ?? null) : 0, output: stdout + stderr }),
      );
    });
    expect(code, output).toBe(0);
    expect(output.match(/^== node n\d /gm)).toHaveLength(3);
    expect(output.match(/^ {2}lease \/coreos\.com\/network\/subnets\/10\.244\.\d+\.0-24$/gm)).toHaveLength(3);
    expect(output.match(/FLANNEL_MTU=1450/g)).toHaveLength(3);
    expect(output.match(/vxlan id 1 local \S+ dev eth0 .*dstport 8472 nolearning/g)).toHaveLength(3);
    expect(output.match(/: 2\/2 replies$/gm)).toHaveLength(6);
    expect(output).toContain("a 1450-byte packet with DF set: crosses; 1451 bytes: refused");
    expect(output).toMatch(/^removed: /m);
    const id = /\(lab ([0-9a-f]{8}):/.exec(output)?.[1];
    expect(id, "the demo names its lab").toBeDefined();
    expect(readdirSync("/run/netns").filter((ns) => ns.startsWith(`weftlab-${id}-`))).toEqual([]);
    expect(processesMentioning(`weftlab-${id}-`)).toEqual([]);
  }, 150_000);
});
