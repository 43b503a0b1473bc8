import { createSocket, type RemoteInfo, type Socket } from "node:dgram";
import { closeSync, writeSync } from "node:fs";
import { weftSyscalls } from "../lib/native/syscalls.js";
import {
  checkInbound,
  decrementTtl,
  netUnreachable,
  outboundDestination,
  type InboundDrop,
  type OutboundDrop,
  type PeerTable,
} from "./udp-packets.js";

/** How long one wait for packets on the TUN may hold its worker thread (a stop wakes it at once). */
const READ_SLICE_MS = 1000;
/** About this many bytes of packets are read from the TUN per batch. */
const BATCH_BYTES = 256 * 1024;
/** Bytes waiting in the socket's send queue (its kernel buffer full) beyond which packets are dropped. */
const SEND_QUEUE_MAX_BYTES = 1024 * 1024;
/** At most one warning about the same problem per this long. */
const WARN_EVERY_MS = 10_000;

/** Why a datagram was not written to flannel0: the checks, or the TUN refusing it. */
export type InboundDropReason = InboundDrop | "no-device" | "tun-full" | "tun-write-failed";

const INBOUND_REASONS: readonly InboundDropReason[] = [
  "unknown-sender",
  "truncated",
  "not-ipv4",
  "bad-header",
  "bad-length",
  "too-large",
  "not-local",
  "ttl-expired",
  "no-device",
  "tun-full",
  "tun-write-failed",
];
const OUTBOUND_REASONS: readonly OutboundDrop[] = ["not-ipv4", "no-route", "ttl-expired", "send-queue-full", "send-failed"];

/** What the carrier did, for /metrics. */
export class UdpCounters {
  /** Packets read from flannel0 and sent to a node ("out"), received from a node and written to flannel0 ("in"). */
  readonly packets = { out: 0, in: 0 };
  readonly bytes = { out: 0, in: 0 };
  readonly inboundDrops = new Map<InboundDropReason, number>(INBOUND_REASONS.map((r) => [r, 0]));
  readonly outboundDrops = new Map<OutboundDrop, number>(OUTBOUND_REASONS.map((r) => [r, 0]));

  dropIn(reason: InboundDropReason): void {
    this.inboundDrops.set(reason, this.inboundDrops.get(reason)! + 1);
  }

  dropOut(reason: OutboundDrop): void {
    this.outboundDrops.set(reason, this.outboundDrops.get(reason)! + 1);
  }

  /** Prometheus text format. */
  format(): string {
    const lines = [
      "# HELP weft_agent_udp_packets_total Packets the udp backend carried: out, read from flannel0 and sent to a node; in, received from a node and written to flannel0.",
      "# TYPE weft_agent_udp_packets_total counter",
      `weft_agent_udp_packets_total{direction="out"} ${this.packets.out}`,
      `weft_agent_udp_packets_total{direction="in"} ${this.packets.in}`,
      "# HELP weft_agent_udp_bytes_total Bytes of the packets the udp backend carried (IP packets, without the carrier's headers).",
      "# TYPE weft_agent_udp_bytes_total counter",
      `weft_agent_udp_bytes_total{direction="out"} ${this.bytes.out}`,
      `weft_agent_udp_bytes_total{direction="in"} ${this.bytes.in}`,
      "# HELP weft_agent_udp_dropped_total Packets the udp backend dropped, by direction and reason.",
      "# TYPE weft_agent_udp_dropped_total counter",
      ...[...this.outboundDrops].map(([reason, n]) => `weft_agent_udp_dropped_total{direction="out",reason="${reason}"} ${n}`),
      ...[...this.inboundDrops].map(([reason, n]) => `weft_agent_udp_dropped_total{direction="in",reason="${reason}"} ${n}`),
    ];
    return `${lines.join("\n")}\n`;
  }
}

/** This node's subnet and flannel0's address, as integers: what arrives must be for the subnet. */
export interface OwnSubnet {
  network: number;
  mask: number;
}

