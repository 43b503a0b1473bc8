import { loopback as validateLoopback } from "../../gen/validators.js";
import type { NetConf } from "../../lib/cni/config.js";
import { asCniError, CniError, ErrorCode } from "../../lib/errors/cni.js";
import type { Result } from "../../lib/cni/result.js";
import type { Plugin, Request } from "../../lib/cni/skel.js";
import { listAddresses } from "../../lib/netlink/addr.js";
import { linkByName, setLinkDown, setLinkUp, type Link } from "../../lib/netlink/link.js";
import { isOwnNetns, Netns, NetnsPathError } from "../../lib/netns/netns.js";
import { withRtnl, type Rtnl } from "../../lib/netlink/rtnl.js";

type LoopbackRequest = Request<NetConf>;

/** loopback ignores CNI_IFNAME, as the reference does: it only ever works on lo. */
const LO = "lo";

function isLoopbackAddress(cidr: string): boolean {
  const ip = cidr.split("/")[0]!;
  return ip.startsWith("127.") || ip === "::1";
}

/**
 * Opens CNI_NETNS, refusing the plugin's own namespace unless CNI_NETNS_OVERRIDE says so (code 8):
 * a recycled /proc/<pid>/ns/net once made loopback DEL take down the host's lo (plugins#714).
 */
function openNetns(request: LoopbackRequest): Netns {
  const netns = Netns.open(request.env.netns);
  if (!request.env.netnsOverride && isOwnNetns(netns)) {
    netns.close();
    throw new CniError(ErrorCode.InvalidNetns, "netns must not be the plugin's own network namespace", `CNI_NETNS ${request.env.netns}; set CNI_NETNS_OVERRIDE=1 if this is intended`);
  }
  return netns;
}

async function inPodLo<T>(request: LoopbackRequest, fn: (nl: Rtnl, lo: Link) => Promise<T>): Promise<T> {
  const netns = openNetns(request);
  try {
    return await withRtnl(netns, async (nl) => {
      const lo = await linkByName(nl, LO);
      if (!lo) throw new CniError(ErrorCode.Internal, `no ${LO} interface in ${request.env.netns}`);
      return fn(nl, lo);
    });
  } finally {
    netns.close();
  }
}

async function add(request: LoopbackRequest): Promise<Result> {
  const addresses = await inPodLo(request, async (nl, lo) => {
    await setLinkUp(nl, lo.index);
    // The kernel gives lo 127.0.0.1/8 and ::1/128 as it comes up; anything else is someone else's.
    const found = await listAddresses(nl, { index: lo.index });
    const foreign = found.find((a) => !isLoopbackAddress(a.cidr));
    if (foreign) throw new CniError(ErrorCode.CheckFailed, `loopback interface found with non-loopback address "${foreign.cidr.split("/")[0]}"`);
    return [found.find((a) => a.family === 4), found.find((a) => a.family === 6)].filter((a) => a !== undefined);
  }).catch((err: unknown) => {
    throw asCniError(err, `failed to set ${LO} up in ${request.env.netns}`);
  });
  // A previous plugin's result passes through unchanged, as the reference does.
  if (request.prevResult) return request.prevResult;
  return {
    interfaces: [{ name: LO, mac: "00:00:00:00:00:00", sandbox: request.env.netns }],
    ips: addresses.map((a) => ({ interface: 0, address: a.cidr })),
  };
}

/** DEL: lo down. A namespace that is gone, or a path that no longer is one, leaves nothing to do (§3 #14). */
async function del(request: LoopbackRequest): Promise<void> {
  if (request.env.netns === "") return;
  try {
    await inPodLo(request, (nl, lo) => setLinkDown(nl, lo.index));
  } catch (err) {
    if (err instanceof NetnsPathError) {
      request.log(`${err.message}: nothing to do`);
      return;
    }
    throw asCniError(err, `failed to set ${LO} down in ${request.env.netns}`);
  }
}

async function check(request: LoopbackRequest): Promise<void> {
  await inPodLo(request, async (nl, lo) => {
    if (!lo.up) throw new CniError(ErrorCode.CheckFailed, "loopback interface is down");
    const addresses = await listAddresses(nl, { index: lo.index, family: 4 });
    if (!addresses.some((a) => a.cidr === "127.0.0.1/8")) throw new CniError(ErrorCode.CheckFailed, "loopback interface has no 127.0.0.1/8");
  }).catch((err: unknown) => {
    throw asCniError(err, `failed to check ${LO} in ${request.env.netns}`);
  });
}

export function loopbackPlugin(): Plugin<NetConf> {
  return { type: "loopback", validate: validateLoopback, add, del, check, gc: async () => undefined, status: async () => undefined };
}
