import { formatCidr, networkOf, parseCidr, type ParsedCidr } from "../ip/ip.js";
import { isKernelError } from "../errors/kernel.js";
import { AF_INET, AF_INET6, AF_UNSPEC, attr, decodeAttrs, encodeAttrs, NLM_F_CREATE, NLM_F_EXCL, RTM, u32, type Attr, type Rtnl } from "./rtnl.js";

// include/uapi/linux/if_addr.h
const IFA_ADDRESS = 1;
const IFA_LOCAL = 2;
const IFA_BROADCAST = 4;
const IFA_FLAGS = 8;
const IFA_F_NODAD = 0x02;
const IFA_F_DADFAILED = 0x08;
const IFA_F_TENTATIVE = 0x40;
const IFA_F_PERMANENT = 0x80;
const RT_SCOPE_UNIVERSE = 0;
const RT_SCOPE_LINK = 253;
const RT_SCOPE_HOST = 254;

export interface Address {
  index: number;
  /** "10.1.0.2/24", "fd00::2/64" */
  cidr: string;
  family: 4 | 6;
  scope: "global" | "link" | "host" | number;
  /** IPv6 duplicate address detection still running: the address cannot be used yet. */
  tentative: boolean;
  dadFailed: boolean;
  permanent: boolean;
}

export function familyConstant(family: 4 | 6): number {
  return family === 4 ? AF_INET : AF_INET6;
}

function ifaddrmsg(family: number, prefixLength: number, index: number, flags = 0, scope = 0): Buffer {
  const b = Buffer.alloc(8);
  b.writeUInt8(family, 0);
  b.writeUInt8(prefixLength, 1);
  b.writeUInt8(flags & 0xff, 2);
  b.writeUInt8(scope, 3);
  b.writeUInt32LE(index, 4);
  return b;
}

function mustParse(cidr: string): ParsedCidr {
  const parsed = parseCidr(cidr);
  if (!parsed) throw new Error(`invalid address ${JSON.stringify(cidr)}: expected address/prefix`);
  return parsed;
}

function broadcastOf(cidr: ParsedCidr): Buffer {
  const bytes = Buffer.from(cidr.ip.bytes);
  for (let bit = cidr.prefixLength; bit < 32; bit++) bytes[bit >> 3]! |= 0x80 >> (bit & 7);
  return bytes;
}

function addressMessage(index: number, cidr: ParsedCidr, flags: number): Buffer {
  const family = familyConstant(cidr.ip.family);
  const local = Buffer.from(cidr.ip.bytes);
  const attrs: Attr[] = [attr(IFA_LOCAL, local), attr(IFA_ADDRESS, local)];
  // ip(8) and Go's netlink.AddrAdd both give an IPv4 address its subnet's broadcast address.
  if (cidr.ip.family === 4 && cidr.prefixLength < 31) attrs.push(attr(IFA_BROADCAST, broadcastOf(cidr)));
  if (flags) attrs.push(attr(IFA_FLAGS, u32(flags)));
  return Buffer.concat([ifaddrmsg(family, cidr.prefixLength, index, flags, RT_SCOPE_UNIVERSE), encodeAttrs(attrs)]);
}

export interface AddAddressOptions {
  /**
   * Skip IPv6 duplicate address detection (IFA_F_NODAD), so the address is usable at once rather
   * than tentative for about two seconds. Ignored for IPv4.
   */
  noDad?: boolean;
}

/** Adds an address; EEXIST when the link already has it. */
export async function addAddress(nl: Rtnl, index: number, cidr: string, options: AddAddressOptions = {}): Promise<void> {
  const parsed = mustParse(cidr);
  const flags = parsed.ip.family === 6 && options.noDad ? IFA_F_NODAD : 0;
  await nl.change(RTM.NEWADDR, addressMessage(index, parsed, flags), NLM_F_CREATE | NLM_F_EXCL, `add address ${cidr} to link ${index}`);
}

/** Removes an address; false when it was not there. */
export async function delAddress(nl: Rtnl, index: number, cidr: string): Promise<boolean> {
  try {
    await nl.change(RTM.DELADDR, addressMessage(index, mustParse(cidr), 0), 0, `delete address ${cidr} from link ${index}`);
    return true;
  } catch (err) {
    if (isKernelError(err, "EADDRNOTAVAIL", "ENODEV")) return false;
    throw err;
  }
}

/** An address message's payload (a dump's entry or a notification). */
export function parseAddress(data: Buffer): Address | undefined {
  const family = data.readUInt8(0);
  if (family !== AF_INET && family !== AF_INET6) return undefined;
  const prefixLength = data.readUInt8(1);
  const scopeValue = data.readUInt8(3);
  const index = data.readUInt32LE(4);
  const attrs = decodeAttrs(data.subarray(8));
  const flags = attrs.get(IFA_FLAGS)?.readUInt32LE(0) ?? data.readUInt8(2);
  const bytes = attrs.get(IFA_LOCAL) ?? attrs.get(IFA_ADDRESS);
  if (!bytes) return undefined;
  const ipFamily = family === AF_INET ? 4 : 6;
  const scope =
    scopeValue === RT_SCOPE_UNIVERSE ? "global" : scopeValue === RT_SCOPE_LINK ? "link" : scopeValue === RT_SCOPE_HOST ? "host" : scopeValue;
  return {
    index,
    cidr: formatCidr({ ip: { family: ipFamily, bytes: new Uint8Array(bytes) }, prefixLength }),
    family: ipFamily,
    scope,
    tentative: (flags & IFA_F_TENTATIVE) !== 0,
    dadFailed: (flags & IFA_F_DADFAILED) !== 0,
    permanent: (flags & IFA_F_PERMANENT) !== 0,
  };
}

/** The addresses in the socket's namespace, optionally of one link and one family. */
export async function listAddresses(nl: Rtnl, filter: { index?: number; family?: 4 | 6 } = {}): Promise<Address[]> {
  const family = filter.family ? familyConstant(filter.family) : AF_UNSPEC;
  const replies = await nl.dump(RTM.GETADDR, ifaddrmsg(family, 0, 0), "list addresses");
  const out: Address[] = [];
  for (const data of replies) {
    const a = parseAddress(data);
    if (!a) continue;
    if (filter.index !== undefined && a.index !== filter.index) continue;
    if (filter.family !== undefined && a.family !== filter.family) continue;
    out.push(a);
  }
  return out;
}

/** True when the two prefixes overlap (one contains the other's network). */
export function prefixesOverlap(a: string, b: string): boolean {
  const pa = mustParse(a);
  const pb = mustParse(b);
  if (pa.ip.family !== pb.ip.family) return false;
  const shorter = Math.min(pa.prefixLength, pb.prefixLength);
  const na = networkOf({ ip: pa.ip, prefixLength: shorter });
  const nb = networkOf({ ip: pb.ip, prefixLength: shorter });
  return formatCidr(na) === formatCidr(nb);
}
