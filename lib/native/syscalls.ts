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
  /**
   * Waits on a libuv worker thread, at most timeoutMs, for packets on a TUN fd: those queued, about
   * maxBytes, each behind its length (2 bytes, little endian); empty when the time ran out, null when
   * woken (wakeFd). Rejects when the fd cannot be read (EBADFD: the device was deleted).
   */
  tunReceive: (fd: number, wake: number, timeoutMs: number, maxBytes: number) => Promise<Buffer | null>;
}

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
