import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it, vi } from "vitest";
import { addAddress, delAddress, listAddresses, prefixesOverlap } from "../../lib/netlink/addr.js";
import { isKernelError, KernelError } from "../../lib/errors/kernel.js";
import {
  createVethPair,
  delLink,
  delLinkByName,
  ensureBridge,
  linkByIndex,
  linkByName,
  listLinks,
  moveLinkToNetns,
  setHairpin,
  setLinkDown,
  setLinkMaster,
  setLinkMtu,
  setLinkUp,
  setPortIsolated,
  setPromisc,
  waitOperUp,
} from "../../lib/netlink/link.js";
import {
  addMasquerade,
  attachmentKey,
  gcMasquerade,
  iptablesChain,
  listMasquerade,
  missingMasquerade,
  nftAddScript,
  removeMasquerade,
} from "../../lib/netfilter/masquerade.js";
import { isOwnNetns, Netns, NetnsPathError } from "../../lib/netns/netns.js";
import { nftRuleRefs, parseNftTable } from "../../lib/netfilter/netfilter.js";
import { addRoute, delRoute, listRoutes } from "../../lib/netlink/route.js";
import {
  delFdbEntry,
  delNeighbour,
  listFdbEntries,
  listNeighbours,
  NUD_PERMANENT,
  NUD_STALE,
  setFdbEntry,
  setNeighbour,
} from "../../lib/netlink/neigh.js";
import { requestOnce, Rtnl, RTM, RTNLGRP_LINK, withRtnl } from "../../lib/netlink/rtnl.js";
import { readSysctl, writeSysctl } from "../../lib/sysctl/sysctl.js";
import { netnsPool, ownNetnsInode, uniqueName, type TestNetns } from "../helpers/netns.js";

const pool = netnsPool();

/** sendto(2), which weft's addon sends netlink requests with, by architecture. */
const SENDTO = { x64: "44", arm64: "206" }[process.arch as string];

/** True when a thread of this process other than the main one is inside sendto(2). */
function anotherThreadInSendto(): boolean {
  for (const tid of readdirSync("/proc/self/task")) {
    if (Number(tid) === process.pid) continue;
    try {
      if (readFileSync(`/proc/self/task/${tid}/syscall`, "utf8").split(" ")[0] === SENDTO) return true;
    } catch {
      // the thread ended
    }
  }
  return false;
}

/** Runs work while turning the event loop, and counts the turns that saw another thread in sendto(2). */
async function whileLoopTurns<T>(work: () => Promise<T>): Promise<{ result: T; turnsSeeingAnotherThreadSend: number }> {
  let seen = 0;
  let running = true;
  const spin = () => {
    if (!running) return;
    if (anotherThreadInSendto()) seen++;
    setImmediate(spin);
  };
  setImmediate(spin);
  try {
    return { result: await work(), turnsSeeingAnotherThreadSend: seen };
  } finally {
    running = false;
  }
}
const opened: Array<{ close(): void }> = [];

afterEach(() => {
  for (const o of opened.splice(0)) o.close();
  pool.cleanup();
});

async function open(ns: TestNetns): Promise<{ netns: Netns; nl: Rtnl }> {
  const netns = Netns.open(ns.path);
  const nl = await Rtnl.open(netns);
  opened.push(nl, netns);
  return { netns, nl };
}

