import { hostLocal } from "../../gen/validators.js";
import { CniError, ErrorCode } from "../../lib/errors/cni.js";
import type { Result } from "../../lib/cni/result.js";
import type { GcRequest, Plugin, Request } from "../../lib/cni/skel.js";
import { formatRangeSet } from "./allocator.js";
import { loadIpamConfig, storeLocation, type HostLocalConf } from "./config.js";
import { allocate, checkAllocation, collectGarbage, exhaustedRangeSets, release, type Attachment } from "./reservations.js";
import { readResolvConf } from "./resolv-conf.js";
import { DiskStore } from "./store.js";

export function hostLocalPlugin(): Plugin<HostLocalConf> {
  return { type: "host-local", validate: hostLocal, argsKeys: ["IP"], add, del, check, gc, status };
}

function attachmentOf(request: Request<HostLocalConf>): Attachment {
  return { containerId: request.env.containerId, ifName: request.env.ifName };
}

function ipamConfig(request: Request<HostLocalConf>) {
  return loadIpamConfig(request.config, request.version, request.cniArgs);
}

async function add(request: Request<HostLocalConf>): Promise<Result> {
  const ipam = ipamConfig(request);
  const dns = ipam.resolvConf === undefined ? undefined : readResolvConf(ipam.resolvConf);
  const store = DiskStore.open(ipam.dataDir, ipam.network, true)!;
  const ips = await allocate(store, ipam, attachmentOf(request));
  return { cniVersion: request.version, ips, routes: ipam.routes, ...(dns ? { dns } : {}) };
}

// DEL and GC need only the store's location: a range the config no longer accepts must not keep
// the addresses handed out from it reserved forever.
async function del(request: Request<HostLocalConf>): Promise<void> {
  const { dataDir, network, lockTimeoutMs } = storeLocation(request.config);
  const store = DiskStore.open(dataDir, network, false);
  if (store) await release(store, lockTimeoutMs, attachmentOf(request));
}

async function check(request: Request<HostLocalConf>): Promise<void> {
  const ipam = ipamConfig(request);
  checkAllocation(DiskStore.open(ipam.dataDir, ipam.network, false), ipam, attachmentOf(request), request.prevResult);
}

async function gc(request: GcRequest<HostLocalConf>): Promise<void> {
  // An absent list would mean "release everything"; only an explicit (even empty) one may say so.
  if (!("cni.dev/valid-attachments" in request.rawConfig) && !("cni.dev/attachments" in request.rawConfig)) {
    throw new CniError(
      ErrorCode.InvalidNetworkConfig,
      "invalid network config: GC needs cni.dev/valid-attachments",
      "host-local releases nothing without the list of attachments to keep",
    );
  }
  const { dataDir, network, lockTimeoutMs } = storeLocation(request.config);
  const store = DiskStore.open(dataDir, network, false);
  if (!store) return;
  const released = await collectGarbage(store, lockTimeoutMs, request.validAttachments);
  if (released.length > 0) request.log(`GC released ${released.join(" ")}`);
}

async function status(request: Request<HostLocalConf>): Promise<void> {
  const ipam = ipamConfig(request);
  const full = exhaustedRangeSets(DiskStore.open(ipam.dataDir, ipam.network, false), ipam);
  if (full.length > 0) {
    throw new CniError(
      ErrorCode.NotAvailable,
      full.map((index) => `no IP addresses available in range set ${index}: ${formatRangeSet(ipam.rangeSets[index]!)}`).join("; "),
      "every ADD needs one address from each range set; DEL or GC releases those of containers that are gone",
    );
  }
}
