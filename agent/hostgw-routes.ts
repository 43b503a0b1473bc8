import { canonicalCidr, canonicalIp, parseCidr } from "../lib/ip/ip.js";
import { prefixesOverlap } from "../lib/netlink/addr.js";
import { addRoute, delRoute, listRoutes, routeTo } from "../lib/netlink/route.js";
import type { Rtnl } from "../lib/netlink/rtnl.js";

// The host-gw backend: every other node's subnet is routed via that node's public address on the
// external interface, which needs the nodes on one L2 segment. Level-triggered like the vxlan
// backend, but on an interface the agent does not own: only routes into the cluster network are
// ever touched.

export interface HostGwPeer {
  subnet: string;
  publicIP: string;
}

export interface HostGwRoute {
  dst: string;
  gw: string;
}

/** The routes the leases want: `<peer subnet> via <peer public IP>`, this node's own left out. */
export function desiredRoutes(peers: readonly HostGwPeer[], ownSubnet: string): HostGwRoute[] {
  const own = canonicalCidr(ownSubnet);
  const out: HostGwRoute[] = [];
  for (const p of peers) {
    const dst = canonicalCidr(p.subnet);
    const gw = canonicalIp(p.publicIP);
    if (dst && gw && dst !== own) out.push({ dst, gw });
  }
  return out;
}

/** Whether the route's destination lies within the cluster network. */
function inside(network: string, dst: string): boolean {
  const n = parseCidr(network);
  const d = parseCidr(dst);
  return !!n && !!d && d.prefixLength >= n.prefixLength && prefixesOverlap(network, dst);
}

/**
 * Peers the kernel cannot reach directly on the external interface: a host-gw route via them could
 * not work (they are behind a router, or on another interface). Each is described for the log.
 */
export async function peersNotOnLink(nl: Rtnl, index: number, peers: readonly HostGwRoute[]): Promise<string[]> {
  const problems: string[] = [];
  for (const p of peers) {
    const route = await routeTo(nl, p.gw);
    if (!route) problems.push(`node ${p.gw} (subnet ${p.dst}) is unreachable: host-gw needs every node on this node's L2 segment`);
    else if (route.index !== index || route.gw !== undefined) {
      problems.push(`node ${p.gw} (subnet ${p.dst}) is not on-link on the external interface: host-gw needs every node on one L2 segment; use vxlan`);
    }
  }
  return problems;
}

/**
 * One pass: the routes into `network` on the external interface become exactly `want`; any other
 * route of the interface is left alone. Returns what was added and removed.
 */
export async function reconcileHostGw(
  nl: Rtnl,
  index: number,
  network: string,
  want: readonly HostGwRoute[],
): Promise<{ add: HostGwRoute[]; remove: HostGwRoute[] }> {
  const family = parseCidr(network)?.ip.family;
  if (!family) throw new Error(`network ${JSON.stringify(network)} is not a CIDR`);
  const have = (await listRoutes(nl, { family, index }))
    .filter((r) => r.gw !== undefined && inside(network, r.dst))
    .map((r) => ({ dst: r.dst, gw: r.gw! }));
  const key = (r: HostGwRoute) => `${r.dst} ${r.gw}`;
  const wanted = new Set(want.map(key));
  const present = new Set(have.map(key));
  const remove = have.filter((r) => !wanted.has(key(r)));
  const add = want.filter((r) => !present.has(key(r)));
  for (const r of remove) await delRoute(nl, { ...r, index });
  for (const r of add) await addRoute(nl, { ...r, index });
  return { add, remove };
}
