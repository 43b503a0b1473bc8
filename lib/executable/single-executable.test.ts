import { afterEach, describe, expect, it } from "vitest";
import { isSingleExecutable } from "./single-executable.js";

describe("isSingleExecutable", () => {
  const argv = [...process.argv];
  const hadBun = Object.prototype.hasOwnProperty.call(process.versions, "bun");
  afterEach(() => {
    process.argv.splice(0, process.argv.length, ...argv);
    if (!hadBun) delete (process.versions as Record<string, string>).bun;
  });

  it("is false for a script run by Node.js (vitest's own process)", () => {
    expect(isSingleExecutable()).toBe(false);
  });

  it("is true under Bun when the main script is in Bun's embedded file system, and only then", () => {
    (process.versions as Record<string, string>).bun = "1.4.5";
    process.argv.splice(0, process.argv.length, "bun", "/$bunfs/root/weft", "ADD");
    expect(isSingleExecutable()).toBe(true);
    process.argv.splice(0, process.argv.length, "bun", "/opt/cni/bin/weft.cjs");
    expect(isSingleExecutable()).toBe(false);
  });
});