describe("namespaces", () => {
  it("refuse a missing path and a file that is not nsfs, and recognise the plugin's own namespace", () => {
    expect(() => Netns.open("/run/netns/weft-does-not-exist")).toThrow(expect.objectContaining({ reason: "missing" }));
    const dir = mkdtempSync(join(tmpdir(), "weft-netns-"));
    try {
      writeFileSync(join(dir, "stale"), "");
      expect(() => Netns.open(join(dir, "stale"))).toThrow(NetnsPathError);
      expect(() => Netns.open(join(dir, "stale"))).toThrow(/not a network namespace .*magic/);
    } finally {
      rmSync(dir, { recursive: true });
    }
    const own = Netns.open("/proc/self/ns/net");
    opened.push(own);
    expect(isOwnNetns(own)).toBe(true);
    const other = Netns.open(pool.create().path);
    opened.push(other);
    expect(isOwnNetns(other)).toBe(false);
  });

  it("refuse a namespace file of another kind when entering it", () => {
    const mnt = Netns.open("/proc/self/ns/uts");
    opened.push(mnt);
    const before = ownNetnsInode();
    expect(() => mnt.run(() => 1)).toThrow(expect.objectContaining({ reason: "not-netns" }));
    expect(ownNetnsInode()).toBe(before);
  });

  it("return the thread to the host namespace after run, even when the function throws", () => {
    const ns = pool.create();
    const netns = Netns.open(ns.path);
    opened.push(netns);
    const host = ownNetnsInode();
    const inside = netns.run(() => ownNetnsInode());
    expect(inside).not.toBe(host);
    expect(ownNetnsInode()).toBe(host);
    expect(() =>
      netns.run(() => {
        expect(ownNetnsInode()).toBe(inside);
        throw new Error("boom");
      }),
    ).toThrow("boom");
    expect(ownNetnsInode()).toBe(host);
    expect(() => netns.run(() => Promise.resolve(1))).toThrow(/synchronous/);
    expect(ownNetnsInode()).toBe(host);
  });

  it("keep a socket opened inside bound to that namespace after the thread returned", async () => {
    const ns = pool.create();
    ns.exec("ip", ["link", "add", "weftdummy0", "type", "bridge"]);
    const host = ownNetnsInode();
    const { nl } = await open(ns);
    expect(ownNetnsInode()).toBe(host);
    expect(await linkByName(nl, "weftdummy0")).toMatchObject({ name: "weftdummy0" });
    const other = (await open(pool.create())).nl;
    expect(await linkByName(other, "weftdummy0")).toBeUndefined();
    // A failing request from inside a namespace leaves the thread where it was too.
    await expect(setLinkMtu(nl, 999_999, 1400)).rejects.toBeInstanceOf(KernelError);
    expect(ownNetnsInode()).toBe(host);
  });
});

