import { createSocket, type Socket } from "node:dgram";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, afterEach, beforeAll, describe, expect, it, type TestContext } from "vitest";
import { Netns } from "../../lib/netns/netns.js";
import { createAgentLab, NETWORK, type AgentLab, type AgentNode, type Pod } from "../helpers/agent-lab.js";
import { cniDriver, cniDriverPrerequisite } from "../helpers/cni-driver.js";
import { all, command, rootUser } from "../helpers/prerequisites.js";
import { waitUntil } from "../helpers/wait.js";

// The udp backend in the cluster lab: weft's agent on three nodes with {"Backend":{"Type":"udp"}},
// pods through weft's plugins pinging across flannel0 and the agents' carriers; the DF bound at
// 1472; an agent restarted under ping; garbage and a flood at an agent's port while a ping runs; a
// node renumbered; a node leaving (the destructive ones last).

const needs = all(rootUser(), command("etcd", "etcd-server"), command("etcdctl", "etcd-client"), cniDriverPrerequisite());

const UDP_CONFIG = JSON.stringify({ Network: NETWORK, Backend: { Type: "udp" } });
const PORT = 8285;
const LAB_WAIT_MS = 120_000;

function reportOnFailure(lab: () => AgentLab | undefined) {
  return (context: TestContext) => {
    if (context.task.result?.state === "fail") console.error(lab()?.report() ?? "no lab");
  };
}

/** A UDP socket made in a node's namespace, bound to `address` there (the lookup answers at once, so the bind happens inside). */
async function socketOn(node: AgentNode, address: string, cleanups: (() => void)[]): Promise<Socket> {
  const netns = Netns.open(node.netns.path);
  const s = createSocket({ type: "udp4", lookup: (a, _f, cb) => cb(null, a, 4) });
  const ready = new Promise<void>((resolve, reject) => {
    s.once("listening", resolve);
    s.once("error", reject);
  });
  try {
    netns.run(() => s.bind({ address, port: 0 }));
  } finally {
    netns.close();
  }
  cleanups.push(() => s.close());
  await ready;
  s.on("error", () => undefined);
  return s;
}

function flannel0(node: AgentNode): { mtu: number; up: boolean; rx: number; addresses: string[]; routes: string[] } {
  const [link] = node.netns.ipJson<{ mtu: number; flags: string[]; stats64: { rx: { packets: number } } }[]>("-s", "link", "show", "flannel0");
  const addresses = node.netns
    .ipJson<{ addr_info: { family: string; local: string; prefixlen: number }[] }[]>("addr", "show", "dev", "flannel0")
    .flatMap((l) => l.addr_info.filter((a) => a.family === "inet").map((a) => `${a.local}/${a.prefixlen}`));
  const routes = node.netns
    .ipJson<{ dst: string; scope?: string }[]>("route", "show", "dev", "flannel0")
    .map((r) => `${r.dst} ${r.scope ?? ""}`.trim());
  return { mtu: link!.mtu, up: link!.flags.includes("UP"), rx: link!.stats64.rx.packets, addresses, routes };
}

const dropped = (m: Map<string, number>, direction: "in" | "out", reason: string) =>
  m.get(`weft_agent_udp_dropped_total{direction="${direction}",reason="${reason}"}`) ?? Number.NaN;

/** An IPv4 header of `length` bytes in all (a right checksum) from 10.244.200.5 to `dst`. */
function ipPacket(dst: number[], length: number, o: { total?: number; version?: number; ttl?: number } = {}): Buffer {
  const p = Buffer.alloc(length);
  p[0] = ((o.version ?? 4) << 4) | 5;
  p.writeUInt16BE(o.total ?? length, 2);
  p[8] = o.ttl ?? 64;
  p[9] = 17;
  Buffer.from([10, 244, 200, 5]).copy(p, 12);
  Buffer.from(dst).copy(p, 16);
  let sum = 0;
  for (let i = 0; i < 20; i += 2) sum += p.readUInt16BE(i);
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  p.writeUInt16BE(~sum & 0xffff, 10);
  return p;
}

