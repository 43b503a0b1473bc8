import { formatIp, parseIp, type IpFamily, type ParsedIp } from "../ip/ip.js";
import { isKernelError } from "../errors/kernel.js";
import { familyConstant } from "./addr.js";
import { formatMac, parseMac } from "./link.js";
import {
  AF_BRIDGE,
  AF_INET,
  AF_INET6,
  AF_UNSPEC,
  attr,
  decodeAttrs,
  encodeAttrs,
  NLM_F_CREATE,
  NLM_F_REPLACE,
  RTM,
  type Attr,
  type Rtnl,
} from "./rtnl.js";

// include/uapi/linux/neighbour.h
const NDA_DST = 1;
const NDA_LLADDR = 2;
const NDA_VLAN = 5;
const NDA_VNI = 7;
const NDA_MASTER = 9;
const NTF_SELF = 0x02;
export const NUD_STALE = 0x04;
export const NUD_PERMANENT = 0x80;

/**
 * Neighbours (the ARP and NDP tables: which link-layer address an IP address is at) and bridge
 * forwarding database entries (which port, or for a vxlan device which remote endpoint, a MAC
 * address is behind). A vxlan backend keeps one of each per remote node, as flannel's does: the
 * remote's gateway address at its VTEP's MAC, and that MAC at the remote's public address.
 */
export interface Neighbour {
  index: number;
  family: IpFamily;
  ip: string;
  /** Empty while unresolved. */
  mac: string;
  /** NUD_* bits. */
  state: number;
}

export interface FdbEntry {
  index: number;
  mac: string;
  /** For a vxlan device: the remote endpoint's address. */
  dst?: string;
  vlan?: number;
  vni?: number;
  /** The bridge the entry belongs to, for a port's entries. */
  master?: number;
  /** NUD_* bits. */
  state: number;
  /** Kept by the device itself (NTF_SELF), as a vxlan device's are, rather than by its bridge. */
  self: boolean;
}

/** struct ndmsg: family, padding, ifindex, state, flags, type. */
function ndmsg(family: number, index: number, state = 0, flags = 0): Buffer {
  const b = Buffer.alloc(12);
  b.writeUInt8(family, 0);
  b.writeInt32LE(index, 4);
  b.writeUInt16LE(state, 8);
  b.writeUInt8(flags, 10);
  return b;
}

function mustParseIp(ip: string): ParsedIp {
  const parsed = parseIp(ip);
  if (!parsed) throw new Error(`invalid IP address ${JSON.stringify(ip)}`);
  return parsed;
}

function ipOf(family: IpFamily, bytes: Buffer): string {
  return formatIp({ family, bytes: new Uint8Array(bytes) });
}

function familyOf(bytes: Buffer): IpFamily | undefined {
  return bytes.length === 4 ? 4 : bytes.length === 16 ? 6 : undefined;
}

function message(family: number, index: number, attrs: readonly Attr[], state = 0, flags = 0): Buffer {
  return Buffer.concat([ndmsg(family, index, state, flags), encodeAttrs(attrs)]);
}

/** Creates or replaces the neighbour ip at mac on the link, permanent unless state says otherwise (ip neigh replace). */
export async function setNeighbour(nl: Rtnl, spec: { index: number; ip: string; mac: string; state?: number }): Promise<void> {
  const ip = mustParseIp(spec.ip);
  await nl.change(
    RTM.NEWNEIGH,
    message(
      familyConstant(ip.family),
      spec.index,
      [attr(NDA_DST, Buffer.from(ip.bytes)), attr(NDA_LLADDR, parseMac(spec.mac))],
      spec.state ?? NUD_PERMANENT,
    ),
    NLM_F_CREATE | NLM_F_REPLACE,
    `set neighbour ${spec.ip} at ${spec.mac} on link ${spec.index}`,
  );
}

/** Deletes the neighbour ip on the link; false when there was none. */
export async function delNeighbour(nl: Rtnl, spec: { index: number; ip: string }): Promise<boolean> {
  const ip = mustParseIp(spec.ip);
  try {
    await nl.change(
      RTM.DELNEIGH,
      message(familyConstant(ip.family), spec.index, [attr(NDA_DST, Buffer.from(ip.bytes))]),
      0,
      `delete neighbour ${spec.ip} on link ${spec.index}`,
    );
    return true;
  } catch (err) {
    if (isKernelError(err, "ENOENT", "ENODEV")) return false;
    throw err;
  }
}

