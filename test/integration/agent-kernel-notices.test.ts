import { afterEach, describe, expect, it } from "vitest";
import type { KernelNotice } from "../../agent/backend.js";
import { decodeNotice, watchKernel } from "../../agent/kernel-notices.js";
import { addAddress, delAddress } from "../../lib/netlink/addr.js";
import { delLink, ensureVxlan, setLinkDown } from "../../lib/netlink/link.js";
import { delFdbEntry, delNeighbour, NUD_PERMANENT, setFdbEntry, setNeighbour } from "../../lib/netlink/neigh.js";
import { addRoute, delRoute, listRoutes, replaceRoute } from "../../lib/netlink/route.js";
import { RTM, Rtnl } from "../../lib/netlink/rtnl.js";
import { Netns } from "../../lib/netns/netns.js";
import { netnsPool } from "../helpers/netns.js";
import { all, rootUser } from "../helpers/prerequisites.js";
import { waitUntil } from "../helpers/wait.js";

const needed = all(rootUser());
const pool = netnsPool();
const opened: Array<{ close(): void }> = [];
const stops: Array<() => void> = [];

afterEach(() => {
  for (const stop of stops.splice(0)) stop();
  for (const o of opened.splice(0)) o.close();
  pool.cleanup();
});

/** A namespace of the test's own, a socket in it, and the notices watchKernel reports from it. */
async function watched() {
  const ns = pool.create("weft-kn-");
  const netns = Netns.open(ns.path);
  const nl = await Rtnl.open(netns);
  opened.push(nl, netns);
  const notices: KernelNotice[] = [];
  const stop = watchKernel(nl, (n) => notices.push(n));
  stops.push(stop);
  /** The first notice since `from` matching `expected`, within 5 s. */
  const next = async (expected: Partial<KernelNotice> & { kind: KernelNotice["kind"] }, from = 0) =>
    waitUntil(
      `a notice like ${JSON.stringify(expected)} (got ${JSON.stringify(notices.slice(from))})`,
      5000,
      () => notices.slice(from).find((n) => Object.entries(expected).every(([k, v]) => (n as Record<string, unknown>)[k] === v)),
      50,
    );
  return { ns, nl, notices, stop, next };
}