interface OpenTun {
  fd: number;
  wake: number;
  name: string;
  stopped: boolean;
  /** Set when reading failed: the device went (deleted by hand). */
  lost: boolean;
  loop: Promise<void>;
}

export interface UdpCarrierOptions {
  table: PeerTable;
  counters: UdpCounters;
  /** Runs fn (synchronous) in the network namespace the device and the socket belong to. */
  inNamespace: <T>(fn: () => T) => T;
  warn: (message: string) => void;
}

/** Answers the socket's address lookups at once: it is only ever given addresses, and a bind must happen inside inNamespace. */
function literalLookup(address: string, _family: unknown, callback: (err: Error | null, address: string, family: number) => void): void {
  callback(null, address, 4);
}

/**
 * flanneld's udp proxy: packets read from the TUN device go, one UDP datagram each, to the node
 * whose subnet holds their destination; datagrams from the nodes are checked and written to the
 * TUN. The TUN is read in batches on a libuv worker thread (tunReceive), so the event loop never
 * blocks on it; the next batch is asked for only once one is handled, so a slow carrier leaves
 * packets in the kernel's bounded queue (dropped there) instead of in memory. The TUN fd is
 * non-blocking: a write it cannot take now is a drop. A socket whose kernel buffer is full
 * queues at most SEND_QUEUE_MAX_BYTES in user space; beyond, packets are dropped.
 */
export class UdpCarrier {
  private tun?: OpenTun;
  private socket?: Socket;
  private boundTo?: string;
  own?: OwnSubnet;
  /** The longest packet written to the TUN: its MTU. */
  mtu = 0;
  private readonly warnedAt = new Map<string, number>();

  constructor(private readonly o: UdpCarrierOptions) {}

  /** The TUN device's name while one is open and readable. */
  get device(): string | undefined {
    return this.tun && !this.tun.lost ? this.tun.name : undefined;
  }

  /** Opens a TUN device (`pattern`, e.g. "flannel%d") and starts carrying what it gives; returns its name. */
  openTun(pattern: string): string {
    if (this.tun) throw new Error(`the TUN device ${this.tun.name} is open already`);
    const { tunOpen, wakeFd } = weftSyscalls();
    const { fd, name } = this.o.inNamespace(() => tunOpen(pattern));
    let wake: number;
    try {
      wake = wakeFd();
    } catch (err) {
      closeSync(fd);
      throw err;
    }
    const tun: OpenTun = { fd, wake, name, stopped: false, lost: false, loop: Promise.resolve() };
    tun.loop = this.read(tun);
    this.tun = tun;
    return name;
  }

  private async read(tun: OpenTun): Promise<void> {
    const { tunReceive } = weftSyscalls();
    try {
      while (!tun.stopped) {
        let batch: Buffer | null;
        try {
          batch = await tunReceive(tun.fd, tun.wake, READ_SLICE_MS, BATCH_BYTES);
        } catch (err) {
          if (!tun.stopped) {
            tun.lost = true;
            this.o.warn(`reading ${tun.name} failed (${(err as Error).message}): the device went; it is made again at the next full pass`);
          }
          break;
        }
        if (batch === null) break;
        for (let offset = 0; offset + 2 <= batch.length;) {
          const length = batch.readUInt16LE(offset);
          this.forward(batch.subarray(offset + 2, offset + 2 + length));
          offset += 2 + length;
        }
      }
    } finally {
      closeSync(tun.fd);
      closeSync(tun.wake);
    }
  }

  /** Stops reading and closes the TUN fd (a device that is not persistent goes with it). */
  async closeTun(): Promise<void> {
    const tun = this.tun;
    if (!tun) return;
    this.tun = undefined;
    tun.stopped = true;
    const wake = Buffer.alloc(8);
    wake.writeBigUInt64LE(1n);
    try {
      writeSync(tun.wake, wake);
    } catch {
      // The loop already ended and closed it.
    }
    await tun.loop;
  }

