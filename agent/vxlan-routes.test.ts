import { afterEach, describe, expect, it } from "vitest";
import { ensureVxlan } from "../lib/netlink/link.js";
import { addAddress } from "../lib/netlink/addr.js";
import { Rtnl } from "../lib/netlink/rtnl.js";
import { Netns } from "../lib/netns/netns.js";
import { netnsPool, type TestNetns } from "../test/helpers/netns.js";
import { desiredEntries, diffEntries, reconcileVxlan, type VxlanPeer } from "./vxlan-routes.js";

const SELF = "10.244.1.0/24";
const B: VxlanPeer = { subnet: "10.244.2.0/24", publicIP: "192.168.77.2", vtepMac: "0A:58:0A:F4:02:00" };
const C: VxlanPeer = { subnet: "10.244.3.0/24", publicIP: "192.168.77.3", vtepMac: "0a:58:0a:f4:03:00" };

describe("desiredEntries", () => {
  it("gives each other node a neighbour, an fdb entry and an onlink route, as flanneld's vxlan backend", () => {
    expect(desiredEntries([B, C, { subnet: SELF, publicIP: "192.168.77.1", vtepMac: "0a:58:0a:f4:01:00" }], SELF)).toEqual({
      routes: [
        { dst: "10.244.2.0/24", gw: "10.244.2.0" },
        { dst: "10.244.3.0/24", gw: "10.244.3.0" },
      ],
      neighbours: [
        { ip: "10.244.2.0", mac: "0a:58:0a:f4:02:00" },
        { ip: "10.244.3.0", mac: "0a:58:0a:f4:03:00" },
      ],
      fdb: [
        { mac: "0a:58:0a:f4:02:00", dst: "192.168.77.2" },
        { mac: "0a:58:0a:f4:03:00", dst: "192.168.77.3" },
      ],
    });
  });

  it("leaves out a lease whose subnet or public address is not usable", () => {
    expect(
      desiredEntries(
        [
          { ...B, subnet: "x" },
          { ...C, publicIP: "" },
        ],
        SELF,
      ),
    ).toEqual({ routes: [], neighbours: [], fdb: [] });
  });
});

describe("diffEntries", () => {
  it("adds what is missing, removes what no lease wants, and replaces what changed", () => {
    const have = desiredEntries([B, C], SELF);
    const want = desiredEntries([{ ...B, publicIP: "192.168.77.20" }], SELF);
    expect(diffEntries(have, want)).toEqual({
      add: { routes: [], neighbours: [], fdb: [{ mac: "0a:58:0a:f4:02:00", dst: "192.168.77.20" }] },
      remove: {
        routes: [{ dst: "10.244.3.0/24", gw: "10.244.3.0" }],
        neighbours: [{ ip: "10.244.3.0", mac: "0a:58:0a:f4:03:00" }],
        fdb: [
          { mac: "0a:58:0a:f4:02:00", dst: "192.168.77.2" },
          { mac: "0a:58:0a:f4:03:00", dst: "192.168.77.3" },
        ],
      },
    });
    expect(diffEntries(want, want)).toEqual({ add: { routes: [], neighbours: [], fdb: [] }, remove: { routes: [], neighbours: [], fdb: [] } });
  });
});

