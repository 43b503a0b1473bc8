import { afterEach, describe, expect, it } from "vitest";
import { addAddress } from "../../lib/netlink/addr.js";
import { ensureBridge, ensureVxlan, linkByName } from "../../lib/netlink/link.js";
import { setFdbEntry, setNeighbour } from "../../lib/netlink/neigh.js";
import { addRoute, listRoutes } from "../../lib/netlink/route.js";
import { Rtnl } from "../../lib/netlink/rtnl.js";
import { Netns } from "../../lib/netns/netns.js";
import { netnsPool, uniqueName, type TestNetns } from "../helpers/netns.js";

// flannel's VTEP as the node agent will make it: the device, and the per-remote-node recipe (a
// permanent neighbour for the remote .0, an fdb entry to the remote public address, an onlink route
// to the remote subnet), checked against ip(8) and by traffic between two nodes.

const pool = netnsPool();
const opened: Array<{ close(): void }> = [];

afterEach(() => {
  for (const o of opened.splice(0)) o.close();
  pool.cleanup();
});

async function open(ns: TestNetns): Promise<Rtnl> {
  const netns = Netns.open(ns.path);
  const nl = await Rtnl.open(netns);
  opened.push(nl, netns);
  return nl;
}

interface VxlanInfo {
  ifname: string;
  mtu: number;
  address: string;
  flags: string[];
  linkinfo: { info_kind: string; info_data: { id: number; port: number; local?: string; learning: boolean; link?: string } };
}

function vxlanInfo(ns: TestNetns, name: string): VxlanInfo {
  return ns.ipJson<VxlanInfo[]>("-d", "link", "show", name)[0]!;
}

/** A node: a namespace with an underlay veth end (the other end given to the caller), addressed. */
async function underlayNode(ns: TestNetns, name: string, address: string) {
  const nl = await open(ns);
  const underlay = (await linkByName(nl, name))!;
  await addAddress(nl, underlay.index, address);
  ns.exec("ip", ["link", "set", name, "up"]);
  return { nl, underlay };
}

describe("ensureVxlan", () => {
  it("creates flannel.1 as flanneld does: VNI, port 8472, local address, underlay device, no learning, MTU, MAC, up", async () => {
    const ns = pool.create();
    ns.exec("ip", ["link", "add", "u0", "type", "veth", "peer", "name", "u1"]);
    const { nl, underlay } = await underlayNode(ns, "u0", "192.168.77.1/24");
    const { link, created } = await ensureVxlan(nl, {
      name: "flannel.1",
      vni: 1,
      port: 8472,
      local: "192.168.77.1",
      dev: underlay.index,
      mtu: 1450,
      mac: "0a:58:c0:a8:4d:01",
    });
    expect(created).toBe(true);
    expect(link.vxlan).toEqual({ vni: 1, port: 8472, local: "192.168.77.1", dev: underlay.index, learning: false, gbp: false });
    const info = vxlanInfo(ns, "flannel.1");
    expect(info.mtu).toBe(1450);
    expect(info.address).toBe("0a:58:c0:a8:4d:01");
    expect(info.flags).toContain("UP");
    expect(info.linkinfo.info_kind).toBe("vxlan");
    expect(info.linkinfo.info_data).toMatchObject({ id: 1, port: 8472, local: "192.168.77.1", learning: false, link: "u0" });
  });

  it("keeps a device with the same parameters (same ifindex and MAC), restoring its MTU and up state", async () => {
    const ns = pool.create();
    const nl = await open(ns);
    const first = await ensureVxlan(nl, { name: "flannel.1", vni: 1, port: 8472, mtu: 1450 });
    ns.exec("ip", ["link", "set", "flannel.1", "down", "mtu", "1400"]);
    const again = await ensureVxlan(nl, { name: "flannel.1", vni: 1, port: 8472, mtu: 1450 });
    expect(again.created).toBe(false);
    expect(again.link.index).toBe(first.link.index);
    expect(again.link.mac).toBe(first.link.mac);
    expect(again.link.mtu).toBe(1450);
    expect(again.link.up).toBe(true);
  });

  it("replaces a device whose VNI, port, learning or GBP differ, and a link of that name of another kind", async () => {
    const ns = pool.create();
    const nl = await open(ns);
    await ensureVxlan(nl, { name: "flannel.1", vni: 1, port: 8472 });
    const vni = await ensureVxlan(nl, { name: "flannel.1", vni: 2, port: 8472 });
    expect(vni.created).toBe(true);
    expect(vxlanInfo(ns, "flannel.1").linkinfo.info_data).toMatchObject({ id: 2, port: 8472 });
    expect((await ensureVxlan(nl, { name: "flannel.1", vni: 2, port: 4789 })).created).toBe(true);
    expect((await ensureVxlan(nl, { name: "flannel.1", vni: 2, port: 4789, learning: true })).created).toBe(true);
    expect(vxlanInfo(ns, "flannel.1").linkinfo.info_data.learning).toBe(true);
    const gbp = await ensureVxlan(nl, { name: "flannel.1", vni: 2, port: 4789, gbp: true });
    expect(gbp.created).toBe(true);
    expect(gbp.link.vxlan?.gbp).toBe(true);
    await ensureBridge(nl, { name: "flannel.9" });
    const replaced = await ensureVxlan(nl, { name: "flannel.9", vni: 9, port: 8472 });
    expect(replaced.created).toBe(true);
    expect(vxlanInfo(ns, "flannel.9").linkinfo.info_kind).toBe("vxlan");
  });

  it("refuses a local address that is not one", async () => {
    const nl = await open(pool.create());
    await expect(ensureVxlan(nl, { name: "flannel.1", vni: 1, port: 8472, local: "192.168.77" })).rejects.toThrow(
      'vxlan flannel.1: local address "192.168.77" is not an IP address',
    );
  });
});

