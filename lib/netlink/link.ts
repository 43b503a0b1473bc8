import { randomBytes } from "../node/builtins.js";
import { isKernelError, KernelError } from "../errors/kernel.js";
import { canonicalIp, formatIp, parseIp } from "../ip/ip.js";
import type { Netns } from "../netns/netns.js";
import {
  AF_BRIDGE,
  AF_UNSPEC,
  attr,
  cstring,
  decodeAttrList,
  decodeAttrs,
  encodeAttrs,
  nested,
  NLM_F_CREATE,
  NLM_F_EXCL,
  NETLINK_ROUTE,
  readCString,
  requestOnce,
  RTM,
  RTNLGRP_LINK,
  u16,
  u32,
  u8,
  type Attr,
  type Rtnl,
} from "./rtnl.js";

// include/uapi/linux/if_link.h, if_bridge.h, veth.h
const IFLA_ADDRESS = 1;
const IFLA_IFNAME = 3;
const IFLA_MTU = 4;
const IFLA_LINK = 5;
const IFLA_MASTER = 10;
const IFLA_PROTINFO = 12;
const IFLA_OPERSTATE = 16;
const IFLA_LINKINFO = 18;
const IFLA_AF_SPEC = 26;
const IFLA_NET_NS_FD = 28;
const IFLA_EXT_MASK = 29;
const IFLA_INFO_KIND = 1;
const IFLA_INFO_DATA = 2;
const IFLA_INFO_SLAVE_KIND = 4;
const IFLA_INFO_SLAVE_DATA = 5;
const IFLA_BR_VLAN_FILTERING = 7;
const IFLA_BRPORT_MODE = 4;
const IFLA_BRPORT_ISOLATED = 33;
const IFLA_BRIDGE_FLAGS = 0;
const IFLA_BRIDGE_VLAN_INFO = 2;
const BRIDGE_FLAGS_MASTER = 1;
const BRIDGE_VLAN_INFO_PVID = 2;
const BRIDGE_VLAN_INFO_UNTAGGED = 4;
const RTEXT_FILTER_BRVLAN = 2;
const VETH_INFO_PEER = 1;
const IFLA_VXLAN_ID = 1;
const IFLA_VXLAN_LINK = 3;
const IFLA_VXLAN_LOCAL = 4;
const IFLA_VXLAN_LEARNING = 7;
const IFLA_VXLAN_PORT = 15;
const IFLA_VXLAN_LOCAL6 = 17;
const IFLA_VXLAN_GBP = 23;
const IFF_UP = 0x1;
const IFF_PROMISC = 0x100;
const OPER_STATES = ["unknown", "notpresent", "down", "lowerlayerdown", "testing", "dormant", "up"];

export interface Link {
  index: number;
  name: string;
  /** "aa:bb:cc:dd:ee:ff", as Go's net.HardwareAddr prints it. */
  mac: string;
  mtu: number;
  /** IFF_UP: administratively up. */
  up: boolean;
  /** RFC 2863 operational state ("up", "down", "lowerlayerdown", ...). */
  operState: string;
  promisc: boolean;
  /** ifindex of the bridge this link is a port of. */
  master?: number;
  /** "bridge", "veth", ... (IFLA_INFO_KIND); undefined for physical devices. */
  kind?: string;
  /** For a veth: the peer's ifindex (in the peer's namespace). */
  peerIndex?: number;
  /** For a bridge port: its hairpin and isolated flags. */
  hairpin?: boolean;
  isolated?: boolean;
  /** For a bridge. */
  vlanFiltering?: boolean;
  /** For a vxlan device. */
  vxlan?: VxlanParameters;
}

/** What makes a vxlan device the one asked for (flannel's VTEP: flannel.<VNI>). */
export interface VxlanParameters {
  vni: number;
  /** UDP destination port (flannel: 8472; the kernel's default 0 means 8472's IANA successor 4789). */
  port: number;
  /** Source address of the encapsulated packets: the node's public address. */
  local?: string;
  /** ifindex of the underlay device. */
  dev?: number;
  /** Learning remote MACs from received packets: off for flannel, which programs fdb entries. */
  learning: boolean;
  /** VXLAN Group Based Policy extension. */
  gbp: boolean;
}

function ifinfomsg(family: number, index: number, flags = 0, change = 0): Buffer {
  const b = Buffer.alloc(16);
  b.writeUInt8(family, 0);
  b.writeInt32LE(index, 4);
  b.writeUInt32LE(flags >>> 0, 8);
  b.writeUInt32LE(change >>> 0, 12);
  return b;
}

