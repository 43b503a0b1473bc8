import { closeSync, writeSync } from "node:fs";
import { CARRIER_FROM_SOCKET, CARRIER_HEADER, weftSyscalls } from "../lib/native/syscalls.js";
import {
  checkInbound,
  decrementTtl,
  netUnreachable,
  outboundDestination,
  type InboundDrop,
  type OutboundDrop,
  type PeerTable,
} from "./udp-packets.js";

/** How long one wait for packets may hold its worker thread (a stop wakes it at once). */
const READ_SLICE_MS = 1000;
/** About this many bytes of packets and datagrams are read per batch. */
const BATCH_BYTES = 256 * 1024;

/** Why a datagram was not written to flannel0: the checks, or the TUN refusing it. */
export type InboundDropReason = InboundDrop | "tun-full";

const INBOUND_REASONS: readonly InboundDropReason[] = [
  "unknown-sender",
  "truncated",
  "not-ipv4",
  "bad-header",
  "bad-length",
  "too-large",
  "not-local",
  "ttl-expired",
  "tun-full",
];
const OUTBOUND_REASONS: readonly OutboundDrop[] = ["not-ipv4", "no-route", "ttl-expired", "send-queue-full"];

/** What the carrier did, for /metrics. */
export class UdpCounters {
  /** Packets read from flannel0 and sent to a node ("out"), received from a node and written to flannel0 ("in"). */
  readonly packets = { out: 0, in: 0 };
  readonly bytes = { out: 0, in: 0 };
  readonly inboundDrops = new Map<InboundDropReason, number>(INBOUND_REASONS.map((r) => [r, 0]));
  readonly outboundDrops = new Map<OutboundDrop, number>(OUTBOUND_REASONS.map((r) => [r, 0]));
  /**
   * Packets the kernel dropped from the TUN device's own queue while the carrier was busy (its
   * tx_dropped, read when asked; it starts again from 0 when the device is made again).
   */
  deviceQueueDrops: () => number = () => 0;

  dropIn(reason: InboundDropReason, n = 1): void {
    this.inboundDrops.set(reason, this.inboundDrops.get(reason)! + n);
  }

  dropOut(reason: OutboundDrop, n = 1): void {
    this.outboundDrops.set(reason, this.outboundDrops.get(reason)! + n);
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
      `weft_agent_udp_dropped_total{direction="out",reason="device-queue-full"} ${this.deviceQueueDrops()}`,
      ...[...this.inboundDrops].map(([reason, n]) => `weft_agent_udp_dropped_total{direction="in",reason="${reason}"} ${n}`),
    ];
    return `${lines.join("\n")}\n`;
  }
}

/** This node's subnet, as integers: what arrives must be for it. */
export interface OwnSubnet {
  network: number;
  mask: number;
}

interface Loop {
  wake: number;
  stopped: boolean;
  done: Promise<void>;
}

/** Records (CARRIER_HEADER bytes each, then the packet) gathered for one native call. */
class RecordBatch {
  private buffer = Buffer.allocUnsafe(0);
  length = 0;
  count = 0;
  bytes = 0;

  reset(capacity: number): void {
    if (this.buffer.length < capacity) this.buffer = Buffer.allocUnsafe(capacity);
    this.length = 0;
    this.count = 0;
    this.bytes = 0;
  }

  /** A packet with the destination's address and port (network order) in its header. */
  add(packet: Buffer, address = 0, port = 0): void {
    const at = this.length;
    this.buffer.writeUInt16LE(packet.length, at);
    this.buffer.writeUInt16BE(port, at + 2);
    this.buffer.writeUInt32BE(address, at + 4);
    packet.copy(this.buffer, at + CARRIER_HEADER);
    this.length += CARRIER_HEADER + packet.length;
    this.count++;
    this.bytes += packet.length;
  }

  get records(): Buffer {
    return this.buffer.subarray(0, this.length);
  }
}

/**
 * flanneld's udp proxy: packets read from the TUN device go, one UDP datagram each, to the node
 * whose subnet holds their destination; datagrams from the nodes are checked and written to the
 * TUN. Both are read in batches by one native call on a libuv worker thread (carrierReceive), so
 * the event loop never blocks on them and a packet costs no thread round trip of its own; the batch's
 * datagrams go out in one sendmmsg and its packets into the TUN in one call, both non-blocking. The
 * next batch is read only once one is handled, so a carrier that cannot keep up leaves what it cannot
 * take in the kernel's bounded queues (the TUN's, the socket's), where it is dropped: memory does not
 * grow. A full socket buffer or TUN is a counted drop.
 */
export class UdpCarrier {
  private tun?: { fd: number; name: string; lost: boolean };
  private udp?: { fd: number; boundTo: string };
  private loop?: Loop;
  own?: OwnSubnet;
  /** The longest packet written to the TUN: its MTU. */
  mtu = 0;
  private readonly sends = new RecordBatch();
  private readonly writes = new RecordBatch();

  constructor(
    private readonly o: {
      table: PeerTable;
      counters: UdpCounters;
      /** Runs fn (synchronous) in the network namespace the device and the socket belong to. */
      inNamespace: <T>(fn: () => T) => T;
      warn: (message: string) => void;
    },
  ) {}

  /** The TUN device's name while one is open and readable. */
  get device(): string | undefined {
    return this.tun && !this.tun.lost ? this.tun.name : undefined;
  }

  /** The address:port the socket is bound to, if any. */
  get boundAddress(): string | undefined {
    return this.udp?.boundTo;
  }

