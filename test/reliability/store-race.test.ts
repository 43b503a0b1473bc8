import { mkdtempSync, readdirSync, readFileSync, rmSync, unlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, expect, it } from "vitest";
import { DiskStore } from "../../ipam/host-local/store.js";

/**
 * Found by races.test.ts: weft prepares a reservation file before it takes the lock, and the
 * reference's DEL of the same attachment, which removes every file holding the attachment's key,
 * removed it meanwhile; the link then failed with ENOENT (code 5).
 */

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "weft-store-race-"));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

it("a prepared reservation removed before it is linked is written again under the lock", () => {
  const store = DiskStore.open(dir, "net", true)!;
  const prepared = store.prepare({ containerId: "c1", ifName: "eth0" });
  unlinkSync(prepared.path);
  expect(store.reserve({ family: 4, value: 0x0a000002n }, prepared)).toBe(true);
  expect(readFileSync(join(dir, "net", "10.0.0.2"), "utf8")).toBe("c1\r\neth0");
  expect(readdirSync(join(dir, "net"))).toEqual(["10.0.0.2"]);
});

it("a reservation whose directory is gone still fails with code 5", () => {
  const store = DiskStore.open(dir, "net", true)!;
  const prepared = store.prepare({ containerId: "c1", ifName: "eth0" });
  rmSync(join(dir, "net"), { recursive: true });
  expect(() => store.reserve({ family: 4, value: 0x0a000002n }, prepared)).toThrow(expect.objectContaining({ code: 5 }));
});
