import { closeSync, openSync, readSync } from "node:fs";
import { createRequire } from "node:module";

/**
 * Node builtins that cost start-up time, loaded on first use: requiring node:crypto at start costs
 * about 5 ms and node:child_process (with net and streams) about 1.5 ms, which every pod would pay
 * even when the verb never hashes or forks.
 */
// In the CommonJS bundle `require` is Node's own; under vitest (ESM) one is made for this module.
const load: NodeJS.Require = typeof require === "function" ? require : createRequire(import.meta.url);

export function nodeCrypto(): typeof import("node:crypto") {
  return load("node:crypto") as typeof import("node:crypto");
}

export function nodeChildProcess(): typeof import("node:child_process") {
  return load("node:child_process") as typeof import("node:child_process");
}

/** Random bytes from the kernel without loading node:crypto. */
export function randomBytes(count: number): Buffer {
  const bytes = Buffer.alloc(count);
  const fd = openSync("/dev/urandom", "r");
  try {
    let read = 0;
    while (read < count) read += readSync(fd, bytes, read, count - read, null);
  } finally {
    closeSync(fd);
  }
  return bytes;
}

export function sha256Hex(text: string): string {
  return nodeCrypto().createHash("sha256").update(text).digest("hex");
}

export function sha512Hex(text: string): string {
  return nodeCrypto().createHash("sha512").update(text).digest("hex");
}
