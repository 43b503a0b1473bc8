import { afterEach, describe, expect, it } from "vitest";
import { linkByName } from "../lib/netlink/link.js";
import { Rtnl } from "../lib/netlink/rtnl.js";
import { Netns } from "../lib/netns/netns.js";
import { netnsPool, type TestNetns } from "../test/helpers/netns.js";
import { desiredRoutes, peersNotOnLink, reconcileHostGw } from "./hostgw-routes.js";

const NETWORK = "10.244.0.0/16";
const SELF = "10.244.1.0/24";
const PEERS = [
  { subnet: "10.244.2.0/24", publicIP: "192.168.77.2" },
  { subnet: "10.244.3.0/24", publicIP: "192.168.77.3" },
  { subnet: SELF, publicIP: "192.168.77.1" },
];

describe("desiredRoutes", () => {
  it("routes each other node's subnet via its public address", () => {
    expect(desiredRoutes(PEERS, SELF)).toEqual([
      { dst: "10.244.2.0/24", gw: "192.168.77.2" },
      { dst: "10.244.3.0/24", gw: "192.168.77.3" },
    ]);
    expect(desiredRoutes([{ subnet: "nope", publicIP: "192.168.77.2" }], SELF)).toEqual([]);
  });
});

describe("on a node's external interface", () => {
  const pool = netnsPool();
  const opened: Array<{ close(): void }> = [];
  afterEach(() => {
    for (const o of opened.splice(0)) o.close();
    pool.cleanup();
  });

  async function node(ns: TestNetns) {
    ns.exec("ip", ["link", "add", "u0", "type", "veth", "peer", "name", "u1"]);
    ns.exec("ip", ["addr", "add", "192.168.77.1/24", "dev", "u0"]);
    ns.exec("ip", ["link", "set", "u0", "up"]);
    ns.exec("ip", ["link", "set", "u1", "up"]);
    ns.exec("ip", ["route", "add", "10.99.0.0/16", "via", "192.168.77.254", "dev", "u0"]);
    const netns = Netns.open(ns.path);
    const nl = await Rtnl.open(netns);
    opened.push(nl, netns);
    return { nl, index: (await linkByName(nl, "u0"))!.index };
  }

  const routes = (ns: TestNetns) =>
    ns
      .ipJson<Array<{ dst: string; gateway?: string }>>("route", "show", "dev", "u0")
      .map((r) => `${r.dst} via ${r.gateway ?? "-"}`)
      .sort();

  it("keeps exactly the cluster's routes, restores one deleted by hand, and leaves other routes of the interface alone", async () => {
    const ns = pool.create();
    const { nl, index } = await node(ns);
    expect((await reconcileHostGw(nl, index, NETWORK, desiredRoutes(PEERS, SELF))).add).toHaveLength(2);
    expect(routes(ns)).toEqual([
      "10.244.2.0/24 via 192.168.77.2",
      "10.244.3.0/24 via 192.168.77.3",
      "10.99.0.0/16 via 192.168.77.254",
      "192.168.77.0/24 via -",
    ]);
    ns.exec("ip", ["route", "del", "10.244.2.0/24"]);
    expect(await reconcileHostGw(nl, index, NETWORK, desiredRoutes(PEERS, SELF))).toEqual({
      add: [{ dst: "10.244.2.0/24", gw: "192.168.77.2" }],
      remove: [],
    });
    // Node 3's lease is gone: its route goes, nothing else does.
    expect(await reconcileHostGw(nl, index, NETWORK, desiredRoutes(PEERS.slice(0, 1), SELF))).toEqual({
      add: [],
      remove: [{ dst: "10.244.3.0/24", gw: "192.168.77.3" }],
    });
    expect(routes(ns)).toEqual(["10.244.2.0/24 via 192.168.77.2", "10.99.0.0/16 via 192.168.77.254", "192.168.77.0/24 via -"]);
  });

  it("names the peers a host-gw route could not reach", async () => {
    const ns = pool.create();
    const { nl, index } = await node(ns);
    const problems = await peersNotOnLink(nl, index, [
      { dst: "10.244.2.0/24", gw: "192.168.77.2" },
      { dst: "10.244.4.0/24", gw: "10.99.0.4" },
      { dst: "10.244.5.0/24", gw: "172.31.0.5" },
    ]);
    expect(problems).toEqual([
      "node 10.99.0.4 (subnet 10.244.4.0/24) is not on-link on the external interface: host-gw needs every node on one L2 segment; use vxlan",
      "node 172.31.0.5 (subnet 10.244.5.0/24) is unreachable: host-gw needs every node on this node's L2 segment",
    ]);
  });
});
