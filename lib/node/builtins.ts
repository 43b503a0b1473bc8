import { closeSync, openSync, readSync } from "node:fs";
import { createRequire } from "node:module";
import { sha256, sha512 } from "@noble/hashes/sha2";
import { bytesToHex, utf8ToBytes } from "@noble/hashes/utils";

/**
 * Node builtins that cost start-up time, loaded on first use: node:child_process (with net and
 * streams) costs about 1.5 ms, which every pod would pay even when the verb never forks. node:crypto
 * (about 5 ms) is not used at all.
 */
// In the CommonJS bundle `require` is Node's own; under vitest (ESM) one is made for this module.
const load: NodeJS.Require = typeof require === "function" ? require : createRequire(import.meta.url);

export function nodeChildProcess(): typeof import("node:child_process") {
  return load("node:child_process") as typeof import("node:child_process");
}

/** node:sea, where this Node.js has it (20.12 and later); asked only when a delegate has no weft banner. */
export function nodeSea(): typeof import("node:sea") | undefined {
  try {
    return load("node:sea") as typeof import("node:sea");
  } catch {
    return undefined;
  }
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

// Hashes name tables, rules and chains on every portmap DEL: @noble/hashes loads in about 2.5 ms
// less than node:crypto.
export function sha256Hex(text: string): string {
  return bytesToHex(sha256(utf8ToBytes(text)));
}

export function sha512Hex(text: string): string {
  return bytesToHex(sha512(utf8ToBytes(text)));
}