describe("links", () => {
  it("ensureBridge creates a bridge up with the MTU, reuses it, and refuses a non-bridge of that name", async () => {
    const { nl } = await open(pool.create());
    const first = await ensureBridge(nl, { name: "br-test", mtu: 1450 });
    expect(first.created).toBe(true);
    expect(first.link).toMatchObject({ name: "br-test", kind: "bridge", mtu: 1450, up: true, promisc: false });
    await setLinkMtu(nl, first.link.index, 1500);
    const again = await ensureBridge(nl, { name: "br-test", mtu: 1450, promisc: true });
    expect(again.created).toBe(false);
    expect(again.link).toMatchObject({ index: first.link.index, mtu: 1450, promisc: true, mac: first.link.mac });
    await setPromisc(nl, first.link.index, false);
    expect((await linkByIndex(nl, first.link.index))?.promisc).toBe(false);

    await createVethPair(nl, { name: "notabridge", peerName: "notabridge-p" });
    await expect(ensureBridge(nl, { name: "notabridge" })).rejects.toThrow('"notabridge" already exists but is not a bridge');
  });

  it("createVethPair puts the peer straight into another namespace with its MTU and MAC, enslaved near end", async () => {
    const node = await open(pool.create());
    const pod = await open(pool.create());
    const { link: br } = await ensureBridge(node.nl, { name: "br0", mtu: 1450 });
    const host = uniqueName("veth", 12);
    await createVethPair(node.nl, { name: host, peerName: "eth0", mtu: 1450, peerMac: "0a:58:0a:f4:01:02", peerNetns: pod.netns, master: br.index });
    const near = await linkByName(node.nl, host);
    const far = await linkByName(pod.nl, "eth0");
    expect(near).toMatchObject({ kind: "veth", mtu: 1450, master: br.index, peerIndex: far?.index });
    expect(far).toMatchObject({ kind: "veth", mtu: 1450, mac: "0a:58:0a:f4:01:02", peerIndex: near?.index });
    expect(await linkByName(node.nl, "eth0")).toBeUndefined();

    await expect(createVethPair(node.nl, { name: uniqueName("veth", 12), peerName: "eth0", peerNetns: pod.netns })).rejects.toSatisfy((err) =>
      isKernelError(err, "EEXIST"),
    );
  });

  it("moveLinkToNetns, setLinkUp/Down, setLinkMtu, setLinkMaster, hairpin and isolation, delLink", async () => {
    const node = await open(pool.create());
    const pod = await open(pool.create());
    const { link: br } = await ensureBridge(node.nl, { name: "br1" });
    await createVethPair(node.nl, { name: "vh", peerName: "vc" });
    const vc = await linkByName(node.nl, "vc");
    await moveLinkToNetns(node.nl, vc!.index, pod.netns);
    expect(await linkByName(node.nl, "vc")).toBeUndefined();
    const moved = await linkByName(pod.nl, "vc");
    expect(moved).toBeDefined();

    const vh = (await linkByName(node.nl, "vh"))!;
    await setLinkMtu(node.nl, vh.index, 1400);
    await setLinkMaster(node.nl, vh.index, br.index);
    await setLinkUp(node.nl, vh.index);
    await setLinkUp(pod.nl, moved!.index);
    await setHairpin(node.nl, vh.index, true);
    await setPortIsolated(node.nl, vh.index, true);
    let port = (await linkByIndex(node.nl, vh.index))!;
    expect(port).toMatchObject({ mtu: 1400, master: br.index, up: true, hairpin: true, isolated: true });
    expect((await waitOperUp(node.nl, vh.index)).operState).toBe("up");
    await setHairpin(node.nl, vh.index, false);
    await setLinkDown(node.nl, vh.index);
    port = (await linkByIndex(node.nl, vh.index))!;
    expect(port).toMatchObject({ hairpin: false, isolated: true, up: false });

    expect(await delLink(pod.nl, moved!.index)).toBe(true);
    expect(await linkByName(node.nl, "vh")).toBeUndefined();
    expect(await delLink(pod.nl, moved!.index)).toBe(false);
    expect((await listLinks(node.nl)).map((l) => l.name).sort()).toEqual(["br1", "lo"]);
  });

  it("delLinkByName deletes a veth pair from inside the pod's namespace while the event loop keeps turning", async () => {
    const node = await open(pool.create());
    const pod = await open(pool.create());
    await createVethPair(node.nl, { name: "vh", peerName: "eth0", peerNetns: pod.netns });
    const deleted = await whileLoopTurns(() => delLinkByName(pod.netns, "eth0"));
    // The loop turned while another thread was in the kernel deleting the link: the request does not
    // hold the main thread for the unregistration (counted by what was seen, not by time).
    expect(deleted.result).toBe(true);
    expect(deleted.turnsSeeingAnotherThreadSend).toBeGreaterThan(0);
    expect(await linkByName(node.nl, "vh")).toBeUndefined();
    expect(await linkByName(pod.nl, "eth0")).toBeUndefined();
    expect(await delLinkByName(pod.netns, "eth0")).toBe(false);
  });

  it("(control) a deletion sent by another process is never counted as one of this process's threads sending", async () => {
    const ns = pool.create();
    const node = await open(ns);
    await createVethPair(node.nl, { name: "vh", peerName: "vp" });
    const deleted = await whileLoopTurns(
      () => new Promise<number | null>((resolve) => spawn("ip", ["-n", ns.name, "link", "del", "vh"], { stdio: "ignore" }).on("exit", resolve)),
    );
    expect(deleted.result).toBe(0);
    expect(await linkByName(node.nl, "vh")).toBeUndefined();
    expect(deleted.turnsSeeingAnotherThreadSend).toBe(0);
  });

  it("waitOperUp hears from the kernel when a port comes up, times out naming its state, and sees it vanish", async () => {
    const node = await open(pool.create());
    await createVethPair(node.nl, { name: "wa", peerName: "wb" });
    const wa = (await linkByName(node.nl, "wa"))!;
    const wb = (await linkByName(node.nl, "wb"))!;
    await setLinkUp(node.nl, wa.index);
    // Without a carrier (its peer is down) wa stays lowerlayerdown.
    await expect(waitOperUp(node.nl, wa.index, 200)).rejects.toThrow(/error state: lowerlayerdown after 200 ms/);

    const asked = vi.spyOn(node.nl, "get");
    const waiting = waitOperUp(node.nl, wa.index);
    setTimeout(() => void setLinkUp(node.nl, wb.index), 300);
    expect(await waiting).toMatchObject({ index: wa.index, operState: "up" });
    // A first look and one after joining the link notifications; polling would have asked ~8 times.
    expect(asked.mock.calls.length).toBeLessThanOrEqual(2);
    asked.mockRestore();

    await createVethPair(node.nl, { name: "wc", peerName: "wd" });
    const wc = (await linkByName(node.nl, "wc"))!;
    await setLinkUp(node.nl, wc.index);
    const vanishing = waitOperUp(node.nl, wc.index);
    setTimeout(() => void delLink(node.nl, wc.index), 100);
    await expect(vanishing).rejects.toSatisfy((err) => isKernelError(err, "ENODEV"));
  });

  it("subscribe lives through a flood of notifications that overflows its socket, and says some were lost", async () => {
    const ns = pool.create();
    const { nl } = await open(ns);
    let seen = 0;
    let lost = 0;
    const unsubscribe = nl.subscribe(
      RTNLGRP_LINK,
      () => seen++,
      () => lost++,
    );
    try {
      // ip(8) runs while this process's event loop is blocked in spawnSync, so nothing reads the
      // notifications of 600 new links meanwhile.
      const batch = Array.from({ length: 300 }, (_, i) => `link add f${i} type veth peer name g${i}`).join("\n");
      expect(spawnSync("ip", ["-n", ns.name, "-batch", "-"], { input: `${batch}\n` }).status).toBe(0);
      await new Promise((resolve) => setTimeout(resolve, 200));
      expect(lost).toBeGreaterThan(0);
      expect(seen).toBeGreaterThan(0);
      expect(await listLinks(nl)).toHaveLength(601);
    } finally {
      unsubscribe();
    }
  });

  it("requestOnce answers a GET, types the kernel's refusal, and dumps", async () => {
    const pod = await open(pool.create());
    const lo = Buffer.alloc(16);
    lo.writeInt32LE(1, 4); // struct ifinfomsg: family 0, ifindex 1 (lo)
    const [reply] = await requestOnce(pod.netns, 0, RTM.GETLINK, lo, 0, "get lo");
    expect(reply!.readInt32LE(4)).toBe(1);
    const missing = Buffer.alloc(16);
    missing.writeInt32LE(99999, 4);
    await expect(requestOnce(pod.netns, 0, RTM.GETLINK, missing, 0, "get link 99999")).rejects.toSatisfy(
      (err) => isKernelError(err, "ENODEV") && /get link 99999/.test((err as Error).message),
    );
    await createVethPair(pod.nl, { name: "va", peerName: "vb" });
    const all = await requestOnce(pod.netns, 0, RTM.GETLINK, Buffer.alloc(16), 0x300, "dump links");
    expect(all.map((data) => data.readInt32LE(4)).sort()).toEqual((await listLinks(pod.nl)).map((l) => l.index).sort());
  });
});