function message(family: number, index: number, attrs: readonly Attr[], flags = 0, change = 0): Buffer {
  return Buffer.concat([ifinfomsg(family, index, flags, change), encodeAttrs(attrs)]);
}

export function formatMac(b: Buffer | undefined): string {
  if (!b) return "";
  return [...b].map((x) => x.toString(16).padStart(2, "0")).join(":");
}

export function parseMac(mac: string): Buffer {
  if (!/^([0-9a-fA-F]{2}:){5}[0-9a-fA-F]{2}$/.test(mac)) throw new Error(`invalid MAC address ${JSON.stringify(mac)}`);
  return Buffer.from(mac.split(":").map((x) => parseInt(x, 16)));
}

export function parseLink(data: Buffer): Link {
  const index = data.readInt32LE(4);
  const flags = data.readUInt32LE(8);
  const attrs = decodeAttrs(data.subarray(16));
  const operState = attrs.get(IFLA_OPERSTATE)?.readUInt8(0) ?? 0;
  const link: Link = {
    index,
    name: readCString(attrs.get(IFLA_IFNAME)) ?? "",
    mac: formatMac(attrs.get(IFLA_ADDRESS)),
    mtu: attrs.get(IFLA_MTU)?.readUInt32LE(0) ?? 0,
    up: (flags & IFF_UP) !== 0,
    operState: OPER_STATES[operState] ?? String(operState),
    promisc: (flags & IFF_PROMISC) !== 0,
  };
  const master = attrs.get(IFLA_MASTER)?.readUInt32LE(0);
  if (master) link.master = master;
  const peer = attrs.get(IFLA_LINK)?.readUInt32LE(0);
  const info = attrs.get(IFLA_LINKINFO);
  if (info) {
    const i = decodeAttrs(info);
    link.kind = readCString(i.get(IFLA_INFO_KIND));
    if (link.kind === "veth" && peer) link.peerIndex = peer;
    if (link.kind === "bridge") {
      const data = i.get(IFLA_INFO_DATA);
      const filtering = data && decodeAttrs(data).get(IFLA_BR_VLAN_FILTERING);
      link.vlanFiltering = filtering ? filtering.readUInt8(0) !== 0 : false;
    }
    if (link.kind === "vxlan") link.vxlan = parseVxlanData(i.get(IFLA_INFO_DATA));
    if (readCString(i.get(IFLA_INFO_SLAVE_KIND)) === "bridge") {
      const slave = decodeAttrs(i.get(IFLA_INFO_SLAVE_DATA) ?? Buffer.alloc(0));
      link.hairpin = (slave.get(IFLA_BRPORT_MODE)?.readUInt8(0) ?? 0) !== 0;
      link.isolated = (slave.get(IFLA_BRPORT_ISOLATED)?.readUInt8(0) ?? 0) !== 0;
    }
  }
  return link;
}

export const isOperUp = (link: Link) => link.operState === "up";

function parseVxlanData(data: Buffer | undefined): VxlanParameters {
  const a = decodeAttrs(data ?? Buffer.alloc(0));
  const local4 = a.get(IFLA_VXLAN_LOCAL);
  const local6 = a.get(IFLA_VXLAN_LOCAL6);
  const local =
    local4 && local4.length === 4
      ? formatIp({ family: 4, bytes: new Uint8Array(local4) })
      : local6 && local6.length === 16
        ? formatIp({ family: 6, bytes: new Uint8Array(local6) })
        : undefined;
  const dev = a.get(IFLA_VXLAN_LINK)?.readUInt32LE(0);
  return {
    vni: a.get(IFLA_VXLAN_ID)?.readUInt32LE(0) ?? 0,
    port: a.get(IFLA_VXLAN_PORT)?.readUInt16BE(0) ?? 0,
    ...(local === undefined ? {} : { local }),
    ...(dev ? { dev } : {}),
    learning: (a.get(IFLA_VXLAN_LEARNING)?.readUInt8(0) ?? 1) !== 0,
    gbp: a.has(IFLA_VXLAN_GBP),
  };
}

/** The link called name, or undefined when there is none. */
export async function linkByName(nl: Rtnl, name: string): Promise<Link | undefined> {
  try {
    return parseLink(await nl.get(RTM.GETLINK, message(AF_UNSPEC, 0, [attr(IFLA_IFNAME, cstring(name))]), `get link ${name}`));
  } catch (err) {
    if (isKernelError(err, "ENODEV")) return undefined;
    throw err;
  }
}

