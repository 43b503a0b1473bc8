import { describe, expect, it } from "vitest";
import { hostLocal } from "../../gen/validators.js";
import { validateWith } from "../../lib/cni/config.js";
import { CniError, ErrorCode } from "../../lib/errors/cni.js";
import { MemoryStore } from "../../test/helpers/memory-store.js";
import { formatAddress } from "./allocator.js";
import { loadIpamConfig, type HostLocalConf, type IpamConfig } from "./config.js";
import { allocate, checkAllocation, collectGarbage, exhaustedRangeSets, release } from "./reservations.js";

// What the verbs decide, on a store in memory: which address, who holds it, what DEL, CHECK and GC
// take. The disk store's own behaviour (files, links, modes, races) is store.test.ts's.

function ipam(ranges: Record<string, unknown>[][], args = new Map<string, string>()): IpamConfig {
  const conf = validateWith<HostLocalConf>(hostLocal, { cniVersion: "1.0.0", name: "net", type: "bridge", ipam: { type: "host-local", ranges } });
  return loadIpamConfig(conf, "1.0.0", args);
}

const SMALL = [[{ subnet: "10.0.0.0/29" }]];
const pod = (containerId: string, ifName = "eth0") => ({ containerId, ifName });

async function failure(promise: Promise<unknown>): Promise<CniError> {
  try {
    await promise;
  } catch (err) {
    if (err instanceof CniError) return err;
    throw err;
  }
  throw new Error("expected a CniError");
}

describe("allocate", () => {
  it("hands out the range round-robin from the cursor, skipping the gateway, and records the cursor", async () => {
    const store = new MemoryStore();
    const config = ipam(SMALL);
    expect(await allocate(store, config, pod("a"))).toEqual([{ address: "10.0.0.2/29", gateway: "10.0.0.1" }]);
    expect(await allocate(store, config, pod("b"))).toEqual([{ address: "10.0.0.3/29", gateway: "10.0.0.1" }]);
    expect(store.owners.get("10.0.0.2")).toBe("a\r\neth0");
    expect(formatAddress(store.cursors.get(0)!)).toBe("10.0.0.3");
    expect(store.locked).toBe(false);
    expect(store.outstanding.size).toBe(0);
    expect(store.syncs).toBe(2);
  });

  it("takes one address from each range set, all or none: a full second set releases the first set's", async () => {
    const store = new MemoryStore({ "10.1.0.1": "x\r\neth0", "10.1.0.2": "y\r\neth0" });
    const config = ipam([[{ subnet: "10.0.0.0/29" }], [{ subnet: "10.1.0.0/30", gateway: "10.1.0.3" }]]);
    const err = await failure(allocate(store, config, pod("a")));
    expect(err.code).toBe(ErrorCode.NoAddress);
    expect(err.message).toBe("failed to allocate for range 1: no IP addresses available in range set: 10.1.0.1-10.1.0.2");
    expect([...store.owners.keys()]).toEqual(["10.1.0.1", "10.1.0.2"]);
    expect(store.outstanding.size).toBe(0);
  });

  it("refuses a second ADD of one attachment, and of a container holding a file without an interface", async () => {
    const config = ipam(SMALL);
    const current = new MemoryStore({ "10.0.0.5": "a\r\neth0" });
    expect((await failure(allocate(current, config, pod("a")))).message).toBe(
      "failed to allocate for range 0: 10.0.0.5 has been allocated to a, duplicate allocation is not allowed",
    );
    const legacy = new MemoryStore({ "10.0.0.5": "a" });
    expect((await failure(allocate(legacy, config, pod("a")))).message).toContain("duplicate allocation is not allowed");
    // Another interface of the same container is another attachment.
    expect(await allocate(current, config, pod("a", "eth1"))).toEqual([{ address: "10.0.0.2/29", gateway: "10.0.0.1" }]);
  });

  it("gives a requested address, or says who holds it", async () => {
    const store = new MemoryStore({ "10.0.0.4": "b\r\neth0" });
    const wanted = ipam(SMALL, new Map([["IP", "10.0.0.6"]]));
    expect(await allocate(store, wanted, pod("a"))).toEqual([{ address: "10.0.0.6/29", gateway: "10.0.0.1" }]);
    const taken = await failure(allocate(store, ipam(SMALL, new Map([["IP", "10.0.0.4"]])), pod("c")));
    expect(taken.message).toBe("failed to allocate for range 0: requested IP address 10.0.0.4 is not available in range set 10.0.0.1-10.0.0.6");
    expect(taken.details).toBe("it is reserved by container b interface eth0");
  });
});

