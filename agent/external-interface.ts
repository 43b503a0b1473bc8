import { canonicalIp, formatIp, parseCidr, parseIp } from "../lib/ip/ip.js";
import { listAddresses } from "../lib/netlink/addr.js";
import { listLinks } from "../lib/netlink/link.js";
import { listRoutes, routeTo } from "../lib/netlink/route.js";
import type { Rtnl } from "../lib/netlink/rtnl.js";

// The interface other nodes reach this node through, chosen as flanneld chooses it: --iface (a name
// or an address), else --iface-regex (over addresses, then names), else --iface-can-reach (the
// kernel's route to that address), else the interface of the default route. --public-ip and
// --public-ipv6 override the address announced in the lease.

/** What the choice needs to know of the node's interfaces. */
export interface InterfaceFacts {
  name: string;
  index: number;
  mtu: number;
  /** Addresses without prefix, in the kernel's order. */
  v4: string[];
  /** Global unicast IPv6 addresses, in the kernel's order. */
  v6: string[];
}

export interface NodeFacts {
  interfaces: InterfaceFacts[];
  /** ifindex of the default route's interface, per family. */
  defaultRoute: { 4?: number; 6?: number };
  /** The kernel's route to an address: the outgoing ifindex and the source address it would use. */
  routeTo(address: string): Promise<{ index: number; src?: string } | undefined>;
}

export interface ExternalInterfaceOptions {
  /** --iface, in order: names or addresses. */
  iface: readonly string[];
  /** --iface-regex, in order. */
  ifaceRegex: readonly string[];
  ifaceCanReach: string;
  publicIP: string;
  publicIPv6: string;
  ipv4: boolean;
  ipv6: boolean;
}

export interface ExternalInterface {
  name: string;
  index: number;
  mtu: number;
  /** The interface's own addresses the agent uses (the VTEP's local address). */
  ifaceAddr?: string;
  ifaceV6Addr?: string;
  /** The addresses announced in the lease (PublicIP, PublicIPv6). */
  extAddr?: string;
  extV6Addr?: string;
}

/** The node's interfaces, default routes and route lookups, from the kernel. */
export async function nodeFacts(nl: Rtnl): Promise<NodeFacts> {
  const [links, addresses] = await Promise.all([listLinks(nl), listAddresses(nl)]);
  const interfaces = links.map((l) => {
    const mine = addresses.filter((a) => a.index === l.index);
    // IPv6: the kernel's global scope leaves out link-local and loopback, as Go's IsGlobalUnicast does.
    const ips = (family: 4 | 6) =>
      mine.filter((a) => a.family === family && (family === 4 || a.scope === "global")).map((a) => formatIp(parseCidr(a.cidr)!.ip));
    return {
      name: l.name,
      index: l.index,
      mtu: l.mtu,
      v4: ips(4),
      v6: ips(6),
    };
  });
  const defaultRoute: NodeFacts["defaultRoute"] = {};
  for (const family of [4, 6] as const) {
    const route = (await listRoutes(nl, { family })).find((r) => r.dst === (family === 4 ? "0.0.0.0/0" : "::/0") && r.index !== undefined);
    if (route?.index !== undefined) defaultRoute[family] = route.index;
  }
  return { interfaces, defaultRoute, routeTo: (address) => routeTo(nl, address) };
}

function byAddress(facts: NodeFacts, address: string): InterfaceFacts | undefined {
  const canonical = canonicalIp(address);
  return facts.interfaces.find((i) => i.v4.includes(canonical!) || i.v6.includes(canonical!));
}

/**
 * Chooses the external interface. Each --iface, then each --iface-regex, is tried in order until one
 * gives an interface with the addresses the enabled families need; the error lists what was tried and
 * the node's interfaces with their addresses.
 */