export async function linkByIndex(nl: Rtnl, index: number): Promise<Link | undefined> {
  try {
    return parseLink(await nl.get(RTM.GETLINK, message(AF_UNSPEC, index, []), `get link ${index}`));
  } catch (err) {
    if (isKernelError(err, "ENODEV")) return undefined;
    throw err;
  }
}

export async function listLinks(nl: Rtnl): Promise<Link[]> {
  return (await nl.dump(RTM.GETLINK, message(AF_UNSPEC, 0, []), "list links")).map(parseLink);
}

export interface BridgeOptions {
  name: string;
  /** 0 or undefined: the kernel's default. */
  mtu?: number;
  promisc?: boolean;
  vlanFiltering?: boolean;
}

/**
 * Creates the bridge, or reuses the one of that name; a link of that name that is not a bridge is
 * an error. Brings it up, with the MTU (re-applied when it drifted) and promiscuous mode asked for.
 * A bridge created here has its MAC pinned: otherwise it follows its lowest-numbered port and
 * changes as pods come and go.
 */
export async function ensureBridge(nl: Rtnl, options: BridgeOptions): Promise<{ link: Link; created: boolean }> {
  const { name } = options;
  const attrs: Attr[] = [attr(IFLA_IFNAME, cstring(name))];
  if (options.mtu) attrs.push(attr(IFLA_MTU, u32(options.mtu)));
  const data: Attr[] = options.vlanFiltering ? [attr(IFLA_BR_VLAN_FILTERING, u8(1))] : [];
  attrs.push(nested(IFLA_LINKINFO, [attr(IFLA_INFO_KIND, cstring("bridge")), ...(data.length ? [nested(IFLA_INFO_DATA, data)] : [])]));
  let created = true;
  try {
    await nl.change(RTM.NEWLINK, message(AF_UNSPEC, 0, attrs, IFF_UP, IFF_UP), NLM_F_CREATE | NLM_F_EXCL, `add bridge ${name}`);
  } catch (err) {
    if (!isKernelError(err, "EEXIST")) throw err;
    created = false;
  }
  let link = await linkByName(nl, name);
  if (!link) throw new KernelError("ENODEV", 19, `bridge ${name} vanished after it was created`);
  if (link.kind !== "bridge") throw new Error(`${JSON.stringify(name)} already exists but is not a bridge`);
  if (created) {
    await setLinkMac(nl, link.index, link.mac);
  } else {
    if (options.vlanFiltering && !link.vlanFiltering) await setBridgeVlanFiltering(nl, link, true);
    if (options.mtu && link.mtu !== options.mtu) await setLinkMtu(nl, link.index, options.mtu);
    if (!link.up) await setLinkUp(nl, link.index);
  }
  if (options.promisc && !link.promisc) await setPromisc(nl, link.index, true);
  link = (await linkByIndex(nl, link.index)) ?? link;
  return { link, created };
}

export async function setBridgeVlanFiltering(nl: Rtnl, bridge: Link, on: boolean): Promise<void> {
  const attrs = [
    nested(IFLA_LINKINFO, [attr(IFLA_INFO_KIND, cstring("bridge")), nested(IFLA_INFO_DATA, [attr(IFLA_BR_VLAN_FILTERING, u8(on ? 1 : 0))])]),
  ];
  await nl.change(RTM.NEWLINK, message(AF_UNSPEC, bridge.index, attrs), 0, `set vlan_filtering on bridge ${bridge.name}`);
}

export interface VxlanOptions extends Partial<Pick<VxlanParameters, "local" | "dev" | "learning" | "gbp">> {
  name: string;
  vni: number;
  port: number;
  mtu?: number;
  /** The device's MAC when it is created; an existing device's is set to it when it differs. */
  mac?: string;
}

function vxlanData(o: VxlanOptions): Attr[] {
  const data: Attr[] = [attr(IFLA_VXLAN_ID, u32(o.vni))];
  if (o.dev) data.push(attr(IFLA_VXLAN_LINK, u32(o.dev)));
  if (o.local !== undefined) {
    const ip = parseIp(o.local);
    if (!ip) throw new Error(`vxlan ${o.name}: local address ${JSON.stringify(o.local)} is not an IP address`);
    data.push(attr(ip.family === 4 ? IFLA_VXLAN_LOCAL : IFLA_VXLAN_LOCAL6, Buffer.from(ip.bytes)));
  }
  data.push(attr(IFLA_VXLAN_LEARNING, u8(o.learning ? 1 : 0)));
  const port = Buffer.alloc(2);
  port.writeUInt16BE(o.port);
  data.push(attr(IFLA_VXLAN_PORT, port));
  if (o.gbp) data.push(attr(IFLA_VXLAN_GBP, Buffer.alloc(0)));
  return data;
}