/** A neighbour message's payload (a dump's entry or a notification); undefined for fdb entries. */
export function parseNeighbour(data: Buffer): Neighbour | undefined {
  const family = data.readUInt8(0);
  if (family !== AF_INET && family !== AF_INET6) return undefined;
  const attrs = decodeAttrs(data.subarray(12));
  const dst = attrs.get(NDA_DST);
  const ipFamily = dst && familyOf(dst);
  if (!dst || !ipFamily) return undefined;
  return {
    index: data.readInt32LE(4),
    family: ipFamily,
    ip: ipOf(ipFamily, dst),
    mac: formatMac(attrs.get(NDA_LLADDR)),
    state: data.readUInt16LE(8),
  };
}

/** The neighbours in the socket's namespace, optionally of one link and one family. */
export async function listNeighbours(nl: Rtnl, filter: { index?: number; family?: IpFamily } = {}): Promise<Neighbour[]> {
  const family = filter.family ? familyConstant(filter.family) : AF_UNSPEC;
  const replies = await nl.dump(RTM.GETNEIGH, ndmsg(family, 0), "list neighbours");
  const out: Neighbour[] = [];
  for (const data of replies) {
    const n = parseNeighbour(data);
    if (!n) continue;
    if (filter.index !== undefined && n.index !== filter.index) continue;
    if (filter.family !== undefined && n.family !== filter.family) continue;
    out.push(n);
  }
  return out;
}

function fdbMessage(spec: { index: number; mac: string; dst?: string }, state = 0): Buffer {
  const attrs: Attr[] = [attr(NDA_LLADDR, parseMac(spec.mac))];
  if (spec.dst !== undefined) attrs.push(attr(NDA_DST, Buffer.from(mustParseIp(spec.dst).bytes)));
  return message(AF_BRIDGE, spec.index, attrs, state, NTF_SELF);
}

/**
 * Creates or replaces the device's own forwarding entry for mac (bridge fdb replace ... self
 * permanent): on a vxlan device, frames for mac go to the endpoint dst.
 */
export async function setFdbEntry(nl: Rtnl, spec: { index: number; mac: string; dst?: string }): Promise<void> {
  const to = spec.dst === undefined ? "" : ` via ${spec.dst}`;
  await nl.change(
    RTM.NEWNEIGH,
    fdbMessage(spec, NUD_PERMANENT),
    NLM_F_CREATE | NLM_F_REPLACE,
    `set fdb entry ${spec.mac}${to} on link ${spec.index}`,
  );
}

/** Deletes the device's own forwarding entry for mac (only its remote dst, when given); false when there was none. */
export async function delFdbEntry(nl: Rtnl, spec: { index: number; mac: string; dst?: string }): Promise<boolean> {
  const to = spec.dst === undefined ? "" : ` via ${spec.dst}`;
  try {
    await nl.change(RTM.DELNEIGH, fdbMessage(spec), 0, `delete fdb entry ${spec.mac}${to} on link ${spec.index}`);
    return true;
  } catch (err) {
    if (isKernelError(err, "ENOENT", "ENODEV")) return false;
    throw err;
  }
}

/** An fdb message's payload (AF_BRIDGE); undefined for neighbours. */
export function parseFdbEntry(data: Buffer): FdbEntry | undefined {
  if (data.readUInt8(0) !== AF_BRIDGE) return undefined;
  const attrs = decodeAttrs(data.subarray(12));
  const lladdr = attrs.get(NDA_LLADDR);
  if (!lladdr) return undefined;
  const flags = data.readUInt8(10);
  const entry: FdbEntry = { index: data.readInt32LE(4), mac: formatMac(lladdr), state: data.readUInt16LE(8), self: (flags & NTF_SELF) !== 0 };
  const dst = attrs.get(NDA_DST);
  const dstFamily = dst && familyOf(dst);
  if (dst && dstFamily) entry.dst = ipOf(dstFamily, dst);
  const vlan = attrs.get(NDA_VLAN);
  if (vlan && vlan.length >= 2) entry.vlan = vlan.readUInt16LE(0);
  const vni = attrs.get(NDA_VNI);
  if (vni && vni.length >= 4) entry.vni = vni.readUInt32LE(0);
  const master = attrs.get(NDA_MASTER);
  if (master && master.length >= 4) entry.master = master.readUInt32LE(0);
  return entry;
}

/** The forwarding database entries in the socket's namespace, optionally of one device. */
export async function listFdbEntries(nl: Rtnl, filter: { index?: number } = {}): Promise<FdbEntry[]> {
  const replies = await nl.dump(RTM.GETNEIGH, ndmsg(AF_BRIDGE, 0), "list fdb entries");
  const out: FdbEntry[] = [];
  for (const data of replies) {
    const entry = parseFdbEntry(data);
    if (!entry) continue;
    if (filter.index !== undefined && entry.index !== filter.index) continue;
    out.push(entry);
  }
  return out;
}
