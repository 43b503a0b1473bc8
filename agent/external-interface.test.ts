import { afterEach, describe, expect, it } from "vitest";
import { Rtnl } from "../lib/netlink/rtnl.js";
import { Netns } from "../lib/netns/netns.js";
import { netnsPool } from "../test/helpers/netns.js";
import { chooseExternalInterface, nodeFacts, type ExternalInterfaceOptions, type NodeFacts } from "./external-interface.js";

const ETH0 = { name: "eth0", index: 2, mtu: 1500, v4: ["192.168.1.10", "192.168.1.11"], v6: ["fd00::10"] };
const ETH1 = { name: "eth1", index: 3, mtu: 9000, v4: ["10.0.0.5"], v6: [] };
const BARE = { name: "eth2", index: 4, mtu: 1500, v4: [], v6: [] };

function facts(extra: Partial<NodeFacts> = {}): NodeFacts {
  return {
    interfaces: [{ name: "lo", index: 1, mtu: 65536, v4: ["127.0.0.1"], v6: [] }, ETH0, ETH1, BARE],
    defaultRoute: { 4: 2, 6: 2 },
    routeTo: async (address) => (address.startsWith("10.") ? { index: 3, src: "10.0.0.5" } : undefined),
    ...extra,
  };
}

const V4: ExternalInterfaceOptions = { iface: [], ifaceRegex: [], ifaceCanReach: "", publicIP: "", publicIPv6: "", ipv4: true, ipv6: false };

describe("chooseExternalInterface", () => {
  it("defaults to the default route's interface and its first address", async () => {
    expect(await chooseExternalInterface(facts(), V4)).toEqual({
      name: "eth0",
      index: 2,
      mtu: 1500,
      ifaceAddr: "192.168.1.10",
      extAddr: "192.168.1.10",
    });
  });

  it("takes --iface by name or by address (that address, not the first), and --public-ip as the announced one", async () => {
    expect(await chooseExternalInterface(facts(), { ...V4, iface: ["eth1"] })).toMatchObject({ name: "eth1", ifaceAddr: "10.0.0.5" });
    expect(await chooseExternalInterface(facts(), { ...V4, iface: ["192.168.1.11"] })).toMatchObject({ name: "eth0", ifaceAddr: "192.168.1.11" });
    expect(await chooseExternalInterface(facts(), { ...V4, iface: ["eth1"], publicIP: "203.0.113.7" })).toMatchObject({
      ifaceAddr: "10.0.0.5",
      extAddr: "203.0.113.7",
    });
  });

  it("tries each --iface in turn, skipping one that is missing or has no address", async () => {
    expect(await chooseExternalInterface(facts(), { ...V4, iface: ["nope", "eth2", "eth1"] })).toMatchObject({ name: "eth1" });
  });

  it("matches --iface-regex against addresses first, then names", async () => {
    expect(await chooseExternalInterface(facts(), { ...V4, ifaceRegex: ["^10\\."] })).toMatchObject({ name: "eth1", ifaceAddr: "10.0.0.5" });
    expect(await chooseExternalInterface(facts(), { ...V4, ifaceRegex: ["^eth0$"] })).toMatchObject({ name: "eth0", ifaceAddr: "192.168.1.10" });
    // The pattern names eth2 and matches eth1's address: the address wins.
    expect(await chooseExternalInterface(facts(), { ...V4, ifaceRegex: ["^(eth2|10\\.0\\.0\\.5)$"] })).toMatchObject({
      name: "eth1",
      ifaceAddr: "10.0.0.5",
    });
  });

  it("follows the route to --iface-can-reach, using its source address", async () => {
    expect(await chooseExternalInterface(facts(), { ...V4, ifaceCanReach: "10.9.9.9" })).toMatchObject({ name: "eth1", ifaceAddr: "10.0.0.5" });
  });

  it("dual stack needs both families on one interface", async () => {
    const both = { ...V4, ipv6: true };
    expect(await chooseExternalInterface(facts(), both)).toMatchObject({
      name: "eth0",
      ifaceAddr: "192.168.1.10",
      ifaceV6Addr: "fd00::10",
      extV6Addr: "fd00::10",
    });
    await expect(chooseExternalInterface(facts(), { ...both, iface: ["eth1"] })).rejects.toThrow("eth1 has no global IPv6 address");
    await expect(chooseExternalInterface(facts({ defaultRoute: { 4: 2, 6: 3 } }), both)).rejects.toThrow(
      "the IPv4 and IPv6 default routes leave through different interfaces",
    );
  });

  it("says what it tried and what the node has when nothing fits", async () => {
    await expect(chooseExternalInterface(facts(), { ...V4, iface: ["nope", "eth2"] })).rejects.toThrow(
      "no external interface: --iface nope: no interface has that name; eth2 has no IPv4 address (interfaces: lo [127.0.0.1], eth0 [192.168.1.10 192.168.1.11 fd00::10], eth1 [10.0.0.5], eth2 [])",
    );
    await expect(chooseExternalInterface(facts({ defaultRoute: {} }), V4)).rejects.toThrow("no IPv4 default route: name the interface with --iface");
    await expect(chooseExternalInterface(facts(), { ...V4, ifaceRegex: ["("] })).rejects.toThrow("--iface-regex (: not a regular expression");
    await expect(chooseExternalInterface(facts(), { ...V4, publicIP: "x" })).rejects.toThrow("--public-ip x is not an IP address");
  });
});

describe("nodeFacts", () => {
  const pool = netnsPool();
  const opened: Array<{ close(): void }> = [];
  afterEach(() => {
    for (const o of opened.splice(0)) o.close();
    pool.cleanup();
  });

  it("reads interfaces, addresses, the default route and route lookups from the kernel", async () => {
    const ns = pool.create();
    ns.exec("ip", ["link", "add", "u0", "type", "veth", "peer", "name", "u1"]);
    ns.exec("ip", ["addr", "add", "192.168.77.1/24", "dev", "u0"]);
    ns.exec("ip", ["addr", "add", "fd00:77::1/64", "dev", "u0", "nodad"]);
    ns.exec("ip", ["link", "set", "u0", "up"]);
    ns.exec("ip", ["link", "set", "u1", "up"]);
    ns.exec("ip", ["route", "add", "default", "via", "192.168.77.254", "dev", "u0"]);
    const netns = Netns.open(ns.path);
    const nl = await Rtnl.open(netns);
    opened.push(nl, netns);
    const f = await nodeFacts(nl);
    const u0 = f.interfaces.find((i) => i.name === "u0")!;
    expect(u0).toMatchObject({ mtu: 1500, v4: ["192.168.77.1"], v6: ["fd00:77::1"] });
    expect(f.defaultRoute[4]).toBe(u0.index);
    expect(await f.routeTo("8.8.8.8")).toEqual({ index: u0.index, gw: "192.168.77.254", src: "192.168.77.1" });
    expect(await f.routeTo("fd00:99::1")).toBeUndefined();
    expect(await chooseExternalInterface(f, V4)).toMatchObject({ name: "u0", ifaceAddr: "192.168.77.1", extAddr: "192.168.77.1" });
  });
});