export async function chooseExternalInterface(facts: NodeFacts, o: ExternalInterfaceOptions): Promise<ExternalInterface> {
  if (!o.ipv4 && !o.ipv6) throw new Error("neither IPv4 nor IPv6 is enabled in the network config");
  const tried: string[] = [];
  const candidates: Array<() => Promise<{ iface: InterfaceFacts; v4?: string; v6?: string } | string>> = [];
  for (const name of o.iface) {
    candidates.push(async () => {
      const ip = parseIp(name);
      const iface = ip ? byAddress(facts, name) : facts.interfaces.find((i) => i.name === name);
      if (!iface) return `--iface ${name}: no interface ${ip ? "holds that address" : "has that name"}`;
      return ip ? { iface, ...(ip.family === 4 ? { v4: canonicalIp(name)! } : { v6: canonicalIp(name)! }) } : { iface };
    });
  }
  for (const pattern of o.ifaceRegex) {
    candidates.push(async () => {
      let regex: RegExp;
      try {
        regex = new RegExp(pattern);
      } catch (err) {
        return `--iface-regex ${pattern}: not a regular expression (${(err as Error).message})`;
      }
      for (const iface of facts.interfaces) {
        const v4 = o.ipv4 ? iface.v4.find((a) => regex.test(a)) : undefined;
        const v6 = o.ipv6 ? iface.v6.find((a) => regex.test(a)) : undefined;
        if ((!o.ipv4 || v4) && (!o.ipv6 || v6)) return { iface, ...(v4 ? { v4 } : {}), ...(v6 ? { v6 } : {}) };
      }
      const named = facts.interfaces.find((i) => regex.test(i.name));
      return named ? { iface: named } : `--iface-regex ${pattern}: matches no interface's address or name`;
    });
  }
  if (candidates.length === 0 && o.ifaceCanReach) {
    candidates.push(async () => {
      const route = await facts.routeTo(o.ifaceCanReach);
      const iface = route && facts.interfaces.find((i) => i.index === route.index);
      if (!iface) return `--iface-can-reach ${o.ifaceCanReach}: no route to it`;
      const src = route.src && canonicalIp(route.src);
      return { iface, ...(src ? (parseIp(src)!.family === 4 ? { v4: src } : { v6: src }) : {}) };
    });
  }
  if (candidates.length === 0) {
    candidates.push(async () => {
      const v4 = o.ipv4 ? facts.defaultRoute[4] : undefined;
      const v6 = o.ipv6 ? facts.defaultRoute[6] : undefined;
      if (o.ipv4 && v4 === undefined) return "no IPv4 default route: name the interface with --iface";
      if (o.ipv6 && v6 === undefined) return "no IPv6 default route: name the interface with --iface";
      if (v4 !== undefined && v6 !== undefined && v4 !== v6)
        return "the IPv4 and IPv6 default routes leave through different interfaces: name one with --iface";
      const iface = facts.interfaces.find((i) => i.index === (v4 ?? v6));
      return iface ? { iface } : "the default route's interface is gone";
    });
  }
  for (const candidate of candidates) {
    const found = await candidate();
    if (typeof found === "string") {
      tried.push(found);
      continue;
    }
    const ifaceAddr = o.ipv4 ? (found.v4 ?? found.iface.v4[0]) : undefined;
    const ifaceV6Addr = o.ipv6 ? (found.v6 ?? found.iface.v6[0]) : undefined;
    if (o.ipv4 && !ifaceAddr) {
      tried.push(`${found.iface.name} has no IPv4 address`);
      continue;
    }
    if (o.ipv6 && !ifaceV6Addr) {
      tried.push(`${found.iface.name} has no global IPv6 address`);
      continue;
    }
    const publicIP = o.publicIP ? canonicalIp(o.publicIP) : ifaceAddr;
    const publicIPv6 = o.publicIPv6 ? canonicalIp(o.publicIPv6) : ifaceV6Addr;
    if (o.publicIP && !publicIP) throw new Error(`--public-ip ${o.publicIP} is not an IP address`);
    if (o.publicIPv6 && !publicIPv6) throw new Error(`--public-ipv6 ${o.publicIPv6} is not an IP address`);
    return {
      name: found.iface.name,
      index: found.iface.index,
      mtu: found.iface.mtu,
      ...(ifaceAddr ? { ifaceAddr } : {}),
      ...(ifaceV6Addr ? { ifaceV6Addr } : {}),
      ...(o.ipv4 && publicIP ? { extAddr: publicIP } : {}),
      ...(o.ipv6 && publicIPv6 ? { extV6Addr: publicIPv6 } : {}),
    };
  }
  const available = facts.interfaces.map((i) => `${i.name} [${[...i.v4, ...i.v6].join(" ")}]`).join(", ");
  throw new Error(`no external interface: ${tried.join("; ")} (interfaces: ${available})`);
}
