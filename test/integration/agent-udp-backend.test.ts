import { execFile } from "node:child_process";
import { createSocket, type Socket } from "node:dgram";
import { closeSync, writeSync } from "node:fs";
import { promisify } from "node:util";
import { afterEach, describe, expect, it } from "vitest";
import { UdpBackend } from "../../agent/udp-backend.js";
import { parseCidr } from "../../lib/ip/ip.js";
import { linkByName } from "../../lib/netlink/link.js";
import { Rtnl } from "../../lib/netlink/rtnl.js";
import { Netns } from "../../lib/netns/netns.js";
import { weftSyscalls } from "../../lib/native/syscalls.js";
import { netnsPool, type TestNetns } from "../helpers/netns.js";
import { waitUntil } from "../helpers/wait.js";

// The udp backend in this process, on two nodes in namespaces joined by a veth underlay: each
// node's flannel0 address is reached from the other through the carriers (the kernel answers a ping
// to a local address, so no pods are needed). The agent's own scenarios are in agent-udp-lab.

const pool = netnsPool();
const cleanups: (() => Promise<void> | void)[] = [];

afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) {
    try {
      await c();
    } catch {
      // the namespaces' removal below takes what is left
    }
  }
  pool.cleanup();
});

const execFileAsync = promisify(execFile);

/** A command in the namespace without blocking the event loop (the carriers run on it). */
async function inNs(ns: TestNetns, command: string, args: string[], timeout = 20_000): Promise<{ code: number; out: string }> {
  try {
    const { stdout, stderr } = await execFileAsync("ip", ["netns", "exec", ns.name, command, ...args], { timeout, encoding: "utf8" });
    return { code: 0, out: stdout + stderr };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof e.code === "number" ? e.code : -1, out: `${e.stdout ?? ""}${e.stderr ?? ""}` };
  }
}

interface Node {
  ns: TestNetns;
  netns: Netns;
  nl: Rtnl;
  backend: UdpBackend;
  publicIP: string;
  subnet: string;
  warnings: string[];
}

const NETWORK = "10.244.0.0/16";

async function makeNode(ns: TestNetns, publicIP: string, subnet: string, port = 8285): Promise<Node> {
  const netns = Netns.open(ns.path);
  const nl = await Rtnl.open(netns);
  const link = (await linkByName(nl, "u0"))!;
  const warnings: string[] = [];
  const backend = new UdpBackend({
    nl,
    config: { type: "udp", port },
    external: { name: "u0", index: link.index, mtu: link.mtu, ifaceAddr: publicIP, extAddr: publicIP },
    network: parseCidr(NETWORK)!,
    counter: { kernelChanges: 0 },
    warn: (m) => warnings.push(m),
    netns,
  });
  cleanups.push(async () => {
    await backend.close();
    nl.close();
    netns.close();
  });
  await backend.setUp();
  await backend.configure({ ipv4: parseCidr(subnet)! });
  return { ns, netns, nl, backend, publicIP, subnet, warnings };
}

const lease = (node: Node) => ({ subnets: { ipv4: parseCidr(node.subnet)! }, attrs: { publicIP: node.publicIP, publicIPv6: null } });
const keyOf = (node: Node) => node.subnet.replace("/", "-");

/** Two nodes on a veth underlay, each knowing the other. */
async function twoNodes(port = 8285): Promise<[Node, Node]> {
  const a = pool.create("weft-udp-");
  const b = pool.create("weft-udp-");
  a.exec("ip", ["link", "add", "u0", "type", "veth", "peer", "name", "u1", "netns", b.name]);
  b.exec("ip", ["link", "set", "u1", "name", "u0"]);
  a.exec("ip", ["addr", "add", "192.168.77.1/24", "dev", "u0"]);
  b.exec("ip", ["addr", "add", "192.168.77.2/24", "dev", "u0"]);
  a.exec("ip", ["link", "set", "u0", "up"]);
  b.exec("ip", ["link", "set", "u0", "up"]);
  const na = await makeNode(a, "192.168.77.1", "10.244.1.0/24", port);
  const nb = await makeNode(b, "192.168.77.2", "10.244.2.0/24", port);
  await na.backend.applyPeer(keyOf(nb), lease(nb));
  await nb.backend.applyPeer(keyOf(na), lease(na));
  return [na, nb];
}

