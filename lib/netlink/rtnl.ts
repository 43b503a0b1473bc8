import { closeSync, writeSync } from "node:fs";
import { KernelError, kernelError } from "../errors/kernel.js";
import type { Netns } from "../netns/netns.js";
import { weftSyscalls } from "../native/syscalls.js";

/**
 * A netlink socket bound to one network namespace, and the small attribute codec weft needs. The
 * messages travel through weft's own addon (lib/native/weft.c), each request sent and answered on a
 * libuv worker thread; sequence numbers, ACKs, errors and interrupted dumps are handled here, once.
 */

export const NETLINK_ROUTE = 0;
/** nfnetlink, for the one nftables question asked over netlink (see netfilter.ts). */
export const NETLINK_NETFILTER = 12;

const NLM_F_REQUEST = 0x1;
const NLM_F_ACK = 0x4;
export const NLM_F_DUMP_INTR = 0x10;
export const NLM_F_DUMP = 0x300;
export const NLM_F_REPLACE = 0x100;
export const NLM_F_EXCL = 0x200;
export const NLM_F_CREATE = 0x400;
const NLMSG_ERROR = 2;
const NLMSG_DONE = 3;
export const NLA_F_NESTED = 0x8000;
/** rtnetlink multicast groups: links, neighbours and fdb entries, addresses, routes. */
export const RTNLGRP_LINK = 1;
export const RTNLGRP_NEIGH = 3;
export const RTNLGRP_IPV4_IFADDR = 5;
export const RTNLGRP_IPV4_ROUTE = 7;
export const RTNLGRP_IPV6_IFADDR = 9;
export const RTNLGRP_IPV6_ROUTE = 11;

export const RTM = {
  NEWLINK: 16,
  DELLINK: 17,
  GETLINK: 18,
  SETLINK: 19,
  NEWADDR: 20,
  DELADDR: 21,
  GETADDR: 22,
  NEWROUTE: 24,
  DELROUTE: 25,
  GETROUTE: 26,
  NEWNEIGH: 28,
  DELNEIGH: 29,
  GETNEIGH: 30,
} as const;

export const AF_UNSPEC = 0;
export const AF_INET = 2;
export const AF_BRIDGE = 7;
export const AF_INET6 = 10;

/** Retries of a dump the kernel marked inconsistent (NLM_F_DUMP_INTR), as pkg/netlinksafe does. */
const DUMP_ATTEMPTS = 5;

// ---------------------------------------------------------------------------------------------
// Attributes

export type Attr = [type: number, value: Buffer];

export function attr(type: number, value: Buffer): Attr {
  return [type, value];
}

export function u8(v: number): Buffer {
  return Buffer.from([v & 0xff]);
}

export function u16(v: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16LE(v);
  return b;
}

export function u32(v: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(v >>> 0);
  return b;
}

export function s32(v: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeInt32LE(v);
  return b;
}

export function cstring(s: string): Buffer {
  return Buffer.concat([Buffer.from(s, "utf8"), Buffer.alloc(1)]);
}

const align4 = (n: number) => (n + 3) & ~3;

export function encodeAttrs(attrs: readonly Attr[]): Buffer {
  const parts: Buffer[] = [];
  for (const [type, value] of attrs) {
    const header = Buffer.alloc(4);
    header.writeUInt16LE(4 + value.length, 0);
    header.writeUInt16LE(type, 2);
    parts.push(header, value, Buffer.alloc(align4(value.length) - value.length));
  }
  return Buffer.concat(parts);
}

export function nested(type: number, attrs: readonly Attr[]): Attr {
  return [type | NLA_F_NESTED, encodeAttrs(attrs)];
}

/** Attributes by type (the last one wins; flags stripped). */
export function decodeAttrs(buf: Buffer): Map<number, Buffer> {
  const out = new Map<number, Buffer>();
  let off = 0;
  while (off + 4 <= buf.length) {
    const len = buf.readUInt16LE(off);
    const type = buf.readUInt16LE(off + 2) & 0x3fff;
    if (len < 4 || off + len > buf.length) break;
    out.set(type, buf.subarray(off + 4, off + len));
    off += align4(len);
  }
  return out;
}