describe("addresses and routes", () => {
  it("addAddress adds v4 with broadcast and v6 without DAD, typed EEXIST, listAddresses and delAddress", async () => {
    const ns = pool.create();
    const { nl, netns } = await open(ns);
    await createVethPair(nl, { name: "a0", peerName: "a1" });
    const a0 = (await linkByName(nl, "a0"))!;
    writeSysctl("net/ipv6/conf/a0/accept_dad", "1", netns);
    await setLinkUp(nl, a0.index);
    await setLinkUp(nl, (await linkByName(nl, "a1"))!.index);
    await addAddress(nl, a0.index, "10.9.0.2/24");
    await addAddress(nl, a0.index, "fd09::2/64", { noDad: true });
    await addAddress(nl, a0.index, "fd0a::2/64");
    await expect(addAddress(nl, a0.index, "10.9.0.2/24")).rejects.toSatisfy((e) => isKernelError(e, "EEXIST"));

    const addrs = await listAddresses(nl, { index: a0.index });
    expect(addrs.find((a) => a.cidr === "10.9.0.2/24")).toMatchObject({ family: 4, scope: "global", tentative: false });
    expect(addrs.find((a) => a.cidr === "fd09::2/64")).toMatchObject({ family: 6, tentative: false });
    // With DAD on, a fresh v6 address is tentative: it cannot be used yet.
    expect(addrs.find((a) => a.cidr === "fd0a::2/64")?.tentative).toBe(true);
    const brd = ns.ipJson<Array<{ addr_info: Array<{ local: string; broadcast?: string }> }>>("addr", "show", "dev", "a0");
    expect(brd[0]!.addr_info.find((a) => a.local === "10.9.0.2")?.broadcast).toBe("10.9.0.255");

    expect(await listAddresses(nl, { index: a0.index, family: 4 })).toHaveLength(1);
    expect(await delAddress(nl, a0.index, "10.9.0.2/24")).toBe(true);
    expect(await delAddress(nl, a0.index, "10.9.0.2/24")).toBe(false);
  });

  it("addRoute with and without a gateway, listRoutes, typed EEXIST, delRoute", async () => {
    const { nl } = await open(pool.create());
    await createVethPair(nl, { name: "r0", peerName: "r1" });
    const r0 = (await linkByName(nl, "r0"))!;
    await setLinkUp(nl, r0.index);
    await setLinkUp(nl, (await linkByName(nl, "r1"))!.index);
    await addAddress(nl, r0.index, "10.8.0.2/24");
    await addAddress(nl, r0.index, "fd08::2/64", { noDad: true });
    await addRoute(nl, { dst: "10.244.0.0/16", gw: "10.8.0.1", index: r0.index });
    await addRoute(nl, { dst: "0.0.0.0/0", gw: "10.8.0.1", index: r0.index });
    await addRoute(nl, { dst: "192.168.7.0/24", index: r0.index, priority: 7 });
    await addRoute(nl, { dst: "fd00:10::/56", gw: "fd08::1", index: r0.index });
    await expect(addRoute(nl, { dst: "10.244.0.0/16", gw: "10.8.0.1", index: r0.index })).rejects.toSatisfy((e) => isKernelError(e, "EEXIST"));

    const v4 = await listRoutes(nl, { family: 4, index: r0.index });
    expect(v4).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ dst: "10.244.0.0/16", gw: "10.8.0.1" }),
        expect.objectContaining({ dst: "0.0.0.0/0", gw: "10.8.0.1" }),
        expect.objectContaining({ dst: "192.168.7.0/24", priority: 7, scope: 253 }),
        expect.objectContaining({ dst: "10.8.0.0/24" }),
      ]),
    );
    expect((await listRoutes(nl, { family: 6, index: r0.index })).find((r) => r.dst === "fd00:10::/56")).toMatchObject({ gw: "fd08::1" });
    expect(await delRoute(nl, { dst: "10.244.0.0/16", gw: "10.8.0.1", index: r0.index })).toBe(true);
    expect(await delRoute(nl, { dst: "10.244.0.0/16", gw: "10.8.0.1", index: r0.index })).toBe(false);
  });

  it("prefixesOverlap compares networks", () => {
    expect(prefixesOverlap("fd00::1/64", "fd00::/48")).toBe(true);
    expect(prefixesOverlap("fd00:0:0:1::1/64", "fd00::1/64")).toBe(false);
    expect(prefixesOverlap("10.0.0.1/24", "10.0.1.1/24")).toBe(false);
  });
});