function linkStats(ns: TestNetns, name: string): { rx: number; tx: number; mtu: number; up: boolean } {
  const [l] = ns.ipJson<{ mtu: number; flags: string[]; stats64: { rx: { packets: number }; tx: { packets: number } } }[]>(
    "-s",
    "link",
    "show",
    name,
  );
  return { rx: l!.stats64.rx.packets, tx: l!.stats64.tx.packets, mtu: l!.mtu, up: l!.flags.includes("UP") };
}

/** A UDP socket in a namespace (bound there: the lookup answers at once, so the bind happens inside run). */
function socketIn(netns: Netns, address: string): Promise<Socket> {
  const s = createSocket({ type: "udp4", lookup: (a, _f, cb) => cb(null, a, 4) });
  const ready = new Promise<Socket>((resolve, reject) => {
    s.once("listening", () => resolve(s));
    s.once("error", reject);
  });
  netns.run(() => s.bind({ address, port: 0 }));
  cleanups.push(() => void s.close());
  return ready;
}

describe("the TUN device through weft's native layer", () => {
  it("opens a TUN without packet information, numbered by the kernel, and a UDP socket; a read of both waits without holding the event loop, ends when woken", async () => {
    const ns = pool.create("weft-udp-");
    const netns = Netns.open(ns.path);
    cleanups.push(() => netns.close());
    const { tunOpen, udpOpen, carrierReceive, udpSendBatch, tunWriteBatch, wakeFd } = weftSyscalls();
    const first = netns.run(() => tunOpen("wtun%d"));
    const second = netns.run(() => tunOpen("wtun%d"));
    const udp = netns.run(() => udpOpen("127.0.0.1", 18285));
    const wake = wakeFd();
    cleanups.push(() => {
      for (const fd of [first.fd, second.fd, udp, wake]) {
        try {
          closeSync(fd);
        } catch {
          // closed by the test
        }
      }
    });
    expect([first.name, second.name]).toEqual(["wtun0", "wtun1"]);
    const [info] = ns.ipJson<{ flags: string[]; link_type: string }[]>("-d", "link", "show", "wtun0");
    expect(info!.link_type).toBe("none");
    expect(ns.exec("ss", ["-Huln"])).toContain("127.0.0.1:18285");
    ns.exec("ip", ["addr", "add", "10.9.0.1/32", "dev", "wtun0"]);
    // No IPv6 on it: the kernel's own router solicitations would be read too.
    ns.exec("sysctl", ["-q", "-w", "net.ipv6.conf.wtun0.disable_ipv6=1"]);
    ns.exec("ip", ["link", "set", "wtun0", "up"]);
    ns.exec("ip", ["route", "add", "10.9.1.0/24", "dev", "wtun0"]);
    const records = (batch: Buffer) => {
      const out: { kind: number; source: string; bytes: Buffer }[] = [];
      for (let off = 0; off < batch.length;) {
        const n = batch.readUInt16LE(off);
        out.push({ kind: batch[off + 2]!, source: [...batch.subarray(off + 4, off + 8)].join("."), bytes: batch.subarray(off + 8, off + 8 + n) });
        off += 8 + n;
      }
      return out;
    };
    // Nothing queued: empty after the time, and timers ran meanwhile.
    let ticks = 0;
    const timer = setInterval(() => ticks++, 10);
    const t0 = Date.now();
    expect((await carrierReceive(first.fd, udp, wake, 300, 65536))!.length).toBe(0);
    clearInterval(timer);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(250);
    expect(ticks).toBeGreaterThan(10);
    // Three UDP datagrams routed into the device come out as bare IPv4 packets (kind 0), one sent
    // to the socket as a datagram with its source (kind 1): one batch.
    ns.exec("bash", ["-c", "for i in 1 2 3; do echo hello$i > /dev/udp/10.9.1.7/9; done; echo there > /dev/udp/127.0.0.1/18285"]);
    const got = records((await carrierReceive(first.fd, udp, wake, 2000, 65536))!);
    const packets = got.filter((r) => r.kind === 0);
    expect(packets.length).toBe(3);
    for (const [i, { bytes: p, source }] of packets.entries()) {
      expect(source).toBe("0.0.0.0");
      expect(p[0]! >> 4).toBe(4);
      expect(p.readUInt16BE(2)).toBe(p.length);
      expect(p.subarray(16, 20)).toEqual(Buffer.from([10, 9, 1, 7]));
      expect(p.subarray(28).toString()).toBe(`hello${i + 1}\n`);
    }
    expect(got.filter((r) => r.kind === 1).map((r) => [r.source, r.bytes.toString()])).toEqual([["127.0.0.1", "there\n"]]);
    // Sent as a batch: each record to its address and port (here the socket itself), and into the TUN.
    const record = (bytes: Buffer, port: number, address: number[]) => {
      const h = Buffer.alloc(8);
      h.writeUInt16LE(bytes.length, 0);
      h.writeUInt16BE(port, 2);
      Buffer.from(address).copy(h, 4);
      return Buffer.concat([h, bytes]);
    };
    const two = Buffer.concat([record(Buffer.from("one"), 18285, [127, 0, 0, 1]), record(Buffer.from("two"), 18285, [127, 0, 0, 1])]);
    expect(udpSendBatch(udp, two)).toBe(2);
    const back = records((await carrierReceive(first.fd, udp, wake, 2000, 65536))!);
    expect(back.map((r) => r.bytes.toString())).toEqual(["one", "two"]);
    const rx = () => ns.ipJson<{ stats64: { rx: { packets: number } } }[]>("-s", "link", "show", "wtun0")[0]!.stats64.rx.packets;
    const before = rx();
    expect(tunWriteBatch(first.fd, Buffer.concat([record(packets[0]!.bytes, 0, [0, 0, 0, 0]), record(packets[1]!.bytes, 0, [0, 0, 0, 0])]))).toBe(2);
    expect(rx() - before).toBe(2);
    // Woken: null at once.
    const pending = carrierReceive(first.fd, udp, wake, 10_000, 65536);
    const w = Buffer.alloc(8);
    w.writeBigUInt64LE(1n);
    writeSync(wake, w);
    expect(await pending).toBeNull();
    // Refusals: a bad name, a bad size, a bad address.
    expect(() => netns.run(() => tunOpen(""))).toThrow(/device name/);
    expect(() => netns.run(() => tunOpen("x".repeat(15)))).toThrow(/device name/);
    expect(() => carrierReceive(first.fd, udp, wake, 10, 0)).toThrow(/maxBytes/);
    expect(() => netns.run(() => udpOpen("10.9.0", 1))).toThrow(/IPv4 address/);
    expect(() => netns.run(() => udpOpen("127.0.0.1", 18285))).toThrow(/EADDRINUSE|address already in use/i);
  });
});