describe("release", () => {
  it("releases what the attachment holds and nothing of other interfaces", async () => {
    const store = new MemoryStore({ "10.0.0.2": "a\r\neth0", "10.0.0.3": "a\r\neth1", "10.0.0.4": "a" });
    expect(await release(store, 1000, pod("a"))).toEqual(["10.0.0.2"]);
    expect([...store.owners.keys()]).toEqual(["10.0.0.3", "10.0.0.4"]);
  });

  it("releases the container's files without an interface only when the attachment holds nothing", async () => {
    const store = new MemoryStore({ "10.0.0.3": "a\r\neth1", "10.0.0.4": "a" });
    expect(await release(store, 1000, pod("a"))).toEqual(["10.0.0.4"]);
    expect(await release(store, 1000, pod("a"))).toEqual([]);
    expect([...store.owners.keys()]).toEqual(["10.0.0.3"]);
  });
});

describe("checkAllocation", () => {
  const config = ipam(SMALL);

  it("accepts the attachment's reservation and a prevResult naming it", () => {
    const store = new MemoryStore({ "10.0.0.2": "a\r\neth0" });
    expect(() => checkAllocation(store, config, pod("a"), { cniVersion: "1.0.0", ips: [{ address: "10.0.0.2/29" }] })).not.toThrow();
  });

  it("fails with code 104 when nothing is reserved, naming where it looked", () => {
    const err = (() => {
      try {
        checkAllocation(new MemoryStore(), config, pod("a"));
      } catch (e) {
        return e as CniError;
      }
      throw new Error("expected a failure");
    })();
    expect(err.code).toBe(ErrorCode.CheckFailed);
    expect(err.message).toBe("host-local: Failed to find address added by container a");
    expect(err.details).toBe("no reservation for interface eth0 in <memory>");
  });

  it("fails when prevResult names an address someone else holds", () => {
    const store = new MemoryStore({ "10.0.0.2": "a\r\neth0", "10.0.0.3": "b\r\neth0" });
    expect(() => checkAllocation(store, config, pod("a"), { cniVersion: "1.0.0", ips: [{ address: "10.0.0.3/29" }] })).toThrow(
      "host-local: prevResult address 10.0.0.3 is not reserved for container a interface eth0",
    );
  });
});

describe("collectGarbage and exhaustedRangeSets", () => {
  it("keeps valid attachments and files without an interface of a valid container; releases the rest", async () => {
    const store = new MemoryStore({ "10.0.0.2": "a\r\neth0", "10.0.0.3": "a", "10.0.0.4": "b\r\neth0", "10.0.0.5": "c", "10.0.0.6": "" });
    const released = await collectGarbage(store, 1000, [{ containerID: "a", ifname: "eth0" }]);
    expect(released.sort()).toEqual(["10.0.0.4", "10.0.0.5", "10.0.0.6"]);
    expect([...store.owners.keys()]).toEqual(["10.0.0.2", "10.0.0.3"]);
  });

  it("reports the range sets with no address left", () => {
    const config = ipam([[{ subnet: "10.0.0.0/30" }], [{ subnet: "10.1.0.0/29" }]]);
    expect(exhaustedRangeSets(new MemoryStore({ "10.0.0.2": "x" }), config)).toEqual([0]);
    expect(exhaustedRangeSets(undefined, config)).toEqual([]);
  });
});
