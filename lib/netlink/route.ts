import { formatCidr, formatIp, networkOf, parseCidr, parseIp } from "../ip/ip.js";
import { familyConstant } from "./addr.js";
import { isKernelError } from "../errors/kernel.js";
import {
  AF_INET,
  AF_INET6,
  attr,
  decodeAttrs,
  encodeAttrs,
  nested,
  NLM_F_CREATE,
  NLM_F_EXCL,
  NLM_F_REPLACE,
  RTM,
  u32,
  type Attr,
  type Rtnl,
} from "./rtnl.js";

// include/uapi/linux/rtnetlink.h
const RTA_DST = 1;
const RTA_OIF = 4;
const RTA_GATEWAY = 5;
const RTA_PRIORITY = 6;
const RTA_PREFSRC = 7;
const RTA_METRICS = 8;
const RTA_TABLE = 15;
const RTAX_MTU = 2;
const RTAX_ADVMSS = 8;
export const RT_TABLE_MAIN = 254;
const RTPROT_BOOT = 3;
const RTN_UNICAST = 1;
export const RT_SCOPE_UNIVERSE = 0;
export const RT_SCOPE_LINK = 253;
/** rtm_flags: the gateway is on the link whatever the link's addresses say (a vxlan backend's routes). */
const RTNH_F_ONLINK = 4;

export interface RouteSpec {
  /** "10.244.0.0/16", "0.0.0.0/0"; host bits are cleared as the kernel requires. */
  dst: string;
  gw?: string;
  /** Outgoing link. */
  index: number;
  priority?: number;
  table?: number;
  /** rtm_scope; defaults to universe with a gateway and link without one. */
  scope?: number;
  mtu?: number;
  advmss?: number;
  /** The gateway is reached on this link even though no address of the link covers it. */
  onlink?: boolean;
}

export interface KernelRoute {
  dst: string;
  gw?: string;
  index?: number;
  table: number;
  priority?: number;
  scope: number;
  type: number;
  /** Present, true, for a route added onlink. */
  onlink?: boolean;
}

function rtmsg(family: number, dstLen: number, table: number, scope: number, protocol = 0, type = 0, flags = 0): Buffer {
  const b = Buffer.alloc(12);
  b.writeUInt8(family, 0);
  b.writeUInt8(dstLen, 1);
  b.writeUInt8(table < 256 ? table : 0, 4);
  b.writeUInt8(protocol, 5);
  b.writeUInt8(scope, 6);
  b.writeUInt8(type, 7);
  b.writeUInt32LE(flags, 8);
  return b;
}

function routeMessage(spec: RouteSpec): { body: Buffer; describe: string } {
  const parsed = parseCidr(spec.dst);
  if (!parsed) throw new Error(`invalid route destination ${JSON.stringify(spec.dst)}`);
  const dst = networkOf(parsed);
  const table = spec.table ?? RT_TABLE_MAIN;
  const attrs: Attr[] = [attr(RTA_DST, Buffer.from(dst.ip.bytes)), attr(RTA_OIF, u32(spec.index)), attr(RTA_TABLE, u32(table))];
  if (spec.gw) {
    const gw = parseIp(spec.gw);
    if (!gw || gw.family !== dst.ip.family) throw new Error(`invalid gateway ${JSON.stringify(spec.gw)} for route ${spec.dst}`);
    attrs.push(attr(RTA_GATEWAY, Buffer.from(gw.bytes)));
  }
  if (spec.priority) attrs.push(attr(RTA_PRIORITY, u32(spec.priority)));
  const metrics: Attr[] = [];
  if (spec.mtu) metrics.push(attr(RTAX_MTU, u32(spec.mtu)));
  if (spec.advmss) metrics.push(attr(RTAX_ADVMSS, u32(spec.advmss)));
  if (metrics.length) attrs.push(nested(RTA_METRICS, metrics));
  const scope = spec.scope ?? (spec.gw ? RT_SCOPE_UNIVERSE : RT_SCOPE_LINK);
  const flags = spec.onlink ? RTNH_F_ONLINK : 0;
  const body = Buffer.concat([
    rtmsg(familyConstant(dst.ip.family), dst.prefixLength, table, scope, RTPROT_BOOT, RTN_UNICAST, flags),
    encodeAttrs(attrs),
  ]);
  return { body, describe: `${formatCidr(dst)}${spec.gw ? ` via ${spec.gw}` : ""} dev ${spec.index}${spec.onlink ? " onlink" : ""}` };
}