function sameVxlan(have: VxlanParameters | undefined, want: VxlanOptions): boolean {
  if (!have) return false;
  const local = want.local === undefined ? undefined : canonicalIp(want.local);
  return (
    have.vni === want.vni &&
    have.port === want.port &&
    have.local === local &&
    (have.dev ?? 0) === (want.dev ?? 0) &&
    have.learning === (want.learning ?? false) &&
    have.gbp === (want.gbp ?? false)
  );
}

/**
 * The vxlan device `name` with these parameters, up: created when missing; an existing one with
 * other parameters (or a link of that name of another kind) is deleted and created again, as
 * flanneld does, since the kernel changes none of them in place. The MTU and MAC asked for are
 * applied to a kept device when they drifted.
 */
export async function ensureVxlan(nl: Rtnl, options: VxlanOptions): Promise<{ link: Link; created: boolean }> {
  const { name } = options;
  let existing = await linkByName(nl, name);
  if (existing && !sameVxlan(existing.vxlan, options)) {
    await delLink(nl, existing.index);
    existing = undefined;
  }
  if (!existing) {
    const attrs: Attr[] = [attr(IFLA_IFNAME, cstring(name))];
    if (options.mtu) attrs.push(attr(IFLA_MTU, u32(options.mtu)));
    if (options.mac) attrs.push(attr(IFLA_ADDRESS, parseMac(options.mac)));
    attrs.push(nested(IFLA_LINKINFO, [attr(IFLA_INFO_KIND, cstring("vxlan")), nested(IFLA_INFO_DATA, vxlanData(options))]));
    await nl.change(RTM.NEWLINK, message(AF_UNSPEC, 0, attrs, IFF_UP, IFF_UP), NLM_F_CREATE | NLM_F_EXCL, `add vxlan ${name}`);
    const link = await linkByName(nl, name);
    if (!link) throw new KernelError("ENODEV", 19, `vxlan ${name} vanished after it was created`);
    return { link, created: true };
  }
  if (options.mtu && existing.mtu !== options.mtu) await setLinkMtu(nl, existing.index, options.mtu);
  if (options.mac && existing.mac !== options.mac.toLowerCase()) await setLinkMac(nl, existing.index, options.mac);
  if (!existing.up) await setLinkUp(nl, existing.index);
  return { link: (await linkByIndex(nl, existing.index)) ?? existing, created: false };
}

export interface VethOptions {
  /** The end that stays in the socket's namespace. */
  name: string;
  /** The other end, created directly in peerNetns when given. */
  peerName: string;
  mtu?: number;
  peerMac?: string;
  peerNetns?: Netns;
  /** Enslave the near end to this bridge (ifindex) as it is created. */
  master?: number;
}

/** Creates a veth pair in one request, so no half of it is ever visible alone. */
export async function createVethPair(nl: Rtnl, options: VethOptions): Promise<void> {
  const peer: Attr[] = [attr(IFLA_IFNAME, cstring(options.peerName))];
  if (options.mtu) peer.push(attr(IFLA_MTU, u32(options.mtu)));
  if (options.peerMac) peer.push(attr(IFLA_ADDRESS, parseMac(options.peerMac)));
  if (options.peerNetns) peer.push(attr(IFLA_NET_NS_FD, u32(options.peerNetns.fileDescriptor())));
  const attrs: Attr[] = [attr(IFLA_IFNAME, cstring(options.name))];
  if (options.mtu) attrs.push(attr(IFLA_MTU, u32(options.mtu)));
  if (options.master) attrs.push(attr(IFLA_MASTER, u32(options.master)));
  attrs.push(
    nested(IFLA_LINKINFO, [attr(IFLA_INFO_KIND, cstring("veth")), nested(IFLA_INFO_DATA, [attr(VETH_INFO_PEER, message(AF_UNSPEC, 0, peer))])]),
  );
  await nl.change(RTM.NEWLINK, message(AF_UNSPEC, 0, attrs), NLM_F_CREATE | NLM_F_EXCL, `add veth pair ${options.name}/${options.peerName}`);
}