describe("neighbours and fdb entries", () => {
  /** vxlan devices, as a vxlan backend's flannel.1, in a namespace of their own. */
  async function vxlans() {
    const ns = pool.create();
    const { nl } = await open(ns);
    ns.exec("ip", ["link", "add", "vx0", "type", "vxlan", "id", "1", "dstport", "8472", "nolearning"]);
    ns.exec("ip", ["link", "add", "vx1", "type", "vxlan", "id", "2", "dstport", "8473", "nolearning"]);
    for (const name of ["vx0", "vx1"]) ns.exec("ip", ["link", "set", name, "up"]);
    return { ns, nl, vx0: (await linkByName(nl, "vx0"))!, vx1: (await linkByName(nl, "vx1"))! };
  }

  it("setNeighbour creates and replaces v4 and v6 entries, listNeighbours filters by link and family, delNeighbour", async () => {
    const { ns, nl, vx0, vx1 } = await vxlans();
    await setNeighbour(nl, { index: vx0.index, ip: "10.244.2.0", mac: "0a:58:0a:f4:02:00" });
    await setNeighbour(nl, { index: vx0.index, ip: "fd00:10:244:2::", mac: "0a:58:0a:f4:02:06" });
    await setNeighbour(nl, { index: vx1.index, ip: "10.244.3.0", mac: "0a:58:0a:f4:03:00", state: NUD_STALE });
    // A remote node's VTEP changed its MAC: the entry is replaced, not refused.
    await setNeighbour(nl, { index: vx0.index, ip: "10.244.2.0", mac: "0a:58:0a:f4:02:01" });

    // The kernel's own entries (IPv6 multicast, NUD_NOARP) are listed too.
    const permanent = (filter: Parameters<typeof listNeighbours>[1]) =>
      listNeighbours(nl, filter).then((all) => all.filter((n) => n.state === NUD_PERMANENT));
    const listed = await permanent({ index: vx0.index });
    expect(listed.sort((a, b) => a.family - b.family)).toEqual([
      { index: vx0.index, family: 4, ip: "10.244.2.0", mac: "0a:58:0a:f4:02:01", state: NUD_PERMANENT },
      { index: vx0.index, family: 6, ip: "fd00:10:244:2::", mac: "0a:58:0a:f4:02:06", state: NUD_PERMANENT },
    ]);
    expect(ns.ipJson<Array<{ dst: string; lladdr: string; state: string[] }>>("neigh", "show", "dev", "vx0")).toEqual(
      expect.arrayContaining([
        { dst: "10.244.2.0", lladdr: "0a:58:0a:f4:02:01", state: ["PERMANENT"] },
        { dst: "fd00:10:244:2::", lladdr: "0a:58:0a:f4:02:06", state: ["PERMANENT"] },
      ]),
    );
    expect(await permanent({ index: vx0.index, family: 6 })).toEqual([expect.objectContaining({ ip: "fd00:10:244:2::" })]);
    expect((await listNeighbours(nl, { index: vx0.index, family: 4 })).map((n) => n.ip)).toEqual(["10.244.2.0"]);
    expect(await listNeighbours(nl, { index: vx1.index, family: 4 })).toEqual([
      expect.objectContaining({ ip: "10.244.3.0", mac: "0a:58:0a:f4:03:00", state: NUD_STALE }),
    ]);

    expect(await delNeighbour(nl, { index: vx0.index, ip: "10.244.2.0" })).toBe(true);
    expect(await delNeighbour(nl, { index: vx0.index, ip: "10.244.2.0" })).toBe(false);
    expect(ns.ipJson<Array<{ dst: string }>>("neigh", "show", "dev", "vx0").map((n) => n.dst)).toEqual(["fd00:10:244:2::"]);
    await expect(setNeighbour(nl, { index: 99999, ip: "10.244.2.0", mac: "0a:58:0a:f4:02:00" })).rejects.toSatisfy((e) => isKernelError(e, "ENODEV"));
  });

  it("setFdbEntry points a MAC at a remote endpoint and replaces it, listFdbEntries by device, delFdbEntry", async () => {
    const { ns, nl, vx0, vx1 } = await vxlans();
    await setFdbEntry(nl, { index: vx0.index, mac: "0a:58:0a:f4:02:00", dst: "192.168.1.2" });
    await setFdbEntry(nl, { index: vx1.index, mac: "0a:58:0a:f4:03:00", dst: "192.168.1.3" });
    // The remote node moved to another address: one entry, pointing at the new one.
    await setFdbEntry(nl, { index: vx0.index, mac: "0a:58:0a:f4:02:00", dst: "192.168.1.4" });

    const onVx0 = (await listFdbEntries(nl, { index: vx0.index })).filter((e) => e.mac === "0a:58:0a:f4:02:00");
    expect(onVx0).toEqual([
      expect.objectContaining({ index: vx0.index, mac: "0a:58:0a:f4:02:00", dst: "192.168.1.4", state: NUD_PERMANENT, self: true }),
    ]);
    const byBridge = JSON.parse(ns.exec("bridge", ["-j", "fdb", "show", "dev", "vx0"])) as Array<{ mac: string; dst?: string; state: string }>;
    expect(byBridge.filter((e) => e.mac === "0a:58:0a:f4:02:00")).toEqual([expect.objectContaining({ dst: "192.168.1.4", state: "permanent" })]);
    expect((await listFdbEntries(nl, { index: vx1.index })).map((e) => [e.mac, e.dst])).toEqual([["0a:58:0a:f4:03:00", "192.168.1.3"]]);
    expect((await listFdbEntries(nl)).map((e) => e.index)).toEqual(expect.arrayContaining([vx0.index, vx1.index]));

    expect(await delFdbEntry(nl, { index: vx0.index, mac: "0a:58:0a:f4:02:00", dst: "192.168.1.4" })).toBe(true);
    expect(await delFdbEntry(nl, { index: vx0.index, mac: "0a:58:0a:f4:02:00", dst: "192.168.1.4" })).toBe(false);
    expect((await listFdbEntries(nl, { index: vx0.index })).filter((e) => e.mac === "0a:58:0a:f4:02:00")).toEqual([]);
    expect(await listFdbEntries(nl, { index: vx1.index })).toHaveLength(1);
  });
});

