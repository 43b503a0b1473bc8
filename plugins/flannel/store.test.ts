import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { SavedConfigStore } from "./store.js";

const SAVED = '{"cniVersion":"1.0.0","ipMasq":false,"name":"cbr0","type":"bridge"}';

let dir: string;
let store: SavedConfigStore;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "weft-flannel-store-"));
  store = new SavedConfigStore(join(dir, "flannel"));
});

afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

describe("SavedConfigStore", () => {
  it("saves the exact bytes under the container id, file 0600 in a 0700 directory, nothing else left", () => {
    store.save("ctr1", SAVED);
    expect(readFileSync(join(dir, "flannel", "ctr1"), "utf8")).toBe(SAVED);
    expect(statSync(join(dir, "flannel", "ctr1")).mode & 0o777).toBe(0o600);
    expect(statSync(join(dir, "flannel")).mode & 0o777).toBe(0o700);
    expect(readdirSync(join(dir, "flannel"))).toEqual(["ctr1"]);
  });

  it("replaces a file saved before (an ADD retried)", () => {
    store.save("ctr1", '{"type":"old"}');
    store.save("ctr1", SAVED);
    expect(readFileSync(join(dir, "flannel", "ctr1"), "utf8")).toBe(SAVED);
  });

  it("loads a saved config, with its bytes unchanged", () => {
    store.save("ctr1", SAVED);
    const saved = store.load("ctr1");
    expect(saved.state).toBe("saved");
    if (saved.state !== "saved") return;
    expect(saved.bytes.toString("utf8")).toBe(SAVED);
    expect(saved.config).toMatchObject({ type: "bridge", name: "cbr0" });
  });

  it("loads a file the Go plugin wrote (no trailing newline, any key order)", () => {
    mkdirSync(join(dir, "flannel"));
    writeFileSync(join(dir, "flannel", "go1"), '{"type":"bridge","name":"cbr0","ipam":{"type":"host-local"}}');
    expect(store.load("go1")).toMatchObject({ state: "saved", config: { type: "bridge" } });
  });

  it("tells a missing file from a corrupt one", () => {
    expect(store.load("none")).toEqual({ state: "missing" });
    mkdirSync(join(dir, "flannel"));
    const path = join(dir, "flannel");
    writeFileSync(join(path, "truncated"), '{"cniVersion":"1.0.0","ipMa');
    writeFileSync(join(path, "empty"), "");
    writeFileSync(join(path, "array"), "[]");
    writeFileSync(join(path, "typeless"), '{"name":"cbr0"}');
    expect(store.load("truncated")).toEqual({ state: "corrupt", problem: expect.stringMatching(`^${path}/truncated is not JSON: `) });
    expect(store.load("empty")).toEqual({ state: "corrupt", problem: expect.stringMatching(`^${path}/empty is not JSON: `) });
    expect(store.load("array")).toEqual({ state: "corrupt", problem: `${path}/array does not hold a JSON object` });
    expect(store.load("typeless")).toEqual({ state: "corrupt", problem: `${path}/typeless has no delegate type` });
  });

  it("removes a file, and a file already gone is fine", () => {
    store.save("ctr1", SAVED);
    store.remove("ctr1");
    expect(store.load("ctr1")).toEqual({ state: "missing" });
    expect(() => store.remove("ctr1")).not.toThrow();
  });

  it("lists container ids, not temporary files", () => {
    expect(store.containerIds()).toEqual([]);
    store.save("a", SAVED);
    store.save("b", SAVED);
    writeFileSync(join(dir, "flannel", ".c.123.tmp"), "");
    expect(store.containerIds().sort()).toEqual(["a", "b"]);
  });

  it("fails to save with code 5 naming the file, leaving nothing behind", () => {
    writeFileSync(join(dir, "flannel"), "a file where the directory should be");
    expect(() => store.save("ctr1", SAVED)).toThrow(
      expect.objectContaining({ code: 5, message: expect.stringContaining(`failed to save the delegate config to ${join(dir, "flannel", "ctr1")}`) }),
    );
    expect(readdirSync(dir)).toEqual(["flannel"]);
  });
});