describe("two nodes over VXLAN, programmed as flanneld's vxlan backend does", () => {
  it("carries traffic between the nodes' flannel.1 addresses through the neighbour, fdb entry and onlink route of each peer", async () => {
    const a = pool.create();
    const b = pool.create();
    const peer = uniqueName("wvx-", 15);
    a.exec("ip", ["link", "add", "u0", "type", "veth", "peer", "name", peer]);
    a.exec("ip", ["link", "set", peer, "netns", b.name]);
    b.exec("ip", ["link", "set", peer, "name", "u0"]);
    const nodes = [
      { ns: a, public: "192.168.77.1", subnet: "10.244.1.0/24", vtep: "10.244.1.0", mac: "0a:58:0a:f4:01:00" },
      { ns: b, public: "192.168.77.2", subnet: "10.244.2.0/24", vtep: "10.244.2.0", mac: "0a:58:0a:f4:02:00" },
    ];
    const devices = [];
    for (const n of nodes) {
      const { nl, underlay } = await underlayNode(n.ns, "u0", `${n.public}/24`);
      const { link } = await ensureVxlan(nl, { name: "flannel.1", vni: 1, port: 8472, local: n.public, dev: underlay.index, mtu: 1450, mac: n.mac });
      await addAddress(nl, link.index, `${n.vtep}/32`);
      devices.push({ nl, link });
    }
    for (const [i, n] of nodes.entries()) {
      const remote = nodes[1 - i]!;
      const { nl, link } = devices[i]!;
      await setNeighbour(nl, { index: link.index, ip: remote.vtep, mac: remote.mac });
      await setFdbEntry(nl, { index: link.index, mac: remote.mac, dst: remote.public });
      await addRoute(nl, { dst: remote.subnet, gw: remote.vtep, index: link.index, onlink: true });
      expect(await listRoutes(nl, { family: 4, index: link.index })).toEqual([
        expect.objectContaining({ dst: remote.subnet, gw: remote.vtep, onlink: true }),
      ]);
      expect(n.ns.exec("ip", ["route", "show", remote.subnet])).toContain(`via ${remote.vtep} dev flannel.1 onlink`);
    }
    // From a's VTEP address to b's subnet: encapsulated to 192.168.77.2, answered the same way back.
    const ping = a.exec("ping", ["-c", "2", "-W", "2", "-I", "10.244.1.0", "10.244.2.0"]);
    expect(ping).toContain("2 received");
    // 1450 is flannel.1's MTU: a 1422-byte ICMP payload fills it exactly with DF set, one more does not fit.
    expect(a.exec("ping", ["-c", "1", "-W", "2", "-M", "do", "-s", "1422", "-I", "10.244.1.0", "10.244.2.0"])).toContain("1 received");
    expect(() => a.exec("ping", ["-c", "1", "-W", "2", "-M", "do", "-s", "1423", "-I", "10.244.1.0", "10.244.2.0"])).toThrow();
  });
});
