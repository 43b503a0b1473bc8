import { lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { writeFileAtomically, writeNewFile } from "./atomic-write.js";

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "weft-atomic-"));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

describe("writeNewFile", () => {
  it("creates the file with the mode and the whole content", () => {
    const path = join(dir, "f");
    writeNewFile(path, "x".repeat(100_000), { mode: 0o600, fsync: true });
    expect(readFileSync(path, "utf8")).toBe("x".repeat(100_000));
    expect(lstatSync(path).mode & 0o777).toBe(0o600);
  });

  it("replaces a file a crashed writer left at the name", () => {
    const path = join(dir, "f");
    writeFileSync(path, "half");
    writeNewFile(path, "whole", { mode: 0o644, fsync: false });
    expect(readFileSync(path, "utf8")).toBe("whole");
  });

  it("never writes through a symlink planted at the name", () => {
    const victim = join(dir, "victim");
    writeFileSync(victim, "untouched");
    const path = join(dir, "f");
    symlinkSync(victim, path);
    writeNewFile(path, "data", { mode: 0o644, fsync: false });
    expect(readFileSync(victim, "utf8")).toBe("untouched");
    expect(lstatSync(path).isFile()).toBe(true);
  });
});

describe("writeFileAtomically", () => {
  it("replaces the file and leaves no temporary", () => {
    const path = join(dir, "f");
    writeFileSync(path, "old");
    writeFileAtomically(path, Buffer.from("new"), { mode: 0o644, temporary: join(dir, ".f.tmp"), durable: true });
    expect(readFileSync(path, "utf8")).toBe("new");
    expect(readdirSync(dir)).toEqual(["f"]);
  });

  it("leaves no temporary when the rename fails, and throws", () => {
    const path = join(dir, "taken");
    mkdirSync(join(path, "busy"), { recursive: true });
    expect(() => writeFileAtomically(path, "data", { mode: 0o644, temporary: join(dir, ".taken.tmp"), durable: false })).toThrow();
    expect(readdirSync(dir)).toEqual(["taken"]);
  });
});
