// The udp backend's packet work, on bare IPv4 packets as flannel0 gives and takes them: the peer a
// packet goes to, the checks a datagram from the network must pass before it is written to
// flannel0, the TTL each carrier hop takes (as flanneld's proxy does), and the ICMP "network
// unreachable" a packet for no node's subnet gets back.

const IPV4_HEADER = 20;
const ICMP_HEADER = 8;
const IPPROTO_ICMP = 1;

/** An IPv4 address as an unsigned 32-bit integer; undefined unless it is a dotted quad. */
export function ipv4ToInt(address: string): number | undefined {
  const parts = address.split(".");
  if (parts.length !== 4) return undefined;
  let value = 0;
  for (const part of parts) {
    if (!/^\d{1,3}$/.test(part)) return undefined;
    const octet = Number(part);
    if (octet > 255) return undefined;
    value = value * 256 + octet;
  }
  return value;
}

export function intToIpv4(value: number): string {
  return [value >>> 24, (value >>> 16) & 0xff, (value >>> 8) & 0xff, value & 0xff].join(".");
}

/** The netmask of a prefix length as an unsigned integer. */
export function prefixMask(length: number): number {
  return length === 0 ? 0 : (0xffffffff << (32 - length)) >>> 0;
}

/** Where a peer's packets go: its public address (an integer) and the carrier's port. */
export interface CarrierEndpoint {
  address: number;
  port: number;
}

/**
 * The other nodes' subnets and where each is reached. A lookup is one Map access per distinct
 * subnet length (one in any flannel network, whose subnets all have SubnetLen), whatever the
 * number of nodes.
 */
export class PeerTable {
  private readonly bySubnet = new Map<number, CarrierEndpoint>();
  private readonly keyBySubnet = new Map<number, string>();
  private readonly byKey = new Map<string, { slot: number; length: number; address: number }>();
  /** Subnet lengths in use, with how many subnets have each. */
  private readonly lengths = new Map<number, number>();
  /** Public addresses in use, with how many leases name each: the senders a datagram may come from. */
  private readonly senders = new Map<number, number>();

  /** One lease's subnet ("10.244.3.0/24" as network and length) and endpoint, or (undefined) none. */
  set(key: string, entry: { network: number; length: number; endpoint: CarrierEndpoint } | undefined): void {
    const old = this.byKey.get(key);
    if (old) {
      this.byKey.delete(key);
      this.bySubnet.delete(old.slot);
      this.keyBySubnet.delete(old.slot);
      decrement(this.lengths, old.length);
      decrement(this.senders, old.address);
    }
    if (!entry) return;
    const slot = slotOf(entry.network, entry.length);
    // Two leases for one subnet cannot both be live in etcd; the later one wins here.
    const other = this.keyBySubnet.get(slot);
    if (other !== undefined) this.set(other, undefined);
    this.byKey.set(key, { slot, length: entry.length, address: entry.endpoint.address });
    this.bySubnet.set(slot, entry.endpoint);
    this.keyBySubnet.set(slot, key);
    this.lengths.set(entry.length, (this.lengths.get(entry.length) ?? 0) + 1);
    this.senders.set(entry.endpoint.address, (this.senders.get(entry.endpoint.address) ?? 0) + 1);
  }

  /** The endpoint of the subnet holding `destination`. */
  lookup(destination: number): CarrierEndpoint | undefined {
    for (const length of this.lengths.keys()) {
      const endpoint = this.bySubnet.get(slotOf((destination & prefixMask(length)) >>> 0, length));
      if (endpoint) return endpoint;
    }
    return undefined;
  }

  /** Whether `address` (an integer) is the public address of a node in the table. */
  isSender(address: number): boolean {
    return this.senders.has(address);
  }

  has(key: string): boolean {
    return this.byKey.has(key);
  }

  get size(): number {
    return this.byKey.size;
  }
}

function slotOf(network: number, length: number): number {
  return network * 64 + length;
}

function decrement<K>(counts: Map<K, number>, key: K): void {
  const n = (counts.get(key) ?? 0) - 1;
  if (n > 0) counts.set(key, n);
  else counts.delete(key);
}

/** Why a datagram from the network is not written to flannel0. */
export type InboundDrop = "unknown-sender" | "truncated" | "not-ipv4" | "bad-header" | "bad-length" | "too-large" | "not-local" | "ttl-expired";

/** Why a packet read from flannel0 is not sent. */
export type OutboundDrop = "not-ipv4" | "no-route" | "ttl-expired" | "send-queue-full" | "send-failed";