describe("reconcileVxlan on a real VTEP", () => {
  const pool = netnsPool();
  const opened: Array<{ close(): void }> = [];
  afterEach(() => {
    for (const o of opened.splice(0)) o.close();
    pool.cleanup();
  });

  async function vtep(ns: TestNetns) {
    const netns = Netns.open(ns.path);
    const nl = await Rtnl.open(netns);
    opened.push(nl, netns);
    const { link } = await ensureVxlan(nl, { name: "flannel.1", vni: 1, port: 8472, mtu: 1450 });
    await addAddress(nl, link.index, "10.244.1.0/32");
    return { nl, index: link.index };
  }

  /** The kernel's view through ip(8) and bridge(8), not through the code under test. */
  function seen(ns: TestNetns) {
    const routes = ns.ipJson<Array<{ dst: string; gateway?: string; flags: string[] }>>("route", "show", "dev", "flannel.1");
    const neighbours = ns.ipJson<Array<{ dst: string; lladdr: string; state: string[] }>>("neigh", "show", "dev", "flannel.1");
    const fdb = JSON.parse(ns.exec("bridge", ["-j", "fdb", "show", "dev", "flannel.1"]) || "[]") as Array<{ mac: string; dst?: string }>;
    return {
      routes: routes.map((r) => `${r.dst} via ${r.gateway ?? "-"}${r.flags.includes("onlink") ? " onlink" : ""}`).sort(),
      neighbours: neighbours
        .filter((n) => n.state.includes("PERMANENT"))
        .map((n) => `${n.dst} ${n.lladdr}`)
        .sort(),
      fdb: fdb
        .filter((f) => f.dst)
        .map((f) => `${f.mac} ${f.dst}`)
        .sort(),
    };
  }

  it("programs every peer, changes nothing on a second pass, and puts back what was deleted by hand", async () => {
    const ns = pool.create();
    const { nl, index } = await vtep(ns);
    const want = desiredEntries([B, C], SELF);
    const first = await reconcileVxlan(nl, index, want);
    expect(first.add.routes).toHaveLength(2);
    expect(seen(ns)).toEqual({
      routes: ["10.244.2.0/24 via 10.244.2.0 onlink", "10.244.3.0/24 via 10.244.3.0 onlink"],
      neighbours: ["10.244.2.0 0a:58:0a:f4:02:00", "10.244.3.0 0a:58:0a:f4:03:00"],
      fdb: ["0a:58:0a:f4:02:00 192.168.77.2", "0a:58:0a:f4:03:00 192.168.77.3"],
    });
    const steady = await reconcileVxlan(nl, index, want);
    expect(steady.add).toEqual({ routes: [], neighbours: [], fdb: [] });
    expect(steady.remove).toEqual({ routes: [], neighbours: [], fdb: [] });

    const before = seen(ns);
    ns.exec("ip", ["route", "del", "10.244.3.0/24", "dev", "flannel.1"]);
    ns.exec("bridge", ["fdb", "del", "0a:58:0a:f4:02:00", "dev", "flannel.1", "dst", "192.168.77.2"]);
    ns.exec("ip", ["neigh", "del", "10.244.2.0", "dev", "flannel.1"]);
    const repaired = await reconcileVxlan(nl, index, want);
    expect(repaired.add).toEqual({
      routes: [{ dst: "10.244.3.0/24", gw: "10.244.3.0" }],
      neighbours: [{ ip: "10.244.2.0", mac: "0a:58:0a:f4:02:00" }],
      fdb: [{ mac: "0a:58:0a:f4:02:00", dst: "192.168.77.2" }],
    });
    expect(seen(ns)).toEqual(before);
  });

  it("moves the fdb entry of a node whose public address changed, and removes every entry of a node whose lease is gone", async () => {
    const ns = pool.create();
    const { nl, index } = await vtep(ns);
    await reconcileVxlan(nl, index, desiredEntries([B, C], SELF));
    await reconcileVxlan(nl, index, desiredEntries([{ ...B, publicIP: "192.168.77.20" }], SELF));
    expect(seen(ns)).toEqual({
      routes: ["10.244.2.0/24 via 10.244.2.0 onlink"],
      neighbours: ["10.244.2.0 0a:58:0a:f4:02:00"],
      fdb: ["0a:58:0a:f4:02:00 192.168.77.20"],
    });
    // A node whose VTEP came back with another MAC: neighbour and fdb entry follow.
    await reconcileVxlan(nl, index, desiredEntries([{ ...B, publicIP: "192.168.77.20", vtepMac: "0a:58:0a:f4:02:99" }], SELF));
    expect(seen(ns)).toMatchObject({ neighbours: ["10.244.2.0 0a:58:0a:f4:02:99"], fdb: ["0a:58:0a:f4:02:99 192.168.77.20"] });
  });
});
