import { closeSync, fstatSync, openSync, statfsSync, statSync } from "node:fs";
import { CniError, ErrorCode } from "../errors/cni.js";
import { CLONE_NEWNET, weftSyscalls } from "../native/syscalls.js";

/** statfs magic of nsfs: a namespace file (/proc/<pid>/ns/net or a bind mount of one). */
export const NSFS_MAGIC = 0x6e736673;

/** Why a CNI_NETNS path cannot be used: it does not exist, or it is not a namespace (a stale bind mount). */
export class NetnsPathError extends Error {
  constructor(
    readonly path: string,
    readonly reason: "missing" | "not-nsfs" | "not-netns",
    detail: string,
  ) {
    super(detail);
    this.name = "NetnsPathError";
  }
}

/** The namespace the calling thread is in now, as the file the kernel keeps for it. */
const OWN_NETNS = "/proc/thread-self/ns/net";

let hostFd: number | undefined;

/**
 * The fd of the namespace the process started in, opened once. Every return from a pod namespace
 * goes back to it, so a return never depends on opening a file while inside another namespace.
 */
function hostNetnsFd(): number {
  hostFd ??= openSync(OWN_NETNS, "r");
  return hostFd;
}

/** An open network namespace: the handle stays valid even if the path is unmounted meanwhile. */
export class Netns {
  private constructor(
    readonly path: string,
    private fd: number,
    /** Device and inode: the namespace's identity. */
    readonly id: string,
  ) {}

  /**
   * Opens CNI_NETNS. Only a real network namespace is accepted: statfs must say nsfs (anything else,
   * such as a tmpfs file left where a bind mount was, is refused) and setns must accept it as a
   * network namespace when it is entered.
   */
  static open(path: string): Netns {
    let magic: number;
    try {
      magic = Number(statfsSync(path).type);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === "ENOENT" || code === "ENOTDIR") {
        throw new NetnsPathError(path, "missing", `network namespace ${path} does not exist`);
      }
      throw err;
    }
    if (magic !== NSFS_MAGIC) {
      throw new NetnsPathError(
        path,
        "not-nsfs",
        `${path} is not a network namespace (file system magic 0x${magic.toString(16)}, expected nsfs 0x${NSFS_MAGIC.toString(16)}): a stale or unmounted netns path?`,
      );
    }
    const fd = openSync(path, "r");
    const st = fstatSync(fd);
    return new Netns(path, fd, `${st.dev}:${st.ino}`);
  }

  /**
   * Runs fn with the calling thread inside this namespace and returns to the host namespace before
   * returning or throwing. fn must be synchronous: an await would let other code run in here.
   * Sockets and /proc/sys files opened inside stay bound to this namespace after the return.
   */
  run<T>(fn: () => T): T {
    const host = hostNetnsFd();
    const { setns } = weftSyscalls();
    try {
      setns(this.fd, CLONE_NEWNET);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "EINVAL") {
        throw new NetnsPathError(this.path, "not-netns", `${this.path} is a namespace, but not a network namespace`);
      }
      throw err;
    }
    try {
      const result = fn();
      if (result instanceof Promise) throw new Error("Netns.run: fn must be synchronous");
      return result;
    } finally {
      try {
        setns(host, CLONE_NEWNET);
      } catch (err) {
        // The thread would stay in the pod's namespace: nothing after this could be trusted.
        process.stderr.write(`weft: fatal: cannot return to the host network namespace: ${(err as Error).message}\n`);
        process.exit(70);
      }
    }
  }

  /** For IFLA_NET_NS_FD: moving a link here needs no namespace switch. */
  fileDescriptor(): number {
    if (this.fd < 0) throw new Error(`network namespace ${this.path} is closed`);
    return this.fd;
  }

  close(): void {
    if (this.fd >= 0) closeSync(this.fd);
    this.fd = -1;
  }
}

/** The identity (device:inode) of the namespace this thread is in. */
export function currentNetnsId(): string {
  const st = statSync(OWN_NETNS);
  return `${st.dev}:${st.ino}`;
}

/** True when path names the namespace the plugin itself runs in (the skel's code 8 guard, plugins#714). */
export function isOwnNetns(netns: Netns): boolean {
  return netns.id === currentNetnsId();
}

/**
 * Opens the pod's namespace (CNI_NETNS). It must not be the plugin's own unless the runtime says so
 * with CNI_NETNS_OVERRIDE (code 8): a recycled /proc/<pid>/ns/net once made loopback DEL take down
 * the host's lo (plugins#714).
 */
export function openPodNetns(path: string, netnsOverride: boolean): Netns {
  const netns = Netns.open(path);
  if (!netnsOverride && isOwnNetns(netns)) {
    netns.close();
    throw new CniError(
      ErrorCode.InvalidNetns,
      "netns must not be the plugin's own network namespace",
      `CNI_NETNS ${path}; set CNI_NETNS_OVERRIDE=1 if this is intended`,
    );
  }
  return netns;
}