  /** Opens a TUN device (`pattern`, e.g. "flannel%d"), closing one open before; returns its name. */
  async openTun(pattern: string): Promise<string> {
    await this.stopLoop();
    this.closeTunFd();
    const { fd, name } = this.o.inNamespace(() => weftSyscalls().tunOpen(pattern));
    this.tun = { fd, name, lost: false };
    this.startLoop();
    return name;
  }

  /** The carrier's socket on address:port (flanneld binds the external interface's address); one bound before is closed. */
  async bind(address: string, port: number): Promise<void> {
    await this.stopLoop();
    if (this.udp) closeSync(this.udp.fd);
    this.udp = undefined;
    try {
      const fd = this.o.inNamespace(() => weftSyscalls().udpOpen(address, port));
      this.udp = { fd, boundTo: `${address}:${port}` };
    } catch (err) {
      throw new Error(`the udp backend cannot listen on ${address}:${port}: ${(err as Error).message}`, { cause: err });
    } finally {
      this.startLoop();
    }
  }

  private startLoop(): void {
    const { tun, udp } = this;
    if (this.loop || !tun || tun.lost || !udp) return;
    const loop: Loop = { wake: weftSyscalls().wakeFd(), stopped: false, done: Promise.resolve() };
    loop.done = this.run(loop, tun, udp.fd);
    this.loop = loop;
  }

  private async stopLoop(): Promise<void> {
    const loop = this.loop;
    if (!loop) return;
    this.loop = undefined;
    loop.stopped = true;
    const one = Buffer.alloc(8);
    one.writeBigUInt64LE(1n);
    writeSync(loop.wake, one);
    await loop.done;
  }

  private async run(loop: Loop, tun: { fd: number; name: string; lost: boolean }, udpFd: number): Promise<void> {
    const { carrierReceive } = weftSyscalls();
    try {
      while (!loop.stopped) {
        let batch: Buffer | null;
        try {
          batch = await carrierReceive(tun.fd, udpFd, loop.wake, READ_SLICE_MS, BATCH_BYTES);
        } catch (err) {
          if (!loop.stopped) {
            tun.lost = true;
            this.o.warn(`reading ${tun.name} failed (${(err as Error).message}): the device went; it is made again at the next full pass`);
          }
          break;
        }
        if (batch === null) break;
        this.carry(batch, tun.fd, udpFd);
      }
    } finally {
      closeSync(loop.wake);
      if (this.loop === loop) this.loop = undefined;
    }
  }

  /** One batch: each packet from the TUN routed, each datagram checked; then one send and one TUN write. */
  private carry(batch: Buffer, tunFd: number, udpFd: number): void {
    this.sends.reset(batch.length);
    this.writes.reset(batch.length);
    for (let offset = 0; offset + CARRIER_HEADER <= batch.length;) {
      const length = batch.readUInt16LE(offset);
      const packet = batch.subarray(offset + CARRIER_HEADER, offset + CARRIER_HEADER + length);
      if (batch[offset + 2] === CARRIER_FROM_SOCKET) this.inbound(packet, batch.readUInt32BE(offset + 4));
      else this.outbound(packet, tunFd);
      offset += CARRIER_HEADER + length;
    }
    const { counters } = this.o;
    const { udpSendBatch, tunWriteBatch } = weftSyscalls();
    if (this.sends.count > 0) {
      const sent = udpSendBatch(udpFd, this.sends.records);
      counters.packets.out += sent;
      counters.bytes.out += sent === this.sends.count ? this.sends.bytes : Math.round((this.sends.bytes * sent) / this.sends.count);
      if (sent < this.sends.count) counters.dropOut("send-queue-full", this.sends.count - sent);
    }
    if (this.writes.count > 0) {
      const written = tunWriteBatch(tunFd, this.writes.records);
      counters.packets.in += written;
      counters.bytes.in += written === this.writes.count ? this.writes.bytes : Math.round((this.writes.bytes * written) / this.writes.count);
      if (written < this.writes.count) counters.dropIn("tun-full", this.writes.count - written);
    }
  }

  /** A packet from the TUN, to the node owning its destination. */
  private outbound(packet: Buffer, tunFd: number): void {
    const { counters } = this.o;
    const destination = outboundDestination(packet);
    if (destination === undefined) return counters.dropOut("not-ipv4");
    const peer = this.o.table.lookup(destination);
    if (!peer) {
      counters.dropOut("no-route");
      const reply = netUnreachable(packet);
      if (reply) {
        const one = new RecordBatch();
        one.reset(CARRIER_HEADER + reply.length);
        one.add(reply);
        weftSyscalls().tunWriteBatch(tunFd, one.records);
      }
      return;
    }
    if (!decrementTtl(packet)) return counters.dropOut("ttl-expired");
    this.sends.add(packet, peer.address, peer.port);
  }

  /** A datagram from `source` (an integer address), into the TUN if it passes the checks. */
  private inbound(packet: Buffer, source: number): void {
    const { counters } = this.o;
    if (!this.o.table.isSender(source)) return counters.dropIn("unknown-sender");
    const own = this.own;
    if (!own) return counters.dropIn("not-local");
    const refused = checkInbound(packet, this.mtu, own.network, own.mask);
    if (refused) return counters.dropIn(refused);
    decrementTtl(packet);
    this.writes.add(packet);
  }

  private closeTunFd(): void {
    if (this.tun) closeSync(this.tun.fd);
    this.tun = undefined;
  }

  /** Stops carrying and closes the socket and the TUN fd (a device that is not persistent goes with it). */
  async close(): Promise<void> {
    await this.stopLoop();
    this.closeTunFd();
    if (this.udp) closeSync(this.udp.fd);
    this.udp = undefined;
  }
}
