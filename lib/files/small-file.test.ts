import { execFileSync } from "node:child_process";
import { closeSync, constants, mkdirSync, mkdtempSync, openSync, rmSync, symlinkSync, writeFileSync, writeSync } from "node:fs";
import { createServer, type Server } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { readSmallFile } from "./small-file.js";

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "weft-small-file-"));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

describe("readSmallFile", () => {
  it("reads a regular file up to the bound, and refuses one byte more", () => {
    writeFileSync(join(dir, "f"), "0123456789");
    expect(readSmallFile(join(dir, "f"), 10)).toEqual({ state: "read", bytes: Buffer.from("0123456789") });
    expect(readSmallFile(join(dir, "f"), 9)).toEqual({ state: "refused", reason: "is larger than 9 bytes" });
    writeFileSync(join(dir, "empty"), "");
    expect(readSmallFile(join(dir, "empty"), 9)).toEqual({ state: "read", bytes: Buffer.alloc(0) });
  });

  it("a missing file is missing", () => {
    expect(readSmallFile(join(dir, "none"), 9)).toEqual({ state: "missing" });
  });

  it("refuses a symlink, even to a regular file, without following it", () => {
    writeFileSync(join(dir, "target"), "x");
    symlinkSync(join(dir, "target"), join(dir, "link"));
    expect(readSmallFile(join(dir, "link"), 9)).toEqual({ state: "refused", reason: "is a symlink, not a regular file" });
  });

  it("refuses a FIFO, a directory and a socket", async () => {
    execFileSync("mkfifo", [join(dir, "fifo")]);
    // Held open (O_RDWR does not wait on Linux) so that an open that waits for a writer cannot hang
    // this process: that a lone FIFO does not block is test/reliability/hostile-files.test.ts's, under a timeout.
    const held = openSync(join(dir, "fifo"), constants.O_RDWR);
    try {
      writeSync(held, "data");
      expect(readSmallFile(join(dir, "fifo"), 9)).toEqual({ state: "refused", reason: "is a FIFO, not a regular file" });
    } finally {
      closeSync(held);
    }
    mkdirSync(join(dir, "d"));
    expect(readSmallFile(join(dir, "d"), 9)).toEqual({ state: "refused", reason: "is a directory, not a regular file" });
    const server: Server = createServer();
    await new Promise<void>((listening) => server.listen(join(dir, "sock"), listening));
    try {
      expect(readSmallFile(join(dir, "sock"), 9)).toEqual({ state: "refused", reason: "is a socket, not a regular file" });
    } finally {
      server.close();
    }
  });

  it("refuses a character device before reading it (/dev/zero never ends)", () => {
    expect(readSmallFile("/dev/zero", 9)).toEqual({ state: "refused", reason: "is a character device, not a regular file" });
  });

  it("bounds the read when the size says 0 (a procfs file)", () => {
    expect(readSmallFile("/proc/self/maps", 16)).toEqual({ state: "refused", reason: "is larger than 16 bytes" });
  });
});
