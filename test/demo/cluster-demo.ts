// The demo (`make demo`: scripts/demo bundles and runs this file): a 3-member etcd and three nodes in
// network namespaces, weft's agent (bin/flanneld) running on each, a pod per node added through the
// libcni driver and weft's plugins; prints each node's lease, subnet.env, flannel.1 and routes, pings
// across the nodes, and removes everything. Uses the tests' cluster lab (test/helpers/agent-lab.ts).
import { createAgentLab, PREFIX, type AgentLab, type Pod } from "../helpers/agent-lab.js";

const say = (line = "") => process.stdout.write(`${line}\n`);
const indent = (text: string) =>
  text
    .trimEnd()
    .split("\n")
    .map((line) => `    ${line.trimEnd()}`)
    .join("\n");

let lab: AgentLab | undefined;
let removing: Promise<void> | undefined;

async function remove(): Promise<void> {
  removing ??= (async () => {
    if (!lab) return;
    await lab.remove();
    say("removed: the agents, the pods, the nodes' and etcd's namespaces, the underlay and the lab's files");
  })();
  await removing;
}

for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.on(signal, () => {
    void remove().finally(() => process.exit(130));
  });
}

async function main(): Promise<void> {
  say("starting a 3-member etcd (Debian's etcd-server) on an underlay bridge (MTU 1500), and 3 nodes running weft's flanneld...");
  lab = await createAgentLab({ nodes: 3, backend: "vxlan" });
  say(`etcd: ${lab.etcd.endpoints.join(" ")} (lab ${lab.etcd.id}: namespaces weftlab-${lab.etcd.id}-*)`);
  say(`network config: ${(await lab.etcd.etcdctl(["get", `${PREFIX}/config`, "--print-value-only"])).trim()}`);
  const leases = await lab.waitConverged(30_000);

  for (const node of lab.nodes) {
    const lease = leases.find((l) => l.publicIp === node.address);
    say();
    say(`== node ${node.name} (underlay ${node.ifName} ${node.address}) ==`);
    say(`  lease ${PREFIX}/subnets/${lease?.subnet.replace("/", "-")}`);
    say(`    ${lease?.raw}`);
    say("  subnet.env");
    say(indent(node.netns.exec("cat", [node.subnetFile])));
    say("  flannel.1");
    const device = node.netns.exec("ip", ["-d", "link", "show", "flannel.1"]).split("\n");
    say(indent([device[0], device.find((line) => line.includes("vxlan id"))].join("\n").replace(/ (minmtu|ageing|addrgenmode)\b.*$/gm, "")));
    say(indent(node.netns.exec("ip", ["-4", "-br", "addr", "show", "flannel.1"])));
    say("  routes");
    say(indent(node.netns.exec("ip", ["route", "show"])));
    say("  neighbours and fdb entries on flannel.1");
    say(indent(node.netns.exec("ip", ["neigh", "show", "dev", "flannel.1"])));
    const fdb = node.netns.exec("bridge", ["fdb", "show", "dev", "flannel.1"]).split("\n");
    say(indent(fdb.filter((line) => line.includes(" dst ")).join("\n")));
  }

  say();
  say("== pods, added through the libcni driver: flannel -> bridge -> host-local (weft's bin/) ==");
  const pods: Pod[] = [];
  for (const node of lab.nodes) {
    const pod = await lab.addPod(node, `web-${node.name}`);
    pods.push(pod);
    const mtu = pod.netns.ipJson<Array<{ mtu: number }>>("link", "show", "eth0")[0]?.mtu;
    say(`  pod web-${node.name} on ${node.name}: eth0 ${pod.ip} mtu ${mtu}`);
  }

  say();
  say("== pings across nodes ==");
  let failed = 0;
  for (const from of pods) {
    for (const to of pods.filter((p) => p.node !== from.node)) {
      const result = await lab.ping(from, to.ip, { count: 2 });
      if (result.received !== 2) failed++;
      say(`  ${from.name} (${from.ip}) -> ${to.name} (${to.ip}): ${result.received}/${result.transmitted} replies`);
    }
  }
  const fits = await lab.ping(pods[0]!, pods[1]!.ip, { count: 1, size: 1450, df: true });
  const tooBig = await lab.ping(pods[0]!, pods[1]!.ip, { count: 1, size: 1451, df: true });
  say(
    `  a 1450-byte packet with DF set: ${fits.received === 1 ? "crosses" : "LOST"}; 1451 bytes: ${tooBig.received === 0 ? "refused (the VXLAN MTU is 1450)" : "CROSSED"}`,
  );
  if (fits.received !== 1 || tooBig.received !== 0) failed++;

  say();
  await remove();
  if (failed > 0) throw new Error(`${failed} checks failed`);
}

main().catch(async (err: unknown) => {
  process.stderr.write(`demo failed: ${err instanceof Error ? err.message : String(err)}\n`);
  if (lab) process.stderr.write(`${lab.report()}\n`);
  await remove().catch((removeErr: unknown) => process.stderr.write(`removing the lab: ${String(removeErr)}\n`));
  process.exit(1);
});
