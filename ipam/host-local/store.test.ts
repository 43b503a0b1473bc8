import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { ipToBigInt, parseIp } from "../../lib/ip/ip.js";
import type { Address } from "./allocator.js";
import { DiskStore, ownerKey, parseOwner } from "./store.js";

let root: string;

beforeEach(() => {
  root = mkdtempSync(join(tmpdir(), "weft-store-"));
});

afterEach(() => {
  rmSync(root, { recursive: true, force: true });
});

function addr(text: string): Address {
  const ip = parseIp(text)!;
  return { family: ip.family, value: ipToBigInt(ip) };
}

function open(): DiskStore {
  return DiskStore.open(root, "net", true)!;
}

describe("DiskStore", () => {
  it("is not created by a lookup, and is created 0755 when asked", () => {
    expect(DiskStore.open(root, "net", false)).toBeUndefined();
    expect(existsSync(join(root, "net"))).toBe(false);
    const store = open();
    expect(statSync(store.dir).mode & 0o777).toBe(0o755);
    expect(DiskStore.open(root, "net", false)?.dir).toBe(store.dir);
  });

  it("reserves with a prepared file, exactly once per address, and reuses the file after a refusal", () => {
    const store = open();
    const mine = store.prepare({ containerId: "c1", ifName: "eth0" });
    const theirs = store.prepare({ containerId: "c2", ifName: "eth0" });
    expect(store.reserve(addr("10.0.0.2"), theirs)).toBe(true);
    expect(store.reserve(addr("10.0.0.2"), mine)).toBe(false);
    expect(store.reserve(addr("10.0.0.3"), mine)).toBe(true);
    expect(readFileSync(join(store.dir, "10.0.0.3"), "latin1")).toBe("c1\r\neth0");
    expect(statSync(join(store.dir, "10.0.0.3")).mode & 0o777).toBe(0o644);
    expect(statSync(join(store.dir, "10.0.0.3")).nlink).toBe(1);
    expect(readdirSync(store.dir).sort()).toEqual(["10.0.0.2", "10.0.0.3"]);
    store.discard(mine);
  });

  it("names IPv6 reservations as Go prints the address", () => {
    const store = open();
    expect(store.reserve(addr("fd00:0:0::0:a"), store.prepare({ containerId: "c", ifName: "eth0" }))).toBe(true);
    expect(readdirSync(store.dir)).toEqual(["fd00::a"]);
  });

  it("lists reservations with their trimmed holders, ignoring other files", () => {
    const store = open();
    writeFileSync(join(store.dir, "10.0.0.2"), "c1\r\neth0");
    writeFileSync(join(store.dir, "10.0.0.3"), "  legacy\n");
    writeFileSync(join(store.dir, "last_reserved_ip.0"), "10.0.0.3");
    writeFileSync(join(store.dir, "lock"), "");
    writeFileSync(join(store.dir, ".weft-1-0.tmp"), "c9\r\neth0");
    expect(store.reservations().sort((a, b) => a.name.localeCompare(b.name))).toEqual([
      { name: "10.0.0.2", address: addr("10.0.0.2"), owner: "c1\r\neth0" },
      { name: "10.0.0.3", address: addr("10.0.0.3"), owner: "legacy" },
    ]);
    expect(store.addresses()).toHaveLength(2);
  });

  it("releases only while the holder still matches", () => {
    const store = open();
    writeFileSync(join(store.dir, "10.0.0.2"), "c1\r\neth0");
    expect(store.release("10.0.0.2", (o) => o === "c2\r\neth0")).toBe(false);
    expect(store.release("10.0.0.9", () => true)).toBe(false);
    expect(store.release("10.0.0.2", (o) => o === "c1\r\neth0")).toBe(true);
    expect(readdirSync(store.dir)).toEqual([]);
  });

  it("reads the round-robin cursor as Go's net.ParseIP does, and replaces it whole", () => {
    const store = open();
    expect(store.lastReserved(0)).toBeUndefined();
    store.setLastReserved(0, addr("10.0.0.7"));
    expect(readFileSync(join(store.dir, "last_reserved_ip.0"), "latin1")).toBe("10.0.0.7");
    expect(store.lastReserved(0)).toEqual(addr("10.0.0.7"));
    writeFileSync(join(store.dir, "last_reserved_ip.1"), "10.0.0.7\n");
    expect(store.lastReserved(1)).toBeUndefined();
    expect(readdirSync(store.dir)).toEqual(["last_reserved_ip.0", "last_reserved_ip.1"]);
  });

  it("removes the temporaries of dead processes only", () => {
    const store = open();
    const dead = spawnSync("true").pid;
    writeFileSync(join(store.dir, `.weft-${dead}-0.tmp`), "x\r\neth0");
    const live = store.prepare({ containerId: "c", ifName: "eth0" });
    expect(store.removeLeftovers()).toEqual([`.weft-${dead}-0.tmp`]);
    expect(existsSync(live.path)).toBe(true);
  });
});

describe("owners", () => {
  it("are the container id and interface, or the id alone in files older than plugins v0.8.0", () => {
    expect(ownerKey("c1", "eth0")).toBe("c1\r\neth0");
    expect(parseOwner("c1\r\neth0")).toEqual({ containerId: "c1", ifName: "eth0" });
    expect(parseOwner("c1")).toEqual({ containerId: "c1" });
    expect(parseOwner("")).toBeUndefined();
    expect(parseOwner("a\r\nb\r\nc")).toBeUndefined();
  });
});
