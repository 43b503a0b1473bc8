import { parseAddress } from "../lib/netlink/addr.js";
import { parseLink } from "../lib/netlink/link.js";
import { parseFdbEntry, parseNeighbour } from "../lib/netlink/neigh.js";
import { parseRoute } from "../lib/netlink/route.js";
import {
  RTM,
  RTNLGRP_IPV4_IFADDR,
  RTNLGRP_IPV4_ROUTE,
  RTNLGRP_IPV6_IFADDR,
  RTNLGRP_IPV6_ROUTE,
  RTNLGRP_LINK,
  RTNLGRP_NEIGH,
  type Rtnl,
} from "../lib/netlink/rtnl.js";
import type { KernelNotice } from "./backend.js";

/** One rtnetlink notification, decoded into what the agent cares about; undefined for anything else. */
export function decodeNotice(type: number, data: Buffer): KernelNotice | undefined {
  switch (type) {
    case RTM.NEWROUTE:
    case RTM.DELROUTE: {
      const r = parseRoute(data);
      return r && { kind: "route", deleted: type === RTM.DELROUTE, dst: r.dst, gw: r.gw, index: r.index };
    }
    case RTM.NEWNEIGH:
    case RTM.DELNEIGH: {
      const deleted = type === RTM.DELNEIGH;
      const fdb = parseFdbEntry(data);
      if (fdb) return { kind: "fdb", deleted, mac: fdb.mac, dst: fdb.dst, index: fdb.index };
      const n = parseNeighbour(data);
      return n && { kind: "neighbour", deleted, ip: n.ip, mac: n.mac, index: n.index };
    }
    case RTM.NEWLINK:
    case RTM.DELLINK: {
      const l = parseLink(data);
      return { kind: "link", deleted: type === RTM.DELLINK, index: l.index, name: l.name, up: l.up };
    }
    case RTM.NEWADDR:
    case RTM.DELADDR: {
      const a = parseAddress(data);
      return a && { kind: "address", deleted: type === RTM.DELADDR, index: a.index, cidr: a.cidr };
    }
    default:
      return undefined;
  }
}

const GROUPS = [RTNLGRP_LINK, RTNLGRP_NEIGH, RTNLGRP_IPV4_IFADDR, RTNLGRP_IPV4_ROUTE, RTNLGRP_IPV6_IFADDR, RTNLGRP_IPV6_ROUTE];

/**
 * Listens to the kernel's notifications about links, addresses, routes, neighbours and fdb entries
 * in the agent's namespace; a lost batch (the socket overflowed) is reported as such, so the agent
 * compares everything again. Returns the function that stops listening.
 */
export function watchKernel(nl: Rtnl, onNotice: (notice: KernelNotice) => void): () => void {
  // One socket for every group: each subscription holds a libuv worker thread while it waits.
  return nl.subscribe(
    GROUPS,
    (type, data) => {
      const notice = decodeNotice(type, data);
      if (notice) onNotice(notice);
    },
    () => onNotice({ kind: "lost" }),
  );
}