/** Moves a link into another namespace (its ifindex there may differ: look it up by name). */
export async function moveLinkToNetns(nl: Rtnl, index: number, netns: Netns): Promise<void> {
  await nl.change(
    RTM.NEWLINK,
    message(AF_UNSPEC, index, [attr(IFLA_NET_NS_FD, u32(netns.fileDescriptor()))]),
    0,
    `move link ${index} to ${netns.path}`,
  );
}

export async function setLinkMtu(nl: Rtnl, index: number, mtu: number): Promise<void> {
  await nl.change(RTM.NEWLINK, message(AF_UNSPEC, index, [attr(IFLA_MTU, u32(mtu))]), 0, `set mtu ${mtu} on link ${index}`);
}

export async function setLinkUp(nl: Rtnl, index: number): Promise<void> {
  await nl.change(RTM.NEWLINK, message(AF_UNSPEC, index, [], IFF_UP, IFF_UP), 0, `set link ${index} up`);
}

export async function setLinkDown(nl: Rtnl, index: number): Promise<void> {
  await nl.change(RTM.NEWLINK, message(AF_UNSPEC, index, [], 0, IFF_UP), 0, `set link ${index} down`);
}

export async function setPromisc(nl: Rtnl, index: number, on: boolean): Promise<void> {
  await nl.change(
    RTM.NEWLINK,
    message(AF_UNSPEC, index, [], on ? IFF_PROMISC : 0, IFF_PROMISC),
    0,
    `set promisc ${on ? "on" : "off"} on link ${index}`,
  );
}

export async function setLinkMac(nl: Rtnl, index: number, mac: string): Promise<void> {
  await nl.change(RTM.NEWLINK, message(AF_UNSPEC, index, [attr(IFLA_ADDRESS, parseMac(mac))]), 0, `set mac ${mac} on link ${index}`);
}

export async function setLinkMaster(nl: Rtnl, index: number, master: number): Promise<void> {
  await nl.change(RTM.NEWLINK, message(AF_UNSPEC, index, [attr(IFLA_MASTER, u32(master))]), 0, `attach link ${index} to bridge ${master}`);
}

/** Deletes a link; false when it was already gone. Deleting one end of a veth deletes both. */
export async function delLink(nl: Rtnl, index: number): Promise<boolean> {
  try {
    await nl.change(RTM.DELLINK, message(AF_UNSPEC, index, []), 0, `delete link ${index}`);
    return true;
  } catch (err) {
    if (isKernelError(err, "ENODEV")) return false;
    throw err;
  }
}

/**
 * Deletes the link named name in netns; false when there is none. Like every request, it runs off
 * the main thread: for a veth pair the kernel takes about 20 ms inside it, which the caller can
 * spend on other work.
 */
export async function delLinkByName(netns: Netns, name: string): Promise<boolean> {
  try {
    await requestOnce(netns, NETLINK_ROUTE, RTM.DELLINK, message(AF_UNSPEC, 0, [attr(IFLA_IFNAME, cstring(name))]), 0, `delete link ${name}`);
    return true;
  } catch (err) {
    if (isKernelError(err, "ENODEV")) return false;
    throw err;
  }
}

async function setBridgePortFlag(nl: Rtnl, index: number, flag: number, on: boolean, what: string): Promise<void> {
  await nl.change(
    RTM.SETLINK,
    message(AF_BRIDGE, index, [nested(IFLA_PROTINFO, [attr(flag, u8(on ? 1 : 0))])]),
    0,
    `set ${what} ${on ? "on" : "off"} on bridge port ${index}`,
  );
}

/** Hairpin: the bridge may send a frame back out of the port it came in on (pod -> own Service IP). */
export function setHairpin(nl: Rtnl, index: number, on: boolean): Promise<void> {
  return setBridgePortFlag(nl, index, IFLA_BRPORT_MODE, on, "hairpin");
}

/** Isolated ports cannot talk to each other, only to non-isolated ones (the bridge itself). */
export function setPortIsolated(nl: Rtnl, index: number, on: boolean): Promise<void> {
  return setBridgePortFlag(nl, index, IFLA_BRPORT_ISOLATED, on, "isolated");
}

export interface PortVlan {
  vid: number;
  pvid: boolean;
  untagged: boolean;
}

function vlanInfo(v: PortVlan): Buffer {
  return Buffer.concat([u16((v.pvid ? BRIDGE_VLAN_INFO_PVID : 0) | (v.untagged ? BRIDGE_VLAN_INFO_UNTAGGED : 0)), u16(v.vid)]);
}