describe.skipIf(needed.skip)(needed.title("the agent's kernel notices (one rtnetlink socket, every group)"), () => {
  it("decodes a vxlan device's link, address, route, neighbour and fdb changes as they happen", async () => {
    const { nl, notices, next } = await watched();
    const mac = "c6:d2:32:6f:8f:44";
    const { link } = await ensureVxlan(nl, { name: "flannel.1", vni: 1, port: 8472, mac });
    const index = link.index;
    await next({ kind: "link", deleted: false, index, name: "flannel.1", up: true });

    let from = notices.length;
    await addAddress(nl, index, "10.5.3.0/32");
    expect(await next({ kind: "address", deleted: false, index, cidr: "10.5.3.0/32" }, from)).toBeTruthy();

    from = notices.length;
    await addRoute(nl, { dst: "10.5.7.0/24", gw: "10.5.7.0", index, onlink: true });
    await next({ kind: "route", deleted: false, dst: "10.5.7.0/24", gw: "10.5.7.0", index }, from);

    // replaceRoute changes the gateway in place: one route after, with the new gateway.
    from = notices.length;
    await replaceRoute(nl, { dst: "10.5.7.0/24", gw: "10.5.7.1", index, onlink: true });
    await next({ kind: "route", deleted: false, dst: "10.5.7.0/24", gw: "10.5.7.1", index }, from);
    const routes = (await listRoutes(nl, { family: 4, index })).filter((r) => r.dst === "10.5.7.0/24");
    expect(routes.map((r) => r.gw)).toEqual(["10.5.7.1"]);

    from = notices.length;
    expect(await delRoute(nl, { dst: "10.5.7.0/24", gw: "10.5.7.1", index, onlink: true })).toBe(true);
    await next({ kind: "route", deleted: true, dst: "10.5.7.0/24", gw: "10.5.7.1", index }, from);

    from = notices.length;
    await setNeighbour(nl, { index, ip: "10.5.7.0", mac: "aa:bb:cc:dd:ee:07", state: NUD_PERMANENT });
    await next({ kind: "neighbour", deleted: false, index, ip: "10.5.7.0", mac: "aa:bb:cc:dd:ee:07" }, from);
    from = notices.length;
    expect(await delNeighbour(nl, { index, ip: "10.5.7.0" })).toBe(true);
    await next({ kind: "neighbour", deleted: true, index, ip: "10.5.7.0" }, from);

    from = notices.length;
    await setFdbEntry(nl, { index, mac: "aa:bb:cc:dd:ee:07", dst: "192.168.64.7" });
    await next({ kind: "fdb", deleted: false, index, mac: "aa:bb:cc:dd:ee:07", dst: "192.168.64.7" }, from);
    from = notices.length;
    expect(await delFdbEntry(nl, { index, mac: "aa:bb:cc:dd:ee:07", dst: "192.168.64.7" })).toBe(true);
    await next({ kind: "fdb", deleted: true, index, mac: "aa:bb:cc:dd:ee:07", dst: "192.168.64.7" }, from);
    // An fdb entry is never taken for a neighbour.
    expect(notices.filter((n) => n.kind === "neighbour" && n.mac === "aa:bb:cc:dd:ee:07" && n.ip !== "10.5.7.0")).toEqual([]);

    from = notices.length;
    expect(await delAddress(nl, index, "10.5.3.0/32")).toBe(true);
    await next({ kind: "address", deleted: true, index, cidr: "10.5.3.0/32" }, from);

    from = notices.length;
    await setLinkDown(nl, index);
    await next({ kind: "link", deleted: false, index, name: "flannel.1", up: false }, from);

    from = notices.length;
    expect(await delLink(nl, index)).toBe(true);
    await next({ kind: "link", deleted: true, index, name: "flannel.1" }, from);
    expect(notices.some((n) => n.kind === "lost")).toBe(false);
  });

  it("decodes IPv6 routes and addresses on the same socket", async () => {
    const { ns, nl, notices, next } = await watched();
    ns.exec("ip", ["link", "add", "v0", "type", "veth", "peer", "name", "v1"]);
    ns.exec("ip", ["link", "set", "v1", "up"]);
    ns.exec("ip", ["link", "set", "v0", "up"]);
    const { index } = (await next({ kind: "link", name: "v0", up: true })) as { index: number };
    let from = notices.length;
    await addAddress(nl, index, "fd00:5::1/64", { noDad: true });
    await next({ kind: "address", deleted: false, index, cidr: "fd00:5::1/64" }, from);
    from = notices.length;
    await addRoute(nl, { dst: "fd00:7::/64", gw: "fd00:5::7", index });
    await next({ kind: "route", deleted: false, dst: "fd00:7::/64", gw: "fd00:5::7", index }, from);
  });

  it("stops reporting once stopped", async () => {
    const { ns, notices, stop, next } = await watched();
    ns.exec("ip", ["link", "add", "v0", "type", "veth", "peer", "name", "v1"]);
    await next({ kind: "link", name: "v0" });
    stop();
    const count = notices.length;
    ns.exec("ip", ["link", "add", "v2", "type", "veth", "peer", "name", "v3"]);
    await new Promise((r) => setTimeout(r, 300));
    expect(notices.length).toBe(count);
  });

  it("ignores messages it does not decode", () => {
    expect(decodeNotice(RTM.GETLINK, Buffer.alloc(64))).toBeUndefined();
    expect(decodeNotice(RTM.GETROUTE, Buffer.alloc(64))).toBeUndefined();
    expect(decodeNotice(RTM.GETNEIGH, Buffer.alloc(64))).toBeUndefined();
  });
});