/** Adds a route; EEXIST when an equal one is there. */
export async function addRoute(nl: Rtnl, spec: RouteSpec): Promise<void> {
  const { body, describe } = routeMessage(spec);
  await nl.change(RTM.NEWROUTE, body, NLM_F_CREATE | NLM_F_EXCL, `add route ${describe}`);
}

/** Adds a route, or replaces the one with the same destination, table and metric (ip route replace). */
export async function replaceRoute(nl: Rtnl, spec: RouteSpec): Promise<void> {
  const { body, describe } = routeMessage(spec);
  await nl.change(RTM.NEWROUTE, body, NLM_F_CREATE | NLM_F_REPLACE, `replace route ${describe}`);
}

/** Deletes a route; false when it was not there. */
export async function delRoute(nl: Rtnl, spec: RouteSpec): Promise<boolean> {
  const { body, describe } = routeMessage(spec);
  try {
    await nl.change(RTM.DELROUTE, body, 0, `delete route ${describe}`);
    return true;
  } catch (err) {
    if (isKernelError(err, "ESRCH", "ENOENT")) return false;
    throw err;
  }
}

/** A route message's payload (a dump's entry or a notification). */
export function parseRoute(data: Buffer): KernelRoute | undefined {
  const family = data.readUInt8(0);
  if (family !== AF_INET && family !== AF_INET6) return undefined;
  const ipFamily = family === AF_INET ? 4 : 6;
  const dstLen = data.readUInt8(1);
  const attrs = decodeAttrs(data.subarray(12));
  const dstBytes = attrs.get(RTA_DST) ?? Buffer.alloc(ipFamily === 4 ? 4 : 16);
  const route: KernelRoute = {
    dst: formatCidr({ ip: { family: ipFamily, bytes: new Uint8Array(dstBytes) }, prefixLength: dstLen }),
    table: attrs.get(RTA_TABLE)?.readUInt32LE(0) ?? data.readUInt8(4),
    scope: data.readUInt8(6),
    type: data.readUInt8(7),
  };
  const gw = attrs.get(RTA_GATEWAY);
  if (gw) route.gw = formatIp({ family: ipFamily, bytes: new Uint8Array(gw) });
  const oif = attrs.get(RTA_OIF);
  if (oif) route.index = oif.readUInt32LE(0);
  const priority = attrs.get(RTA_PRIORITY);
  if (priority) route.priority = priority.readUInt32LE(0);
  if (data.readUInt32LE(8) & RTNH_F_ONLINK) route.onlink = true;
  return route;
}

/** The unicast routes of one family, of the main table unless another is asked for. */
export async function listRoutes(nl: Rtnl, filter: { family: 4 | 6; index?: number; table?: number }): Promise<KernelRoute[]> {
  const table = filter.table ?? RT_TABLE_MAIN;
  const replies = await nl.dump(RTM.GETROUTE, rtmsg(familyConstant(filter.family), 0, 0, 0), "list routes");
  const out: KernelRoute[] = [];
  for (const data of replies) {
    const r = parseRoute(data);
    if (!r || r.type !== RTN_UNICAST || r.table !== table) continue;
    if (filter.index !== undefined && r.index !== filter.index) continue;
    out.push(r);
  }
  return out;
}

/**
 * The kernel's route to one address (`ip route get`): the outgoing link, the gateway if any, and the
 * source address it would use. Undefined when the address is unreachable.
 */
export async function routeTo(nl: Rtnl, address: string): Promise<{ index: number; gw?: string; src?: string } | undefined> {
  const ip = parseIp(address);
  if (!ip) throw new Error(`invalid address ${JSON.stringify(address)}`);
  const body = Buffer.concat([
    rtmsg(familyConstant(ip.family), ip.family === 4 ? 32 : 128, 0, 0),
    encodeAttrs([attr(RTA_DST, Buffer.from(ip.bytes))]),
  ]);
  let reply: Buffer;
  try {
    reply = await nl.get(RTM.GETROUTE, body, `route to ${address}`);
  } catch (err) {
    if (isKernelError(err, "ENETUNREACH", "EHOSTUNREACH", "ENOENT", "ESRCH")) return undefined;
    throw err;
  }
  const attrs = decodeAttrs(reply.subarray(12));
  const oif = attrs.get(RTA_OIF);
  if (!oif) return undefined;
  const gw = attrs.get(RTA_GATEWAY);
  const src = attrs.get(RTA_PREFSRC);
  return {
    index: oif.readUInt32LE(0),
    ...(gw ? { gw: formatIp({ family: ip.family, bytes: new Uint8Array(gw) }) } : {}),
    ...(src ? { src: formatIp({ family: ip.family, bytes: new Uint8Array(src) }) } : {}),
  };
}
