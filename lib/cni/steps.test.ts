import { describe, expect, it } from "vitest";
import { CniError, ErrorCode } from "../errors/cni.js";
import { Rollback, step } from "./steps.js";

describe("step", () => {
  it("returns what the step returns", async () => {
    expect(await step("count", () => 3)).toBe(3);
    expect(await step("count", async () => 4)).toBe(4);
  });

  it("names the failed step in front of the cause and keeps its code", async () => {
    const failed = step("set bridge addr", () => {
      throw new CniError(ErrorCode.NodeConflict, "cni0 already has an address", "details");
    });
    await expect(failed).rejects.toMatchObject({
      code: ErrorCode.NodeConflict,
      message: "failed to set bridge addr: cni0 already has an address",
      details: "details",
    });
  });

  it("makes a busy xtables lock code 11, so that the runtime retries", async () => {
    const busy = Object.assign(new Error("Another app is currently holding the xtables lock"), { name: "NetfilterBusyError" });
    await expect(step("set up IP masquerade", () => Promise.reject(busy))).rejects.toMatchObject({
      code: ErrorCode.TryAgainLater,
      message: "failed to set up IP masquerade: Another app is currently holding the xtables lock",
    });
  });

  it("makes an unexpected exception code 999", async () => {
    await expect(step("look", () => Promise.reject(new TypeError("x is undefined")))).rejects.toMatchObject({
      code: ErrorCode.Internal,
      message: "failed to look: x is undefined",
    });
  });
});

describe("Rollback", () => {
  it("runs the undos newest first, once", async () => {
    const done: string[] = [];
    const rollback = new Rollback();
    rollback.push("a", () => done.push("a"));
    rollback.push("b", async () => done.push("b"));
    await rollback.run(() => undefined);
    await rollback.run(() => undefined);
    expect(done).toEqual(["b", "a"]);
  });

  it("reports an undo that fails and runs the rest", async () => {
    const done: string[] = [];
    const log: string[] = [];
    const rollback = new Rollback();
    rollback.push("delete veth", () => done.push("veth"));
    rollback.push("release IPAM", () => Promise.reject(new Error("host-local is gone")));
    await rollback.run((message) => log.push(message));
    expect(done).toEqual(["veth"]);
    expect(log).toEqual(["rollback: failed to release IPAM: host-local is gone"]);
  });
});
