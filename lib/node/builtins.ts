import { closeSync, openSync, readSync } from "node:fs";

/**
 * Node builtins that cost start-up time, loaded on first use: node:child_process (with net and
 * streams) costs about 1.5 ms, which every pod would pay even when the verb never forks. node:crypto
 * (about 5 ms) is not used at all.
 */
// In the CommonJS bundle `require` is the runtime's own; under vitest (ESM) the builtins come from
// process.getBuiltinModule (not node:module's createRequire, whose load costs Bun milliseconds).
// eslint-disable-next-line @typescript-eslint/no-require-imports -- the bundle's own require, by design
const load = (name: string): unknown => (typeof require === "function" ? require(name) : process.getBuiltinModule(name));

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