describe("sysctl", () => {
  it("writes /proc/sys/net inside a pod namespace without touching the host's", () => {
    const netns = Netns.open(pool.create().path);
    opened.push(netns);
    const hostValue = readSysctl("net/ipv4/conf/lo/arp_notify");
    const next = hostValue === "1" ? "0" : "1";
    writeSysctl("net/ipv4/conf/lo/arp_notify", next, netns);
    expect(readSysctl("net/ipv4/conf/lo/arp_notify", netns)).toBe(next);
    expect(readSysctl("net/ipv4/conf/lo/arp_notify")).toBe(hostValue);
  });
});

describe("masquerade", () => {
  function setup() {
    const ns = pool.create();
    const netns = Netns.open(ns.path);
    opened.push(netns);
    return { ns, ctx: { netns } };
  }
  const a = { network: "cbr0", containerId: "c1", ifName: "eth0" };
  const b = { network: "cbr0", containerId: "c2", ifName: "eth0" };
  const other = { network: "other", containerId: "c1", ifName: "eth0" };

  it("nftables: the Go plugin's table and comments; removes exactly one attachment's rules, without its addresses", async () => {
    const { ns, ctx } = setup();
    await addMasquerade(a, ["10.244.1.2/24", "fd00:10:244:1::2/64"], "nftables", ctx);
    await addMasquerade(b, ["10.244.1.3/24"], "nftables", ctx);
    await addMasquerade(other, ["10.99.0.2/24"], "nftables", ctx);
    // A repeated ADD replaces the attachment's rules rather than adding more.
    await addMasquerade(b, ["10.244.1.3/24"], "nftables", ctx);
    const ruleset = ns.exec("nft", ["list", "table", "inet", "cni_plugins_masquerade"]);
    expect(ruleset).toContain('ip saddr 10.244.1.2 ip daddr != 10.244.1.0/24 masquerade comment "cb6e746fae1a4d6c-');
    expect(ruleset).toContain("ip6 saddr fd00:10:244:1::2 ip6 daddr != fd00:10:244:1::/64 masquerade");
    expect(ruleset).toMatch(
      /chain postrouting \{\s+type nat hook postrouting priority srcnat; policy accept;\s+ip daddr 224\.0\.0\.0\/4 return\s+ip6 daddr ff00::\/8 return\s+goto masq_checks/,
    );
    expect(await listMasquerade("cbr0", ctx)).toHaveLength(3);
    expect(await missingMasquerade(b, ["10.244.1.3/24"], "nftables", ctx)).toEqual([]);

    expect(await removeMasquerade(a, ctx)).toBe(2);
    expect(await removeMasquerade(a, ctx)).toBe(0);
    const left = await listMasquerade("cbr0", ctx);
    expect(left).toHaveLength(1);
    expect(left[0]!.startsWith(attachmentKey(b))).toBe(true);
    expect(await listMasquerade("other", ctx)).toHaveLength(1);

    // GC keeps the valid attachments of its own network only.
    expect(await gcMasquerade("cbr0", [{ containerId: "c9", ifName: "eth0" }], ctx)).toBe(1);
    expect(await listMasquerade("cbr0", ctx)).toHaveLength(0);
    expect(await listMasquerade("other", ctx)).toHaveLength(1);
    expect(await missingMasquerade(b, ["10.244.1.3/24"], "nftables", ctx)).toEqual([expect.stringContaining("found 0")]);
  });

  it("iptables: the Go plugin's chain, rules and comments; DEL removes chain and jump; GC by network", async () => {
    const { ns, ctx } = setup();
    await addMasquerade(a, ["10.244.1.2/24"], "iptables", ctx);
    await addMasquerade(a, ["10.244.1.2/24"], "iptables", ctx);
    await addMasquerade(b, ["10.244.1.3/24"], "iptables", ctx);
    await addMasquerade(other, ["10.99.0.2/24"], "iptables", ctx);
    const chain = iptablesChain(a);
    const saved = ns.exec("iptables-save", ["-t", "nat"]);
    expect(saved).toContain(`-A POSTROUTING -s 10.244.1.2/32 -m comment --comment "name: \\"cbr0\\" id: \\"c1\\"" -j ${chain}`);
    expect(saved).toContain(`-A ${chain} -d 10.244.1.0/24 -m comment --comment "name: \\"cbr0\\" id: \\"c1\\"" -j ACCEPT`);
    expect(saved).toContain(`-A ${chain} ! -d 224.0.0.0/4 -m comment --comment "name: \\"cbr0\\" id: \\"c1\\"" -j MASQUERADE`);
    expect(saved.split("\n").filter((l) => l.includes(chain))).toHaveLength(4);
    expect(await missingMasquerade(a, ["10.244.1.2/24"], "iptables", ctx)).toEqual([]);

    expect(await removeMasquerade(a, ctx)).toBeGreaterThan(0);
    expect(ns.exec("iptables-save", ["-t", "nat"])).not.toContain(chain);
    expect(await removeMasquerade(a, ctx)).toBe(0);
    expect(await missingMasquerade(a, ["10.244.1.2/24"], "iptables", ctx)).toEqual([
      `iptables chain ${chain}`,
      expect.stringContaining("ACCEPT"),
      expect.stringContaining("MASQUERADE"),
      expect.stringContaining("POSTROUTING"),
    ]);

    expect(await gcMasquerade("cbr0", [{ containerId: "c9", ifName: "eth0" }], ctx)).toBeGreaterThan(0);
    const after = ns.exec("iptables-save", ["-t", "nat"]);
    expect(after).not.toContain(iptablesChain(b));
    expect(after).toContain(iptablesChain(other));
  });

  it("removes what an older weft made in its own table", async () => {
    const { ns, ctx } = setup();
    const oldKey = "weft 0a2b0e9e8c2a6a5b-8f3c1d2e4a5b6c7d";
    ns.exec("nft", ["-f", "-"], {
      input: [
        "add table inet weft_masquerade",
        "add chain inet weft_masquerade postrouting { type nat hook postrouting priority srcnat; }",
        `add rule inet weft_masquerade postrouting ip saddr 10.244.1.2 masquerade comment "${oldKey} net: x"`,
        "",
      ].join("\n"),
    });
    // The old key is sha256-based: compute it the way the old release did.
    const { sha256Hex } = await import("../../lib/node/hashes.js");
    const key = `weft ${sha256Hex(a.network).slice(0, 16)}-${sha256Hex(`${a.ifName}:${a.containerId}`).slice(0, 16)}`;
    ns.exec("nft", [
      "add",
      "rule",
      "inet",
      "weft_masquerade",
      "postrouting",
      "ip",
      "saddr",
      "10.244.1.2",
      "masquerade",
      "comment",
      `"${key} net: cbr0"`,
    ]);
    expect(await removeMasquerade(a, ctx)).toBe(1);
    const listing = ns.exec("nft", ["list", "table", "inet", "weft_masquerade"]);
    expect(listing).not.toContain(key);
    expect(listing).toContain(oldKey);
  });

  it("renders the comment as the Go plugin does, cut at 128 characters", () => {
    const script = nftAddScript({ network: "n".repeat(100), containerId: "c".repeat(64), ifName: "eth0" }, ["10.1.0.2/24"]);
    const comment = /masquerade comment "([^"]*)"/.exec(script)![1]!;
    expect(comment).toHaveLength(128);
    expect(comment).toMatch(/^[0-9a-f]{16}-[0-9a-f]{16}, net: n+$/);
  });
});