describe.skipIf(needs.skip)(needs.title("the udp backend in a 3-node lab"), () => {
  let lab: AgentLab | undefined;
  const pods: Pod[] = [];
  const cleanups: (() => void)[] = [];
  const theLab = () => lab ?? expect.unreachable("the lab was not made");

  beforeAll(async () => {
    cniDriver();
    lab = await createAgentLab({ nodes: 3, config: UDP_CONFIG, routeResync: 3 });
    for (const node of lab.nodes) pods.push(await lab.addPod(node, `web-${node.name}`));
  }, LAB_WAIT_MS);

  afterEach((context) => {
    reportOnFailure(() => lab)(context);
    for (const c of cleanups.splice(0)) {
      try {
        c();
      } catch {
        // already closed
      }
    }
  });

  afterAll(async () => {
    await lab?.remove();
  }, 60_000);

  it("each node has flannel0 as flanneld makes it, a udp lease as flanneld writes it, and pods on three nodes ping each other", async () => {
    const lab = theLab();
    const leases = await lab.leases();
    expect(leases).toHaveLength(3);
    for (const node of lab.nodes) {
      const subnet = node.subnet();
      const lease = leases.find((l) => l.subnet === subnet)!;
      // flanneld's udp lease: no BackendType, no BackendData.
      expect(lease.raw).toBe(`{"PublicIP":"${node.address}","PublicIPv6":null}`);
      expect(node.subnetEnv()).toMatchObject({ FLANNEL_NETWORK: NETWORK, FLANNEL_SUBNET: subnet.replace(".0/", ".1/"), FLANNEL_MTU: "1472" });
      const dev = flannel0(node);
      expect(dev).toMatchObject({ mtu: 1472, up: true, addresses: [subnet.replace(/\/24$/, "/32")], routes: [NETWORK] });
      expect(node.netns.exec("ss", ["-Hulpn", `sport = :${PORT}`])).toContain(`${node.address}:${PORT}`);
      const metrics = await node.metrics();
      expect(metrics.get("weft_agent_peers")).toBe(2);
    }
    expect(await lab.pingAcross(pods)).toEqual([]);
    const m = await lab.node(0).metrics();
    // flannel0's own queue drops, read from the kernel, beside the carrier's counters.
    const [link] = lab.node(0).netns.ipJson<{ stats64: { tx: { dropped: number } } }[]>("-s", "link", "show", "flannel0");
    expect(dropped(m, "out", "device-queue-full")).toBe(link!.stats64.tx.dropped);
    expect(m.get('weft_agent_udp_packets_total{direction="out"}')).toBeGreaterThanOrEqual(4);
    expect(m.get('weft_agent_udp_packets_total{direction="in"}')).toBeGreaterThanOrEqual(4);
  });

  it("a packet of 1472 bytes with DF passes between pods on two nodes, one of 1473 is refused", async () => {
    const lab = theLab();
    const [a, b] = pods;
    expect((await lab.ping(a!, b!.ip, { count: 2, size: 1472, df: true })).received).toBe(2);
    const big = await lab.ping(a!, b!.ip, { count: 1, size: 1473, df: true, waitS: 1 });
    expect(big.received).toBe(0);
    expect(big.output).toMatch(/mtu\s*=\s*1472|[Mm]essage too long/);
    // Without DF a 4000-byte ping is fragmented to fit and reassembled.
    expect((await lab.ping(a!, b!.ip, { count: 1, size: 4000 })).received).toBe(1);
  });

  it("an agent restarted under a continuous ping: the traffic comes back once it is ready, on the same subnet", async () => {
    const lab = theLab();
    const node = lab.node(1);
    const subnet = node.subnet();
    const started = Date.now();
    const ping = lab.continuousPing(pods[0]!, pods[1]!.ip, 50);
    await sleep(1000);
    await node.restart();
    // The sequence number sent when the agent was ready again, and half a second for the kernel's
    // notifications and the pod's neighbour entry.
    const readySeq = Math.ceil((Date.now() - started) / 50) + 10;
    await sleep(3000);
    const { transmitted, lost } = await ping.stop();
    expect(node.subnet()).toBe(subnet);
    expect(flannel0(node).mtu).toBe(1472);
    // flannel0 goes with the agent's process, as flanneld's: the replies of the restart are lost,
    // none after the agent is back.
    console.log(
      `restart under ping: ${lost.length} of ${transmitted} lost (every 50 ms), sequence numbers ${lost.join(" ")}; ready at ${readySeq - 10}`,
    );
    expect(lost.filter((seq) => seq > readySeq)).toEqual([]);
    expect(transmitted).toBeGreaterThan(readySeq + 40);
    expect(await lab.pingAcross(pods)).toEqual([]);
  });

  it("garbage and foreign datagrams at an agent's port while a ping runs: dropped and counted by reason, nothing reaches flannel0", async () => {
    const lab = theLab();
    const [target, peer] = [lab.node(0), lab.node(1)];
    const stranger = peer.address.replace(/\.\d+$/, ".250");
    peer.netns.exec("ip", ["addr", "add", `${stranger}/32`, "dev", peer.ifName]);
    cleanups.push(() => peer.netns.exec("ip", ["addr", "del", `${stranger}/32`, "dev", peer.ifName]));
    const fromNode = await socketOn(peer, peer.address, cleanups);
    const fromStranger = await socketOn(peer, stranger, cleanups);
    const own = target.subnet().split("/")[0]!.split(".").map(Number);
    const local = [own[0]!, own[1]!, own[2]!, 9];

    const before = await target.metrics();
    const rxBefore = flannel0(target).rx;
    const inBefore = before.get('weft_agent_udp_packets_total{direction="in"}')!;
    const ping = lab.continuousPing(pods[1]!, pods[0]!.ip, 50);
    const kinds: [string, Buffer, Socket][] = [
      ["truncated", Buffer.alloc(7, 0x45), fromNode],
      ["truncated", ipPacket(local, 100, { total: 300 }), fromNode],
      ["bad-length", ipPacket(local, 100, { total: 40 }), fromNode],
      ["too-large", ipPacket(local, 1473), fromNode],
      ["not-ipv4", ipPacket(local, 60, { version: 6 }), fromNode],
      ["bad-header", Buffer.concat([Buffer.from([0x45, 0, 0, 60]), Buffer.alloc(56, 0xa5)]), fromNode],
      ["not-local", ipPacket([10, 244, 250, 1], 60), fromNode],
      ["not-local", ipPacket([8, 8, 8, 8], 60), fromNode],
      ["ttl-expired", ipPacket(local, 60, { ttl: 1 }), fromNode],
      ["unknown-sender", ipPacket(local, 60), fromStranger],
    ];
    const rounds = 500;
    for (let r = 0; r < rounds; r++) {
      for (const [, bytes, socket] of kinds) socket.send(bytes, PORT, target.address);
      const junk = Buffer.alloc(1 + ((r * 7919) % 2000));
      for (let i = 0; i < junk.length; i++) junk[i] = (r * 31 + i * 17) & 0xff;
      fromNode.send(junk, PORT, target.address);
      if (r % 5 === 0) await sleep(2);
    }
    const { lost } = await ping.stop();
    expect(lost).toEqual([]);
    const after = await target.metrics();
    const expected = new Map<string, number>();
    for (const [reason] of kinds) expected.set(reason, (expected.get(reason) ?? 0) + rounds);
    for (const [reason, n] of expected) expect(dropped(after, "in", reason) - dropped(before, "in", reason), reason).toBeGreaterThanOrEqual(n * 0.9);
    // flannel0 took exactly what the carrier wrote (the ping's packets), nothing of the garbage.
    const written = after.get('weft_agent_udp_packets_total{direction="in"}')! - inBefore;
    expect(flannel0(target).rx - rxBefore).toBe(written);
    expect(written).toBeLessThan(400);
    expect(await target.readyz()).toBe(200);
  });

  it("a flood at an agent's port: its memory stays bounded, it stays ready, pods keep pinging", async () => {
    const lab = theLab();
    const [target, peer] = [lab.node(0), lab.node(1)];
    const fromNode = await socketOn(peer, peer.address, cleanups);
    const bytes = ipPacket([10, 244, 250, 1], 1400);
    const rssBefore = (await target.metrics()).get("process_resident_memory_bytes")!;
    const ping = lab.continuousPing(pods[1]!, pods[0]!.ip, 100);
    const until = Date.now() + 6000;
    let sent = 0;
    let rssPeak = rssBefore;
    let lastProbe = Date.now();
    while (Date.now() < until) {
      // Bursts as fast as this process sends, bounded by its own queue.
      for (let i = 0; i < 200 && fromNode.getSendQueueCount() < 1000; i++, sent++) fromNode.send(bytes, PORT, target.address);
      await new Promise((resolve) => setImmediate(resolve));
      if (Date.now() - lastProbe > 1000) {
        lastProbe = Date.now();
        const rss = (await target.metrics().catch(() => new Map<string, number>())).get("process_resident_memory_bytes");
        if (rss) rssPeak = Math.max(rssPeak, rss);
      }
    }
    const { transmitted, received } = await ping.stop();
    const after = await target.metrics();
    const counted = dropped(after, "in", "not-local");
    console.log(
      `flood: ${sent} datagrams of 1400 bytes sent in 6 s; the agent counted ${counted} not-local in all; ` +
        `RSS ${Math.round(rssBefore / 1e6)} MB before, peak ${Math.round(rssPeak / 1e6)} MB; ping ${received}/${transmitted}`,
    );
    expect(counted).toBeGreaterThan(sent * 0.1);
    expect(rssPeak - rssBefore).toBeLessThan(64 * 1024 * 1024);
    expect(received).toBeGreaterThanOrEqual(transmitted * 0.8);
    expect(await target.readyz()).toBe(200);
    expect(await lab.pingAcross(pods)).toEqual([]);
  });

  it("a node renumbered under its agent: its lease and its carrier's socket move to the new address, the others follow, pods ping again", async () => {
    const lab = theLab();
    const node = lab.node(1);
    const subnet = node.subnet();
    const renumbered = node.address.replace(/\.\d+$/, ".150");
    node.changeAddress(renumbered);
    await waitUntil("the node's lease with its new address", 30_000, async () =>
      (await lab.leases()).some((l) => l.subnet === subnet && l.publicIp === renumbered) ? true : undefined,
    );
    await waitUntil("the carrier bound to the new address", 15_000, () =>
      node.netns.exec("ss", ["-Huln", `sport = :${PORT}`]).includes(`${renumbered}:${PORT}`) ? true : undefined,
    );
    await waitUntil("the pods pinging across again", 15_000, async () => ((await lab.pingAcross(pods, 1)).length === 0 ? true : undefined), 500);
    expect(await lab.pingAcross(pods)).toEqual([]);
  });

  it("a node leaving (its lease deleted): the others drop it from their carriers' tables", async () => {
    const lab = theLab();
    const gone = lab.node(2);
    const subnet = gone.subnet();
    await gone.stop();
    await lab.deleteLease(subnet);
    for (const node of [lab.node(0), lab.node(1)]) {
      await waitUntil(`${node.name} to drop ${subnet}`, 5000, async () => ((await node.metrics()).get("weft_agent_peers") === 1 ? true : undefined));
    }
    const before = dropped(await lab.node(0).metrics(), "out", "no-route");
    const ping = await lab.ping(pods[0]!, pods[2]!.ip, { count: 2, waitS: 1 });
    expect(ping.received).toBe(0);
    expect(dropped(await lab.node(0).metrics(), "out", "no-route")).toBe(before + 2);
    expect(await lab.pingAcross([pods[0]!, pods[1]!])).toEqual([]);
  });
});
