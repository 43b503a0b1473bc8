import { canonicalCidr, canonicalIp, parseCidr, formatIp } from "../lib/ip/ip.js";
import { delFdbEntry, delNeighbour, listFdbEntries, listNeighbours, NUD_PERMANENT, setFdbEntry, setNeighbour } from "../lib/netlink/neigh.js";
import { addRoute, delRoute, listRoutes } from "../lib/netlink/route.js";
import type { Rtnl } from "../lib/netlink/rtnl.js";

// What the vxlan backend keeps in the kernel for the other nodes, level-triggered: from the leases
// it computes every route, neighbour and fdb entry the VTEP should have, reads what the kernel has on
// that device, and changes only the difference, so an entry deleted or changed by hand, a device
// recreated or an event missed is put right by the next pass.

/** Another node, as its lease describes it. */
export interface VxlanPeer {
  /** The node's pod subnet, "10.244.2.0/24". */
  subnet: string;
  /** Where its VTEP is reached: the lease's PublicIP. */
  publicIP: string;
  /** Its VTEP's MAC: the lease's BackendData.VtepMAC. */
  vtepMac: string;
}

export interface VxlanEntries {
  routes: Array<{ dst: string; gw: string }>;
  neighbours: Array<{ ip: string; mac: string }>;
  fdb: Array<{ mac: string; dst: string }>;
}

/**
 * Per peer, as flanneld's vxlan backend: a permanent neighbour for the peer subnet's first address
 * at its VTEP MAC, an fdb entry sending that MAC to its public address, and a route to its subnet
 * via that first address, onlink, over the VTEP. Peers that are this node, or whose lease is not
 * usable, are left out.
 */
export function desiredEntries(peers: readonly VxlanPeer[], ownSubnet: string): VxlanEntries {
  const own = canonicalCidr(ownSubnet);
  const out: VxlanEntries = { routes: [], neighbours: [], fdb: [] };
  for (const p of peers) {
    const subnet = parseCidr(p.subnet);
    const publicIP = canonicalIp(p.publicIP);
    if (!subnet || !publicIP || canonicalCidr(p.subnet) === own) continue;
    const dst = canonicalCidr(p.subnet)!;
    const vtep = formatIp(subnet.ip);
    const mac = p.vtepMac.toLowerCase();
    out.routes.push({ dst, gw: vtep });
    out.neighbours.push({ ip: vtep, mac });
    out.fdb.push({ mac, dst: publicIP });
  }
  return out;
}

export interface VxlanChanges {
  add: VxlanEntries;
  remove: VxlanEntries;
}

const routeKey = (r: { dst: string; gw?: string }) => `${r.dst} ${r.gw ?? ""}`;
const neighbourKey = (n: { ip: string; mac: string }) => `${n.ip} ${n.mac}`;
const fdbKey = (f: { mac: string; dst?: string }) => `${f.mac} ${f.dst ?? ""}`;

function difference<T>(a: readonly T[], b: readonly T[], key: (x: T) => string): T[] {
  const inB = new Set(b.map(key));
  return a.filter((x) => !inB.has(key(x)));
}

/** What to add and what to remove so that `have` becomes `want` (pure). */
export function diffEntries(have: VxlanEntries, want: VxlanEntries): VxlanChanges {
  return {
    add: {
      routes: difference(want.routes, have.routes, routeKey),
      neighbours: difference(want.neighbours, have.neighbours, neighbourKey),
      fdb: difference(want.fdb, have.fdb, fdbKey),
    },
    remove: {
      routes: difference(have.routes, want.routes, routeKey),
      neighbours: difference(have.neighbours, want.neighbours, neighbourKey),
      fdb: difference(have.fdb, want.fdb, fdbKey),
    },
  };
}

/** The VTEP's routes, permanent neighbours (of its family) and fdb entries with a remote, as the kernel has them. */
export async function kernelEntries(nl: Rtnl, index: number, family: 4 | 6 = 4): Promise<VxlanEntries> {
  const [routes, neighbours, fdb] = await Promise.all([
    listRoutes(nl, { family, index }),
    listNeighbours(nl, { index, family }),
    listFdbEntries(nl, { index }),
  ]);
  return {
    routes: routes.filter((r) => r.gw !== undefined).map((r) => ({ dst: r.dst, gw: r.gw! })),
    neighbours: neighbours.filter((n) => (n.state & NUD_PERMANENT) !== 0 && n.mac !== "").map((n) => ({ ip: n.ip, mac: n.mac })),
    fdb: fdb.filter((f) => f.dst !== undefined).map((f) => ({ mac: f.mac, dst: f.dst! })),
  };
}

/**
 * One reconciliation pass over the VTEP: reads the kernel, removes what no lease wants (routes
 * first, so no packet is sent to a neighbour being removed), then adds what is missing (neighbour
 * and fdb entry before the route that uses them). Returns what it changed.
 */
export async function reconcileVxlan(nl: Rtnl, index: number, want: VxlanEntries, family: 4 | 6 = 4): Promise<VxlanChanges> {
  const changes = diffEntries(await kernelEntries(nl, index, family), want);
  for (const r of changes.remove.routes) await delRoute(nl, { dst: r.dst, gw: r.gw, index, onlink: true });
  for (const n of changes.remove.neighbours) await delNeighbour(nl, { index, ip: n.ip });
  for (const f of changes.remove.fdb) await delFdbEntry(nl, { index, mac: f.mac, dst: f.dst });
  for (const n of changes.add.neighbours) await setNeighbour(nl, { index, ip: n.ip, mac: n.mac });
  for (const f of changes.add.fdb) await setFdbEntry(nl, { index, mac: f.mac, dst: f.dst });
  for (const r of changes.add.routes) await addRoute(nl, { dst: r.dst, gw: r.gw, index, onlink: true });
  return changes;
}