/** All attributes in order, for lists of repeated types. */
export function decodeAttrList(buf: Buffer): Attr[] {
  const out: Attr[] = [];
  let off = 0;
  while (off + 4 <= buf.length) {
    const len = buf.readUInt16LE(off);
    const type = buf.readUInt16LE(off + 2) & 0x3fff;
    if (len < 4 || off + len > buf.length) break;
    out.push([type, buf.subarray(off + 4, off + len)]);
    off += align4(len);
  }
  return out;
}

export function readCString(buf: Buffer | undefined): string | undefined {
  if (!buf) return undefined;
  const nul = buf.indexOf(0);
  return buf.toString("utf8", 0, nul < 0 ? buf.length : nul);
}

// ---------------------------------------------------------------------------------------------
// The socket

/** A message as the kernel sent it: header type, flags and sequence number, and the payload. */
interface ReplyMessage {
  type: number;
  flags: number;
  seq: number;
  data: Buffer;
}

const NLMSG_HDRLEN = 16;

function splitMessages(buf: Buffer): ReplyMessage[] {
  const out: ReplyMessage[] = [];
  for (let off = 0; off + NLMSG_HDRLEN <= buf.length;) {
    const len = buf.readUInt32LE(off);
    if (len < NLMSG_HDRLEN || off + len > buf.length) break;
    out.push({
      type: buf.readUInt16LE(off + 4),
      flags: buf.readUInt16LE(off + 6),
      seq: buf.readUInt32LE(off + 8),
      data: buf.subarray(off + NLMSG_HDRLEN, off + len),
    });
    off += align4(len);
  }
  return out;
}

/**
 * How long one wait for notifications may block its worker thread: Node's exit waits for the worker
 * threads, so a plugin that exits while watching (a timed-out delegate) exits at most this late.
 */
const WATCH_SLICE_MS = 1000;
/** The eventfd increment that wakes a watcher. */
const WAKE = Buffer.from([1, 0, 0, 0, 0, 0, 0, 0]);

export class Rtnl {
  private seq = 0;
  /** Requests on one socket go one at a time: a worker thread reads every reply up to its own. */
  private queue: Promise<unknown> = Promise.resolve();
  private closed = false;

  private constructor(
    private readonly fd: number,
    private readonly netns: Netns | undefined,
    private readonly protocol: number,
  ) {}

  /**
   * Opens a socket in netns (the current namespace when absent). The socket stays bound to the
   * namespace it was created in, so only its creation happens inside.
   */
  static async open(netns?: Netns, protocol = NETLINK_ROUTE): Promise<Rtnl> {
    const { netlinkSocket } = weftSyscalls();
    return new Rtnl(netns ? netns.run(() => netlinkSocket(protocol)) : netlinkSocket(protocol), netns, protocol);
  }

  /**
   * One request: the payloads of its replies (one for a GET, every entry of a dump, none for a
   * change), or the kernel's refusal as a KernelError. The kernel carries out some requests inside
   * the send itself, and slowly (deleting a veth pair waits out RCU grace periods, about 20 ms on
   * these machines): sent from a worker thread, the process does its other work meanwhile. A dump
   * the kernel interrupted because the table changed (NLM_F_DUMP_INTR, common while pods come and
   * go) is asked again, as pkg/netlinksafe does.
   */
  request(type: number, body: Buffer, flags: number, operation: string): Promise<Buffer[]> {
    if (this.closed) return Promise.reject(new Error("rtnetlink socket is closed"));
    const turn = this.queue.then(() => this.exchange(type, body, flags, operation));
    this.queue = turn.catch(() => undefined);
    return turn;
  }

