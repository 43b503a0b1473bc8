import { execFileSync, type ExecFileSyncOptions } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, statSync } from "node:fs";

/**
 * Named network namespaces for tests (ip netns add), so every case has its own kernel state and
 * links, addresses, bridges and firewall rules made in it die with it. Names are random, so test
 * files can run in parallel. Tests shell out to ip(8) freely; only plugin code paths must not.
 */

export function uniqueName(prefix: string, length = 15): string {
  const suffix = randomBytes(8).toString("hex");
  return `${prefix}${suffix}`.slice(0, length);
}

export interface TestNetns {
  name: string;
  /** /run/netns/<name>: what a runtime passes as CNI_NETNS. */
  path: string;
  /** Runs a command inside the namespace (ip netns exec) and returns its stdout. */
  exec(command: string, args?: string[], options?: ExecFileSyncOptions): string;
  /** `ip -j <args>` inside the namespace, parsed. */
  ipJson<T = unknown>(...args: string[]): T;
}

export function createNetns(prefix = "weft-t-"): TestNetns {
  const name = uniqueName(prefix, 40);
  execFileSync("ip", ["netns", "add", name]);
  const ns: TestNetns = {
    name,
    path: `/run/netns/${name}`,
    exec(command, args = [], options = {}) {
      // stderr is kept (a failure's error carries it), not printed: nft's warnings about iptables-nft
      // tables and a refusal a test expects are not news.
      return execFileSync("ip", ["netns", "exec", name, command, ...args], { encoding: "utf8", stdio: "pipe", ...options }).toString();
    },
    ipJson<T>(...args: string[]) {
      return JSON.parse(ns.exec("ip", ["-j", ...args]) || "[]") as T;
    },
  };
  // Loopback up, as a runtime leaves it.
  ns.exec("ip", ["link", "set", "lo", "up"]);
  return ns;
}

export function removeNetns(ns: TestNetns | string): void {
  const name = typeof ns === "string" ? ns : ns.name;
  if (existsSync(`/run/netns/${name}`)) execFileSync("ip", ["netns", "delete", name]);
}

/** Namespaces made by a test file, removed in afterEach even when the test failed. */
export function netnsPool() {
  const made: TestNetns[] = [];
  return {
    create(prefix?: string): TestNetns {
      const ns = createNetns(prefix);
      made.push(ns);
      return ns;
    },
    cleanup(): void {
      const errors: unknown[] = [];
      for (const ns of made.splice(0)) {
        try {
          removeNetns(ns);
        } catch (err) {
          errors.push(err);
        }
      }
      if (errors.length) throw errors[0];
    },
  };
}

/** The inode of the calling thread's network namespace: equal before and after means "not left changed". */
export function ownNetnsInode(): number {
  return statSync("/proc/thread-self/ns/net").ino;
}