describe("nftables over nfnetlink", () => {
  it("lists a table's rules with their chains, handles and comments as nft does, and none of an absent table", async () => {
    const ns = pool.create();
    const netns = Netns.open(ns.path);
    opened.push(netns);
    expect(await nftRuleRefs("inet", "weft_test", netns)).toEqual([]);
    const long = "c".repeat(127);
    const dir = mkdtempSync(join(tmpdir(), "weft-nft-"));
    try {
      writeFileSync(
        join(dir, "rules.nft"),
        [
          "table inet weft_test {",
          '  chain a { type nat hook prerouting priority -100; tcp dport 8080 dnat ip to 10.1.0.2:80 comment "pod1"; }',
          `  chain b { udp dport 53 counter comment "${long}"; counter; tcp dport 22 accept comment "pod1"; }`,
          "}",
          "table inet weft_other {",
          '  chain c { counter comment "elsewhere"; }',
          "}",
          "",
        ].join("\n"),
      );
      ns.exec("nft", ["-f", join(dir, "rules.nft")]);
    } finally {
      rmSync(dir, { recursive: true });
    }
    const byNft = parseNftTable(ns.exec("nft", ["-j", "list", "table", "inet", "weft_test"])).rules.map(({ chain, handle, comment }) => ({
      chain,
      handle,
      comment,
    }));
    const byNetlink = await nftRuleRefs("inet", "weft_test", netns);
    expect(byNetlink).toEqual(byNft);
    expect(byNetlink!.map((r) => r.comment)).toEqual(["pod1", long, undefined, "pod1"]);
  });
});