  /** One packet from the TUN to the node owning its destination. */
  private forward(packet: Buffer): void {
    const { counters } = this.o;
    const destination = outboundDestination(packet);
    if (destination === undefined) return counters.dropOut("not-ipv4");
    const peer = this.o.table.lookup(destination);
    if (!peer) {
      counters.dropOut("no-route");
      const reply = netUnreachable(packet);
      if (reply) this.writeTun(reply);
      return;
    }
    if (!decrementTtl(packet)) return counters.dropOut("ttl-expired");
    const socket = this.socket;
    if (!socket || socket.getSendQueueSize() > SEND_QUEUE_MAX_BYTES) return counters.dropOut("send-queue-full");
    socket.send(packet, peer.port, peer.address, this.onSent);
    counters.packets.out++;
    counters.bytes.out += packet.length;
  }

  private readonly onSent = (err: Error | null): void => {
    if (!err) return;
    this.o.counters.dropOut("send-failed");
    this.warnOnce("send", `sending a packet failed: ${err.message}`);
  };

  /** One datagram from the network into the TUN, if it passes the checks. */
  private readonly onMessage = (packet: Buffer, from: RemoteInfo): void => {
    const { counters } = this.o;
    if (!this.o.table.isSender(from.address)) return counters.dropIn("unknown-sender");
    const own = this.own;
    if (!own) return counters.dropIn("not-local");
    const refused = checkInbound(packet, this.mtu, own.network, own.mask);
    if (refused) return counters.dropIn(refused);
    decrementTtl(packet);
    if (this.writeTun(packet)) {
      counters.packets.in++;
      counters.bytes.in += packet.length;
    }
  };

  /** false (counted) when the TUN cannot take the packet now. */
  private writeTun(packet: Buffer): boolean {
    const tun = this.tun;
    if (!tun || tun.lost) {
      this.o.counters.dropIn("no-device");
      return false;
    }
    try {
      writeSync(tun.fd, packet);
      return true;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === "EAGAIN" || code === "EWOULDBLOCK" || code === "ENOBUFS") {
        this.o.counters.dropIn("tun-full");
      } else {
        this.o.counters.dropIn("tun-write-failed");
        this.warnOnce("tun-write", `writing to ${tun.name} failed: ${(err as Error).message}`);
      }
      return false;
    }
  }

  private warnOnce(topic: string, message: string): void {
    const now = Date.now();
    if (now - (this.warnedAt.get(topic) ?? -Infinity) < WARN_EVERY_MS) return;
    this.warnedAt.set(topic, now);
    this.o.warn(message);
  }

  /** The address:port the socket is bound to, if any. */
  get boundAddress(): string | undefined {
    return this.boundTo;
  }

  /** The carrier's UDP socket on address:port (the external interface's address, as flanneld binds); an earlier one is closed. */
  async bind(address: string, port: number): Promise<void> {
    this.closeSocket();
    const socket = createSocket({ type: "udp4", lookup: literalLookup });
    socket.on("message", this.onMessage);
    const bound = new Promise<void>((resolve, reject) => {
      socket.once("listening", resolve);
      socket.once("error", reject);
    });
    // With the lookup answering at once, the socket is made and bound inside the namespace.
    this.o.inNamespace(() => socket.bind({ address, port, exclusive: true }));
    try {
      await bound;
    } catch (err) {
      socket.close();
      throw new Error(`the udp backend cannot listen on ${address}:${port}: ${(err as Error).message}`, { cause: err });
    }
    socket.on("error", (err) => this.warnOnce("socket", `the udp backend's socket: ${err.message}`));
    this.socket = socket;
    this.boundTo = `${address}:${port}`;
  }

  private closeSocket(): void {
    this.socket?.close();
    this.socket = undefined;
    this.boundTo = undefined;
  }

  async close(): Promise<void> {
    this.closeSocket();
    await this.closeTun();
  }
}