describe("the udp backend", () => {
  it("makes flannel0 as flanneld does and carries packets between two nodes, DF up to its MTU", async () => {
    const [a, b] = await twoNodes();
    const stats = linkStats(a.ns, "flannel0");
    expect(stats.mtu).toBe(1472);
    expect(stats.up).toBe(true);
    expect(a.ns.exec("ip", ["-4", "-o", "addr", "show", "dev", "flannel0"])).toMatch(/inet 10\.244\.1\.0\/32 /);
    expect(a.ns.exec("ip", ["route", "show", "dev", "flannel0"]).trim()).toBe("10.244.0.0/16");
    expect(a.backend.mtu).toBe(1472);
    expect(a.backend.backendData()).toEqual({});
    expect(a.backend.peerCount).toBe(1);
    expect(a.ns.exec("ss", ["-uln"])).toMatch(/192\.168\.77\.1:8285/);

    const ping = await inNs(a.ns, "ping", ["-c", "3", "-i", "0.2", "-W", "2", "10.244.2.0"]);
    expect(ping.out).toMatch(/3 received/);
    const df = await inNs(a.ns, "ping", ["-c", "1", "-W", "2", "-M", "do", "-s", "1444", "10.244.2.0"]);
    expect(df.out).toMatch(/1 received/);
    const tooBig = await inNs(a.ns, "ping", ["-c", "1", "-W", "2", "-M", "do", "-s", "1445", "10.244.2.0"]);
    expect(tooBig.code).not.toBe(0);
    expect(tooBig.out).toMatch(/mtu = 1472|[Mm]essage too long/);
    expect(a.backend.counters.packets.out).toBeGreaterThanOrEqual(4);
    expect(b.backend.counters.packets.in).toBeGreaterThanOrEqual(4);
    expect(a.backend.counters.packets.in).toBeGreaterThanOrEqual(4);
    expect(a.backend.counters.format()).toMatch(/weft_agent_udp_packets_total\{direction="out"\} \d+/);
  });

  it("answers a packet for no node's subnet with network unreachable; a node that left is out of the table", async () => {
    const [a, b] = await twoNodes();
    const none = await inNs(a.ns, "ping", ["-c", "1", "-W", "2", "10.244.9.1"]);
    expect(none.code).not.toBe(0);
    // ping's own ICMP is not answered with ICMP (RFC 792): a TCP SYN is, and connect fails at once.
    expect(a.backend.counters.outboundDrops.get("no-route")).toBe(1);
    const tcp = await inNs(a.ns, "timeout", ["5", "bash", "-c", "exec 3<>/dev/tcp/10.244.9.1/80"]);
    expect(tcp.code).toBe(1);
    expect(tcp.out).toMatch(/Network is unreachable/);
    expect(a.backend.counters.outboundDrops.get("no-route")).toBe(2);

    await a.backend.applyPeer(keyOf(b), undefined);
    expect(a.backend.peerCount).toBe(0);
    expect(a.backend.carries(keyOf(b))).toBe(false);
    const gone = await inNs(a.ns, "ping", ["-c", "1", "-W", "1", "10.244.2.0"]);
    expect(gone.out).toMatch(/0 received/);
    // b's datagrams are refused too now: a is no longer a known sender there once b forgets it.
    await b.backend.applyPeer(keyOf(a), undefined);
    await a.backend.applyPeer(keyOf(b), lease(b));
    const before = b.backend.counters.inboundDrops.get("unknown-sender")!;
    await inNs(a.ns, "ping", ["-c", "2", "-i", "0.2", "-W", "1", "10.244.2.0"]);
    expect(b.backend.counters.inboundDrops.get("unknown-sender")).toBe(before + 2);
  });

  it("restores the route and the address removed by hand, and makes the device again after it was deleted", async () => {
    const [a] = await twoNodes();
    a.ns.exec("ip", ["route", "del", NETWORK, "dev", "flannel0"]);
    a.ns.exec("ip", ["addr", "del", "10.244.1.0/32", "dev", "flannel0"]);
    expect(a.backend.repairFor({ kind: "route", deleted: true, dst: NETWORK, index: a.backend.device!.index })).toBe("resync");
    expect(a.backend.repairFor({ kind: "route", deleted: true, dst: "10.9.0.0/16", index: a.backend.device!.index })).toBeUndefined();
    expect(a.backend.repairFor({ kind: "address", deleted: true, cidr: "10.244.1.0/32", index: a.backend.device!.index })).toBe("resync");
    expect(await a.backend.resync()).toBe(2);
    expect(await a.backend.resync()).toBe(0);
    expect(a.ns.exec("ip", ["route", "show", "dev", "flannel0"])).toMatch(/10\.244\.0\.0\/16/);
    expect((await inNs(a.ns, "ping", ["-c", "1", "-W", "2", "10.244.2.0"])).out).toMatch(/1 received/);

    const before = a.backend.device!.index;
    a.ns.exec("ip", ["link", "del", "flannel0"]);
    expect(a.backend.repairFor({ kind: "link", deleted: true, index: before, name: "flannel0", up: false })).toBe("resync");
    await waitUntil("the reader to see the device go", 3000, () => (a.backend.device === undefined ? true : undefined), 50);
    expect(await a.backend.resync()).toBeGreaterThanOrEqual(3);
    expect(a.backend.device!.name).toBe("flannel0");
    expect(a.backend.device!.index).not.toBe(before);
    expect(linkStats(a.ns, "flannel0").mtu).toBe(1472);
    expect((await inNs(a.ns, "ping", ["-c", "1", "-W", "2", "10.244.2.0"])).out).toMatch(/1 received/);
    expect(a.warnings.join("\n")).toMatch(/went/);
  });

  it("drops malformed and foreign datagrams, counted by reason, while a ping goes on: none reaches flannel0", async () => {
    const [a, b] = await twoNodes(18285);
    // A third host on the underlay, not a node.
    b.ns.exec("ip", ["addr", "add", "192.168.77.3/24", "dev", "u0"]);
    const fromNode = await socketIn(b.netns, "192.168.77.2");
    const fromStranger = await socketIn(b.netns, "192.168.77.3");
    const pinging = inNs(a.ns, "ping", ["-c", "40", "-i", "0.05", "-W", "1", "10.244.2.0"], 30_000);
    const rxBefore = linkStats(a.ns, "flannel0").rx;
    const inBefore = a.backend.counters.packets.in;

    const header = (o: { dst?: number[]; total?: number; version?: number; ttl?: number; length: number }) => {
      const p = Buffer.alloc(o.length);
      p[0] = ((o.version ?? 4) << 4) | 5;
      p.writeUInt16BE(o.total ?? o.length, 2);
      p[8] = o.ttl ?? 64;
      p[9] = 17;
      Buffer.from([10, 244, 2, 5]).copy(p, 12);
      Buffer.from(o.dst ?? [10, 244, 1, 5]).copy(p, 16);
      let sum = 0;
      for (let i = 0; i < 20; i += 2) sum += p.readUInt16BE(i);
      while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
      p.writeUInt16BE(~sum & 0xffff, 10);
      return p;
    };
    const kinds: [string, Buffer, Socket][] = [
      ["truncated", Buffer.alloc(7, 0x45), fromNode],
      ["truncated", header({ length: 100, total: 200 }), fromNode],
      ["bad-length", header({ length: 100, total: 60 }), fromNode],
      ["too-large", header({ length: 1473 }), fromNode],
      ["not-ipv4", header({ length: 60, version: 6 }), fromNode],
      ["bad-header", Buffer.concat([Buffer.from([0x45, 0, 0, 60]), Buffer.alloc(56, 0xff)]), fromNode],
      ["not-local", header({ length: 60, dst: [10, 244, 7, 1] }), fromNode],
      ["not-local", header({ length: 60, dst: [192, 168, 77, 1] }), fromNode],
      ["ttl-expired", header({ length: 60, ttl: 1 }), fromNode],
      ["unknown-sender", header({ length: 60 }), fromStranger],
    ];
    const rounds = 300;
    for (let r = 0; r < rounds; r++) {
      for (const [, bytes, socket] of kinds) socket.send(bytes, 18285, "192.168.77.1");
      // random garbage of random length
      const junk = Buffer.alloc(1 + ((r * 7919) % 1600));
      for (let i = 0; i < junk.length; i++) junk[i] = (r * 31 + i * 17) & 0xff;
      fromNode.send(junk, 18285, "192.168.77.1");
      // Paced so that the socket's buffer holds each burst: what the kernel drops is not counted.
      if (r % 5 === 0) await new Promise((resolve) => setTimeout(resolve, 2));
    }
    const ping = await pinging;
    expect(ping.out).toMatch(/40 packets transmitted, 40 received/);
    const dropped = () => [...a.backend.counters.inboundDrops.values()].reduce((x, y) => x + y, 0);
    await waitUntil("the datagrams to be counted", 5000, () => (dropped() >= rounds * (kinds.length + 1) * 0.95 ? true : undefined), 50);
    const drops = a.backend.counters.inboundDrops;
    const expected = new Map<string, number>();
    for (const [reason] of kinds) expected.set(reason, (expected.get(reason) ?? 0) + rounds);
    for (const [reason, n] of expected) expect(drops.get(reason as never), reason).toBeGreaterThanOrEqual(n * 0.95);
    expect(drops.get("tun-full")).toBe(0);
    // flannel0 received exactly the packets the carrier wrote: the ping's replies, nothing of the flood.
    const written = a.backend.counters.packets.in - inBefore;
    expect(written).toBeGreaterThanOrEqual(40);
    expect(written).toBeLessThan(60);
    expect(linkStats(a.ns, "flannel0").rx - rxBefore).toBe(written);
    expect(a.backend.counters.format()).toMatch(/weft_agent_udp_dropped_total\{direction="in",reason="unknown-sender"\} [1-9]/);
  });
});