  private async exchange(type: number, body: Buffer, flags: number, operation: string): Promise<Buffer[]> {
    const { netlinkRequest } = weftSyscalls();
    for (let attempt = 1; ; attempt++) {
      const seq = (this.seq = (this.seq % 0xffffffff) + 1);
      const header = Buffer.alloc(NLMSG_HDRLEN);
      header.writeUInt32LE(NLMSG_HDRLEN + body.length, 0);
      header.writeUInt16LE(type, 4);
      header.writeUInt16LE(flags | NLM_F_REQUEST | NLM_F_ACK, 6);
      header.writeUInt32LE(seq, 8);
      let replies: ReplyMessage[];
      try {
        replies = splitMessages(await netlinkRequest(this.fd, Buffer.concat([header, body])));
      } catch (err) {
        const e = err as NodeJS.ErrnoException;
        throw typeof e.errno === "number" ? kernelError(e.errno, operation) : err;
      }
      // Anything else is left over from an earlier request that gave up waiting.
      replies = replies.filter((r) => r.seq === seq);
      for (const reply of replies) {
        if ((reply.type === NLMSG_ERROR || reply.type === NLMSG_DONE) && reply.data.length >= 4 && reply.data.readInt32LE(0) < 0) {
          throw kernelError(-reply.data.readInt32LE(0), operation);
        }
      }
      if (!replies.some((r) => (r.flags & NLM_F_DUMP_INTR) !== 0)) {
        return replies.filter((r) => r.type !== NLMSG_DONE && r.type !== NLMSG_ERROR).map((r) => r.data);
      }
      if (attempt >= DUMP_ATTEMPTS) throw new KernelError("EINTR", 4, `${operation}: dump interrupted ${attempt} times`);
    }
  }

  /** A request that changes something; resolves on the kernel's ACK, throws its refusal. */
  async change(type: number, body: Buffer, flags: number, operation: string): Promise<void> {
    await this.request(type, body, flags, operation);
  }

  /** A single GET: the payload of the reply. */
  async get(type: number, body: Buffer, operation: string): Promise<Buffer> {
    const [reply] = await this.request(type, body, 0, operation);
    if (!reply) throw new KernelError("ENODATA", 61, operation);
    return reply;
  }

  /** A dump: every payload. */
  dump(type: number, body: Buffer, operation: string): Promise<Buffer[]> {
    return this.request(type, body, NLM_F_DUMP, operation);
  }

  /**
   * Joins multicast groups (RTNLGRP_*) on one socket of its own in this socket's namespace, read on a
   * libuv worker thread: onMessage gets the type and payload of every notification until the
   * returned function is called. A flood of notifications (many pods at once) can overflow that
   * socket's buffer: the kernel says so (ENOBUFS) and onLost is called, so that the caller looks
   * again.
   */
  subscribe(groups: number | readonly number[], onMessage: (type: number, data: Buffer) => void, onLost: () => void): () => void {
    if (this.closed) throw new Error("rtnetlink socket is closed");
    const { netlinkSocket, netlinkJoin, wakeFd, netlinkReceive } = weftSyscalls();
    const fd = this.netns ? this.netns.run(() => netlinkSocket(this.protocol)) : netlinkSocket(this.protocol);
    let wake: number;
    try {
      for (const group of typeof groups === "number" ? [groups] : groups) netlinkJoin(fd, group);
      wake = wakeFd();
    } catch (err) {
      closeSync(fd);
      throw err;
    }
    let stopped = false;
    let running = true;
    void (async () => {
      try {
        while (!stopped) {
          let batch: Buffer | null;
          try {
            batch = await netlinkReceive(fd, wake, WATCH_SLICE_MS);
          } catch (err) {
            if (stopped) break;
            onLost();
            if ((err as NodeJS.ErrnoException).code === "ENOBUFS") continue;
            break; // the socket failed: the caller's own bound still applies
          }
          if (batch === null) break;
          for (const m of splitMessages(batch)) if (!stopped) onMessage(m.type, m.data);
        }
      } finally {
        running = false;
        closeSync(fd);
        closeSync(wake);
      }
    })();
    return () => {
      if (stopped) return;
      stopped = true;
      if (running) writeSync(wake, WAKE);
    };
  }

  /** Refuses further requests; the socket is closed once those under way are answered. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    void this.queue.then(() => closeSync(this.fd));
  }
}

/**
 * One request on a socket of its own in netns (this namespace when absent), for callers that ask
 * nothing else there: the payloads of the replies, as Rtnl.request gives them.
 */
export function requestOnce(
  netns: Netns | undefined,
  protocol: number,
  type: number,
  body: Buffer,
  flags: number,
  operation: string,
): Promise<Buffer[]> {
  return withRtnl(netns, (nl) => nl.request(type, body, flags, operation), protocol);
}

/** Runs fn with a socket in netns and closes it afterwards. */
export async function withRtnl<T>(netns: Netns | undefined, fn: (nl: Rtnl) => Promise<T>, protocol = NETLINK_ROUTE): Promise<T> {
  const nl = await Rtnl.open(netns, protocol);
  try {
    return await fn(nl);
  } finally {
    nl.close();
  }
}