export async function addPortVlan(nl: Rtnl, index: number, vlan: PortVlan): Promise<void> {
  await nl.change(
    RTM.SETLINK,
    message(AF_BRIDGE, index, [
      nested(IFLA_AF_SPEC, [attr(IFLA_BRIDGE_FLAGS, u16(BRIDGE_FLAGS_MASTER)), attr(IFLA_BRIDGE_VLAN_INFO, vlanInfo(vlan))]),
    ]),
    0,
    `add vlan ${vlan.vid} to bridge port ${index}`,
  );
}

export async function delPortVlan(nl: Rtnl, index: number, vid: number): Promise<void> {
  await nl.change(
    RTM.DELLINK,
    message(AF_BRIDGE, index, [
      nested(IFLA_AF_SPEC, [
        attr(IFLA_BRIDGE_FLAGS, u16(BRIDGE_FLAGS_MASTER)),
        attr(IFLA_BRIDGE_VLAN_INFO, vlanInfo({ vid, pvid: false, untagged: false })),
      ]),
    ]),
    0,
    `delete vlan ${vid} from bridge port ${index}`,
  );
}

/** The VLANs on a bridge port (empty when the bridge does not filter VLANs). */
export async function listPortVlans(nl: Rtnl, index: number): Promise<PortVlan[]> {
  const replies = await nl.dump(RTM.GETLINK, message(AF_BRIDGE, 0, [attr(IFLA_EXT_MASK, u32(RTEXT_FILTER_BRVLAN))]), "list bridge vlans");
  const out: PortVlan[] = [];
  for (const data of replies) {
    if (data.readInt32LE(4) !== index) continue;
    const spec = decodeAttrs(data.subarray(16)).get(IFLA_AF_SPEC);
    if (!spec) continue;
    for (const [type, value] of decodeAttrList(spec)) {
      if (type !== IFLA_BRIDGE_VLAN_INFO || value.length < 4) continue;
      const flags = value.readUInt16LE(0);
      out.push({ vid: value.readUInt16LE(2), pvid: (flags & BRIDGE_VLAN_INFO_PVID) !== 0, untagged: (flags & BRIDGE_VLAN_INFO_UNTAGGED) !== 0 });
    }
  }
  return out;
}

/** "veth" + 8 random hex digits, as the reference names host ends. */
export function randomVethName(): string {
  return `veth${randomBytes(4).toString("hex")}`;
}

/**
 * Waits until the link is operationally up: a new bridge port goes through the kernel's port states
 * asynchronously (plugins#463). Nearly always it is up at the first look; otherwise the kernel's
 * link notifications say when, within the reference's bound (0 + 50 + 500 + 1000 + 1000 ms).
 */
export async function waitOperUp(nl: Rtnl, index: number, budgetMs = 2550): Promise<Link> {
  const gone = () => new KernelError("ENODEV", 19, `link ${index} disappeared while waiting for it to come up`);
  let last = await linkByIndex(nl, index);
  if (!last) throw gone();
  if (isOperUp(last)) return last;
  let settle!: (link: Link) => void;
  let fail!: (err: Error) => void;
  const changed = new Promise<Link>((resolve, reject) => {
    settle = resolve;
    fail = reject;
  });
  changed.catch(() => undefined); // may settle before it is awaited
  const lookAgain = () =>
    linkByIndex(nl, index).then((link) => {
      if (!link) fail(gone());
      else if (isOperUp(link)) settle(link);
      else last = link;
    }, fail);
  const unsubscribe = nl.subscribe(
    RTNLGRP_LINK,
    (type, data) => {
      if (data.length < 16 || data.readInt32LE(4) !== index) return;
      if (type === RTM.DELLINK) fail(gone());
      if (type !== RTM.NEWLINK) return;
      last = parseLink(data);
      if (isOperUp(last)) settle(last);
    },
    () => void lookAgain(),
  );
  const timer = setTimeout(() => fail(new Error(`bridge port in error state: ${last?.operState} after ${budgetMs} ms`)), budgetMs);
  try {
    // Looked at again now that notifications come, so that a change just before joining is not missed.
    const now = await linkByIndex(nl, index);
    if (!now) throw gone();
    if (isOperUp(now)) return now;
    last = now;
    return await changed;
  } finally {
    clearTimeout(timer);
    unsubscribe();
  }
}
