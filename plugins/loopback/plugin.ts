import { loopback as validateLoopback } from "../../gen/validators.js";
import type { NetConf } from "../../lib/cni/config.js";
import type { Result } from "../../lib/cni/result.js";
import type { Plugin, Request } from "../../lib/cni/skel.js";
import { step } from "../../lib/cni/steps.js";
import { asCniError, CniError, ErrorCode } from "../../lib/errors/cni.js";
import { listAddresses, type Address } from "../../lib/netlink/addr.js";
import { linkByName, setLinkDown, setLinkUp, type Link } from "../../lib/netlink/link.js";
import { withRtnl, type Rtnl } from "../../lib/netlink/rtnl.js";
import { NetnsPathError, openPodNetns } from "../../lib/netns/netns.js";

type LoopbackRequest = Request<NetConf>;

/** loopback ignores CNI_IFNAME, as the reference does: it only ever works on lo. */
const LO = "lo";

export function loopbackPlugin(): Plugin<NetConf> {
  return { type: "loopback", validate: validateLoopback, add, del, check, gc: async () => undefined, status: async () => undefined };
}

async function add(request: LoopbackRequest): Promise<Result> {
  const addresses = await step(`set ${LO} up in ${request.env.netns}`, () => inPodLo(request, setLoUp));
  // A previous plugin's result passes through unchanged, as the reference does.
  return request.prevResult ?? loopbackResult(request.env.netns, addresses);
}

/** DEL: lo down. A namespace that is gone, or a path that no longer is one, leaves nothing to do. */
async function del(request: LoopbackRequest): Promise<void> {
  if (request.env.netns === "") return;
  try {
    await inPodLo(request, (nl, lo) => setLinkDown(nl, lo.index));
  } catch (err) {
    if (!(err instanceof NetnsPathError)) throw asCniError(err, `failed to set ${LO} down in ${request.env.netns}`);
    request.log(`${err.message}: nothing to do`);
  }
}

async function check(request: LoopbackRequest): Promise<void> {
  await step(`check ${LO} in ${request.env.netns}`, () => inPodLo(request, checkLo));
}

async function inPodLo<T>(request: LoopbackRequest, fn: (nl: Rtnl, lo: Link) => Promise<T>): Promise<T> {
  const netns = openPodNetns(request.env.netns, request.env.netnsOverride);
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

/** Brings lo up; its addresses, one a family. The kernel gives it 127.0.0.1/8 and ::1/128 as it comes up: any other is someone else's. */
async function setLoUp(nl: Rtnl, lo: Link): Promise<Address[]> {
  await setLinkUp(nl, lo.index);
  const found = await listAddresses(nl, { index: lo.index });
  const foreign = found.find((a) => !isLoopbackAddress(a.cidr));
  if (foreign) throw new CniError(ErrorCode.CheckFailed, `loopback interface found with non-loopback address "${foreign.cidr.split("/")[0]}"`);
  return [found.find((a) => a.family === 4), found.find((a) => a.family === 6)].filter((a) => a !== undefined);
}

async function checkLo(nl: Rtnl, lo: Link): Promise<void> {
  if (!lo.up) throw new CniError(ErrorCode.CheckFailed, "loopback interface is down");
  const addresses = await listAddresses(nl, { index: lo.index, family: 4 });
  if (!addresses.some((a) => a.cidr === "127.0.0.1/8")) throw new CniError(ErrorCode.CheckFailed, "loopback interface has no 127.0.0.1/8");
}

function isLoopbackAddress(cidr: string): boolean {
  const ip = cidr.split("/")[0]!;
  return ip.startsWith("127.") || ip === "::1";
}

function loopbackResult(netns: string, addresses: readonly Address[]): Result {
  return {
    interfaces: [{ name: LO, mac: "00:00:00:00:00:00", sandbox: netns }],
    ips: addresses.map((a) => ({ interface: 0, address: a.cidr })),
  };
}