/** The IPv4 header's checksum over `length` bytes: 0 for a header whose checksum field is right. */
function headerChecksum(packet: Buffer, length: number): number {
  let sum = 0;
  for (let i = 0; i < length; i += 2) sum += packet.readUInt16BE(i);
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

/**
 * Checks a datagram's payload before it goes into flannel0: a whole IPv4 packet (header length,
 * total length equal to what arrived, header checksum) no longer than flannel0's MTU, addressed
 * inside this node's subnet (`ownNetwork`/`ownMask`), with TTL left for the hop. Returns why it is
 * refused, or undefined.
 */
export function checkInbound(packet: Buffer, maxLength: number, ownNetwork: number, ownMask: number): InboundDrop | undefined {
  if (packet.length < IPV4_HEADER) return "truncated";
  const first = packet[0]!;
  if (first >>> 4 !== 4) return "not-ipv4";
  const headerLength = (first & 0x0f) * 4;
  if (headerLength < IPV4_HEADER || headerLength > packet.length || headerChecksum(packet, headerLength) !== 0) return "bad-header";
  const total = packet.readUInt16BE(2);
  if (total !== packet.length) return total > packet.length ? "truncated" : "bad-length";
  if (packet.length > maxLength) return "too-large";
  if ((packet.readUInt32BE(16) & ownMask) >>> 0 !== ownNetwork) return "not-local";
  if (packet[8]! <= 1) return "ttl-expired";
  return undefined;
}

/** The destination of a packet read from flannel0, or undefined when it is no IPv4 packet. */
export function outboundDestination(packet: Buffer): number | undefined {
  if (packet.length < IPV4_HEADER || packet[0]! >>> 4 !== 4) return undefined;
  return packet.readUInt32BE(16);
}

/**
 * Takes one off the packet's TTL in place, the checksum patched as RFC 1624 says (flanneld's proxy
 * counts as a hop each way); false, and the packet untouched, when no TTL is left to take.
 */
export function decrementTtl(packet: Buffer): boolean {
  const ttl = packet[8]!;
  if (ttl <= 1) return false;
  packet[8] = ttl - 1;
  // The TTL is the high byte of the 16-bit word at 8: the word drops by 0x100, the checksum rises by it.
  let sum = packet.readUInt16BE(10) + 0x100;
  sum = (sum & 0xffff) + (sum >>> 16);
  packet.writeUInt16BE(sum & 0xffff, 10);
  return true;
}

function internetChecksum(bytes: Buffer): number {
  let sum = 0;
  for (let i = 0; i + 1 < bytes.length; i += 2) sum += bytes.readUInt16BE(i);
  if (bytes.length % 2 === 1) sum += bytes[bytes.length - 1]! << 8;
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

/**
 * ICMP destination unreachable, network unreachable (type 3 code 0), back to the sender of
 * `offender`, as flanneld's proxy answers a packet for a subnet no node holds. Its source is the
 * unreachable destination itself: flanneld's choice, flannel0's own address, arrives on flannel0
 * as a local source, which the kernel drops as martian. None for an ICMP packet (RFC 792: no ICMP
 * about ICMP), a later fragment, or a packet too short to quote.
 */
export function netUnreachable(offender: Buffer): Buffer | undefined {
  if (offender.length < IPV4_HEADER || offender[0]! >>> 4 !== 4) return undefined;
  const headerLength = (offender[0]! & 0x0f) * 4;
  if (headerLength < IPV4_HEADER || offender.length < headerLength + 8) return undefined;
  if (offender[9] === IPPROTO_ICMP) return undefined;
  if ((offender.readUInt16BE(6) & 0x1fff) !== 0) return undefined;
  const quoted = offender.subarray(0, headerLength + 8);
  const reply = Buffer.alloc(IPV4_HEADER + ICMP_HEADER + quoted.length);
  reply[0] = 0x45;
  reply.writeUInt16BE(reply.length, 2);
  reply[8] = 64;
  reply[9] = IPPROTO_ICMP;
  offender.copy(reply, 12, 16, 20);
  offender.copy(reply, 16, 12, 16);
  reply.writeUInt16BE(internetChecksum(reply.subarray(0, IPV4_HEADER)), 10);
  reply[IPV4_HEADER] = 3;
  reply[IPV4_HEADER + 1] = 0;
  quoted.copy(reply, IPV4_HEADER + ICMP_HEADER);
  reply.writeUInt16BE(internetChecksum(reply.subarray(IPV4_HEADER)), IPV4_HEADER + 2);
  return reply;
}
