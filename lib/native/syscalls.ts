import * as weftAddon from "weft-native:weft";
import { loadEmbeddedAddon } from "./native.js";

/** weft's own native addon (lib/native/weft.c): the system calls Node.js lacks. */
export interface WeftSyscalls {
  setns: (fd: number, nstype: number) => void;
  flock: (fd: number, operation: number) => void;
  flockAsync: (fd: number, operation: number) => Promise<void>;
  /** Blocks until fd is ready for events (POLLIN, POLLOUT) or hung up; the events that happened. */
  pollFd: (fd: number, events: number) => number;
  /** A netlink socket of the protocol, in the calling thread's network namespace. */
  netlinkSocket: (protocol: number) => number;
  /** Sends one message on a libuv worker thread; resolves with every reply up to the one that ends it. */
  netlinkRequest: (fd: number, message: Buffer) => Promise<Buffer>;
  /** Joins a netlink multicast group on the socket. */
  netlinkJoin: (fd: number, group: number) => void;
  /** An eventfd: writing to it ends a netlinkReceive that waits on it. */
  wakeFd: () => number;
  /**
   * Waits on a libuv worker thread, at most timeoutMs, for notifications on the socket: all that are
   * queued (empty when the time ran out), null when woken; rejects ENOBUFS when the kernel dropped some.
   */
  netlinkReceive: (fd: number, wake: number, timeoutMs: number) => Promise<Buffer | null>;
  /**
   * A TUN device (bare IP packets, no packet information) attached to a new non-blocking fd, made
   * in the calling thread's network namespace; `name` may hold "%d" for the kernel to number it.
   */
  tunOpen: (name: string) => { fd: number; name: string };
  /** A non-blocking IPv4 UDP socket bound to address:port in the calling thread's namespace, 4 MiB buffers. */
  udpOpen: (address: string, port: number) => number;
  /**
   * Waits on a libuv worker thread, at most timeoutMs, for packets on the TUN fd or datagrams on the
   * UDP socket, then reads both in turn, about maxBytes: each behind CARRIER_HEADER bytes (u16 length
   * little endian, u8 kind: CARRIER_FROM_TUN or CARRIER_FROM_SOCKET, u8 0, the datagram's source
   * address in network order). Empty when the time ran out, null when woken; rejects when the TUN
   * cannot be read (EBADFD: the device was deleted).
   */
  carrierReceive: (tunFd: number, udpFd: number, wake: number, timeoutMs: number, maxBytes: number) => Promise<Buffer | null>;
  /** Sends records (u16 length little endian, u16 port and u32 address in network order, the bytes) without blocking: how many went. */
  udpSendBatch: (fd: number, records: Buffer) => number;
  /** Writes records (the same header) to a TUN fd without blocking, a packet each: how many it took. */
  tunWriteBatch: (fd: number, records: Buffer) => number;
}

export const CARRIER_HEADER = 8;
export const CARRIER_FROM_TUN = 0;
export const CARRIER_FROM_SOCKET = 1;

export const LOCK_SH = 1;
export const LOCK_EX = 2;
export const LOCK_NB = 4;
export const LOCK_UN = 8;
export const CLONE_NEWNET = 0x40000000;
export const POLLIN = 0x1;
export const POLLOUT = 0x4;

let syscalls: WeftSyscalls | undefined;

export function weftSyscalls(): WeftSyscalls {
  syscalls ??= loadEmbeddedAddon<WeftSyscalls>(weftAddon);
  return syscalls;
}
