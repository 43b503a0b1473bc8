import { describe, expect, it } from "vitest";
import { checkInbound, decrementTtl, intToIpv4, ipv4ToInt, netUnreachable, outboundDestination, PeerTable, prefixMask } from "./udp-packets.js";

const ip = (s: string) => ipv4Int(s);
function ipv4Int(s: string): number {
  const n = ipv4ToInt(s);
  if (n === undefined) throw new Error(s);
  return n;
}

function checksum(bytes: Buffer): number {
  let sum = 0;
  for (let i = 0; i + 1 < bytes.length; i += 2) sum += bytes.readUInt16BE(i);
  if (bytes.length % 2) sum += bytes[bytes.length - 1]! << 8;
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

/** An IPv4 packet with a right header checksum: protocol 17 (UDP) unless said, `payload` bytes after the header. */
function packet(src: string, dst: string, o: { payload?: number; ttl?: number; protocol?: number; fragment?: number } = {}): Buffer {
  const b = Buffer.alloc(20 + (o.payload ?? 8));
  b[0] = 0x45;
  b.writeUInt16BE(b.length, 2);
  b.writeUInt16BE(o.fragment ?? 0x4000, 6);
  b[8] = o.ttl ?? 64;
  b[9] = o.protocol ?? 17;
  b.writeUInt32BE(ip(src), 12);
  b.writeUInt32BE(ip(dst), 16);
  for (let i = 20; i < b.length; i++) b[i] = i & 0xff;
  b.writeUInt16BE(checksum(b.subarray(0, 20)), 10);
  return b;
}

describe("addresses", () => {
  it("converts dotted quads and masks", () => {
    expect(ipv4ToInt("10.244.3.7")).toBe(0x0af40307);
    expect(ipv4ToInt("255.255.255.255")).toBe(0xffffffff);
    expect(intToIpv4(0xc0a84001)).toBe("192.168.64.1");
    for (const bad of ["10.244.3", "10.244.3.256", "a.b.c.d", "10.244.3.7.1", "", "1..2.3"]) expect(ipv4ToInt(bad)).toBeUndefined();
    expect(prefixMask(0)).toBe(0);
    expect(prefixMask(24)).toBe(0xffffff00);
    expect(prefixMask(32)).toBe(0xffffffff);
    expect(prefixMask(1)).toBe(0x80000000);
  });
});

describe("PeerTable", () => {
  const endpoint = (address: string) => ({ address: ip(address), port: 8285 });

  it("finds the node owning a destination, and forgets a node that left", () => {
    const t = new PeerTable();
    t.set("10.244.1.0-24", { network: ip("10.244.1.0"), length: 24, endpoint: endpoint("192.168.64.1") });
    t.set("10.244.2.0-24", { network: ip("10.244.2.0"), length: 24, endpoint: endpoint("192.168.64.2") });
    expect(t.lookup(ip("10.244.1.9"))).toEqual(endpoint("192.168.64.1"));
    expect(t.lookup(ip("10.244.2.255"))).toEqual(endpoint("192.168.64.2"));
    expect(t.lookup(ip("10.244.3.1"))).toBeUndefined();
    expect(t.isSender(ip("192.168.64.2"))).toBe(true);
    expect(t.size).toBe(2);
    t.set("10.244.2.0-24", undefined);
    expect(t.lookup(ip("10.244.2.1"))).toBeUndefined();
    expect(t.isSender(ip("192.168.64.2"))).toBe(false);
    expect(t.has("10.244.2.0-24")).toBe(false);
    expect(t.size).toBe(1);
  });

  it("moves a node's endpoint in place, and keeps a sender while another lease names it", () => {
    const t = new PeerTable();
    t.set("a", { network: ip("10.244.1.0"), length: 24, endpoint: endpoint("192.168.64.1") });
    t.set("b", { network: ip("10.244.2.0"), length: 24, endpoint: endpoint("192.168.64.1") });
    t.set("a", { network: ip("10.244.1.0"), length: 24, endpoint: endpoint("192.168.64.9") });
    expect(t.lookup(ip("10.244.1.1"))).toEqual(endpoint("192.168.64.9"));
    expect(t.isSender(ip("192.168.64.1"))).toBe(true);
    t.set("b", undefined);
    expect(t.isSender(ip("192.168.64.1"))).toBe(false);
    expect(t.isSender(ip("192.168.64.9"))).toBe(true);
  });

  it("gives a subnet to the lease written last, and looks up mixed subnet lengths", () => {
    const t = new PeerTable();
    t.set("old", { network: ip("10.244.1.0"), length: 24, endpoint: endpoint("192.168.64.1") });
    t.set("new", { network: ip("10.244.1.0"), length: 24, endpoint: endpoint("192.168.64.2") });
    expect(t.size).toBe(1);
    expect(t.has("old")).toBe(false);
    expect(t.lookup(ip("10.244.1.1"))).toEqual(endpoint("192.168.64.2"));
    t.set("wide", { network: ip("10.245.0.0"), length: 16, endpoint: endpoint("192.168.64.3") });
    expect(t.lookup(ip("10.245.200.1"))).toEqual(endpoint("192.168.64.3"));
    expect(t.lookup(ip("10.244.1.1"))).toEqual(endpoint("192.168.64.2"));
  });

  it("costs the same per lookup with 5,000 nodes as with one", () => {
    const t = new PeerTable();
    for (let i = 0; i < 5000; i++) {
      t.set(`k${i}`, { network: (ip("10.0.0.0") + i * 256) >>> 0, length: 24, endpoint: endpoint(`192.168.${i >> 8}.${i & 0xff}`) });
    }
    expect(t.lookup((ip("10.0.0.0") + 4999 * 256 + 7) >>> 0)).toEqual(endpoint("192.168.19.135"));
    expect(t.lookup(ip("11.0.0.1"))).toBeUndefined();
  });
});

describe("checkInbound", () => {
  const own = { network: ip("10.244.2.0"), mask: prefixMask(24) };
  const check = (p: Buffer, mtu = 1472) => checkInbound(p, mtu, own.network, own.mask);

  it("passes a whole IPv4 packet for this node's subnet", () => {
    expect(check(packet("10.244.1.5", "10.244.2.7"))).toBeUndefined();
    expect(check(packet("10.244.1.5", "10.244.2.7", { payload: 1452 }))).toBeUndefined();
  });

  it("names why it refuses a datagram", () => {
    const good = packet("10.244.1.5", "10.244.2.7", { payload: 100 });
    expect(check(good.subarray(0, 19))).toBe("truncated");
    expect(check(Buffer.alloc(0))).toBe("truncated");
    expect(check(good.subarray(0, 60))).toBe("truncated");
    expect(check(Buffer.concat([good, Buffer.alloc(4)]))).toBe("bad-length");
    const v6 = Buffer.from(good);
    v6[0] = 0x60;
    expect(check(v6)).toBe("not-ipv4");
    const shortHeader = Buffer.from(good);
    shortHeader[0] = 0x44;
    expect(check(shortHeader)).toBe("bad-header");
    const longHeader = Buffer.from(good.subarray(0, 24));
    longHeader[0] = 0x4f;
    expect(check(longHeader)).toBe("bad-header");
    const corrupt = Buffer.from(good);
    corrupt[15] = corrupt[15]! ^ 1;
    expect(check(corrupt)).toBe("bad-header");
    expect(check(packet("10.244.1.5", "10.244.2.7", { payload: 1453 }))).toBe("too-large");
    expect(check(packet("10.244.1.5", "10.244.3.7"))).toBe("not-local");
    expect(check(packet("10.244.1.5", "8.8.8.8"))).toBe("not-local");
    expect(check(packet("10.244.1.5", "10.244.2.7", { ttl: 1 }))).toBe("ttl-expired");
    expect(check(packet("10.244.1.5", "10.244.2.7", { ttl: 0 }))).toBe("ttl-expired");
  });
});

describe("decrementTtl", () => {
  it("takes one off and keeps the header checksum right, across the carry", () => {
    for (const ttl of [64, 2, 255]) {
      for (const payload of [8, 9, 31]) {
        const p = packet("10.244.1.5", "10.244.2.7", { ttl, payload });
        expect(decrementTtl(p)).toBe(true);
        expect(p[8]).toBe(ttl - 1);
        expect(checksum(p.subarray(0, 20))).toBe(0);
      }
    }
    // Every checksum value a header can have, the TTL taken off each time.
    const p = packet("10.244.1.5", "10.244.2.7", { ttl: 255 });
    for (let i = 0; i < 3000; i++) {
      p.writeUInt32BE((i * 2654435761) >>> 0, 12);
      p[8] = 200;
      p.writeUInt16BE(0, 10);
      p.writeUInt16BE(checksum(p.subarray(0, 20)), 10);
      decrementTtl(p);
      expect(checksum(p.subarray(0, 20))).toBe(0);
    }
  });

  it("leaves a packet with TTL 1 or 0 alone", () => {
    for (const ttl of [0, 1]) {
      const p = packet("10.244.1.5", "10.244.2.7", { ttl });
      const before = Buffer.from(p);
      expect(decrementTtl(p)).toBe(false);
      expect(p).toEqual(before);
    }
  });
});

describe("outboundDestination", () => {
  it("reads an IPv4 packet's destination, nothing from anything else", () => {
    expect(outboundDestination(packet("10.244.1.5", "10.244.2.7"))).toBe(ip("10.244.2.7"));
    expect(outboundDestination(Buffer.alloc(19, 0x45))).toBeUndefined();
    const v6 = Buffer.alloc(40);
    v6[0] = 0x60;
    expect(outboundDestination(v6)).toBeUndefined();
  });
});

describe("netUnreachable", () => {
  it("answers with ICMP network unreachable from the unreachable address, quoting the header and 8 bytes", () => {
    const offender = packet("10.244.1.5", "10.244.9.7", { payload: 100 });
    const reply = netUnreachable(offender)!;
    expect(reply.length).toBe(20 + 8 + 28);
    expect(reply[0]).toBe(0x45);
    expect(reply.readUInt16BE(2)).toBe(reply.length);
    expect(reply[9]).toBe(1);
    expect(intToIpv4(reply.readUInt32BE(12))).toBe("10.244.9.7");
    expect(intToIpv4(reply.readUInt32BE(16))).toBe("10.244.1.5");
    expect(checksum(reply.subarray(0, 20))).toBe(0);
    expect([reply[20], reply[21]]).toEqual([3, 0]);
    expect(checksum(reply.subarray(20))).toBe(0);
    expect(reply.subarray(28)).toEqual(offender.subarray(0, 28));
  });

  it("does not answer ICMP, a later fragment, or a packet too short to quote", () => {
    expect(netUnreachable(packet("10.244.1.5", "10.244.9.7", { protocol: 1 }))).toBeUndefined();
    expect(netUnreachable(packet("10.244.1.5", "10.244.9.7", { fragment: 0x2010 }))).toBeUndefined();
    expect(netUnreachable(packet("10.244.1.5", "10.244.9.7", { payload: 7 }))).toBeUndefined();
    expect(netUnreachable(packet("10.244.1.5", "10.244.9.7", { fragment: 0x2000 }))).toBeDefined();
  });
});