describe("rtnetlink sockets", () => {
  it("answer requests made at once on one socket each with its own replies", async () => {
    const ns = pool.create();
    const { nl } = await open(ns);
    const names = Array.from({ length: 8 }, (_, i) => `q${i}`);
    for (const name of names) ns.exec("ip", ["link", "add", name, "type", "veth", "peer", "name", `${name}p`]);
    for (let round = 0; round < 20; round++) {
      const [dumped, dumpedAgain, ...each] = await Promise.all([listLinks(nl), listLinks(nl), ...names.map((name) => linkByName(nl, name))]);
      expect(each.map((l) => l?.name)).toEqual(names);
      expect(dumped).toHaveLength(17);
      expect(dumpedAgain).toHaveLength(17);
    }
  });

  it("close once the requests under way are answered, and refuse new ones", async () => {
    const { nl } = await open(pool.create());
    const asked = listLinks(nl);
    nl.close();
    expect((await asked).map((l) => l.name)).toEqual(["lo"]);
    await expect(linkByName(nl, "lo")).rejects.toThrow(/closed/);
  });

  it("close through withRtnl even when the body throws", async () => {
    const netns = Netns.open(pool.create().path);
    opened.push(netns);
    let socket: Rtnl | undefined;
    await expect(
      withRtnl(netns, async (nl) => {
        socket = nl;
        throw new Error("inside");
      }),
    ).rejects.toThrow("inside");
    await expect(listLinks(socket!)).rejects.toThrow(/closed/);
  });
});
