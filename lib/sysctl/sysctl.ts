import { readFileSync, writeFileSync } from "node:fs";
import type { Netns } from "../netns/netns.js";

/**
 * sysctls through /proc/sys. The net.* ones belong to the network namespace of the thread that
 * opens the file, so for a pod's namespace the file is opened (and written) synchronously while
 * the main thread is inside it; an asynchronous fs call would run on a libuv worker thread, which
 * is still in the host namespace.
 *
 * Names use "/" (net/ipv6/conf/eth0/accept_dad): interface names may contain dots.
 */
function path(name: string): string {
  if (name.includes("..") || name.startsWith("/")) throw new Error(`invalid sysctl name ${JSON.stringify(name)}`);
  return `/proc/sys/${name}`;
}

export function readSysctl(name: string, netns?: Netns): string {
  const read = () => readFileSync(path(name), "utf8").trim();
  return netns ? netns.run(read) : read();
}

export function writeSysctl(name: string, value: string, netns?: Netns): void {
  const write = () => writeFileSync(path(name), value);
  if (netns) netns.run(write);
  else write();
}

/** Writes only when the value differs (ip_forward: a write is not free on a busy node). */
export function ensureSysctl(name: string, value: string, netns?: Netns): void {
  const apply = () => {
    if (readFileSync(path(name), "utf8").trim() !== value) writeFileSync(path(name), value);
  };
  if (netns) netns.run(apply);
  else apply();
}

/** Like writeSysctl, but a missing knob (IPv6 disabled, an old kernel) is not an error. */
export function trySysctl(name: string, value: string, netns?: Netns): boolean {
  try {
    writeSysctl(name, value, netns);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return false;
    throw err;
  }
}
