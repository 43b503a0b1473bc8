import { readFileSync, writeFileSync } from "node:fs";
import { CniError, ErrorCode } from "../../lib/errors/cni.js";
import type { Result } from "../../lib/cni/result.js";
import { addAddress, listAddresses } from "../../lib/netlink/addr.js";
import { isKernelError } from "../../lib/errors/kernel.js";
import { linkByName, setLinkUp, type Link } from "../../lib/netlink/link.js";
import type { Netns } from "../../lib/netns/netns.js";
import { addRoute } from "../../lib/netlink/route.js";
import { RTNLGRP_IPV6_IFADDR, type Rtnl } from "../../lib/netlink/rtnl.js";
import { familyOfCidr, effectiveGateway } from "./gateway.js";
import { step } from "../../lib/cni/steps.js";

const DAD_TIMEOUT_MS = 5000;

export async function containerLink(pod: Rtnl, podNetns: Netns, ifName: string): Promise<Link> {
  const link = await linkByName(pod, ifName);
  if (!link) throw new CniError(ErrorCode.Internal, `interface ${ifName} not found in ${podNetns.path}`);
  return link;
}

/**
 * The pod-side sysctls, in one visit to its namespace (/proc/sys/net is per namespace and must be
 * opened from inside): DAD off unless enabledad, arp_notify so neighbours learn the new MAC, and
 * IPv6 enabled with addresses kept when the link goes down.
 */
function podSysctls(podNetns: Netns, ifName: string, hasV6: boolean, enableDad: boolean): void {
  podNetns.run(() => {
    const set = (name: string, value: string, onlyIf?: string) => {
      const path = `/proc/sys/${name}`;
      try {
        if (onlyIf !== undefined && readFileSync(path, "utf8").trim() !== onlyIf) return;
        writeFileSync(path, value);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
      }
    };
    if (hasV6) {
      set("net/ipv6/conf/lo/disable_ipv6", "0", "1");
      set(`net/ipv6/conf/${ifName}/disable_ipv6`, "0", "1");
      set(`net/ipv6/conf/${ifName}/keep_addr_on_down`, "1");
    }
    if (enableDad) {
      set(`net/ipv6/conf/${ifName}/enhanced_dad`, "1");
      set(`net/ipv6/conf/${ifName}/accept_dad`, "1");
    } else {
      set(`net/ipv6/conf/${ifName}/accept_dad`, "0");
    }
    set(`net/ipv4/conf/${ifName}/arp_notify`, "1");
  });
}

/**
 * Waits until no global IPv6 address of the link is tentative. The addresses are looked at again
 * whenever the kernel announces an address change of the link (RTNLGRP_IPV6_IFADDR), not on a timer.
 */
async function waitForDad(pod: Rtnl, index: number, ifName: string): Promise<void> {
  const deadline = Date.now() + DAD_TIMEOUT_MS;
  let wake = () => {};
  const unsubscribe = pod.subscribe(
    RTNLGRP_IPV6_IFADDR,
    (_type, data) => {
      if (data.length >= 8 && data.readInt32LE(4) === index) wake();
    },
    () => wake(), // announcements were lost: look again
  );
  let timer: NodeJS.Timeout | undefined;
  try {
    for (;;) {
      // Armed before looking, so that an announcement during the dump is not missed.
      const changed = new Promise<void>((resolve) => (wake = resolve));
      const addrs = (await listAddresses(pod, { index, family: 6 })).filter((a) => a.scope === "global");
      const failed = addrs.find((a) => a.dadFailed);
      if (failed)
        throw new CniError(ErrorCode.NodeConflict, `duplicate address detection failed for ${failed.cidr} on ${ifName}: another host uses it`);
      if (!addrs.some((a) => a.tentative)) return;
      const left = deadline - Date.now();
      if (left <= 0) throw new CniError(ErrorCode.TryAgainLater, `addresses on ${ifName} still tentative after ${DAD_TIMEOUT_MS} ms`);
      await Promise.race([changed, new Promise<void>((resolve) => (timer = setTimeout(resolve, left)))]);
      clearTimeout(timer);
    }
  } finally {
    clearTimeout(timer);
    unsubscribe();
  }
}

/**
 * Puts the result's addresses and routes on the container interface and brings it up
 * (pkg/ipam ConfigureIface). Without enabledad, IPv6 addresses skip duplicate address detection and
 * are usable at once; with it, ADD waits for DAD as the reference does.
 */
export async function configureContainer(pod: Rtnl, podNetns: Netns, link: Link, result: Result, enableDad: boolean): Promise<void> {
  const ips = result.ips ?? [];
  const hasV6 = ips.some((ip) => familyOfCidr(ip.address) === 6);
  await step(`set sysctls on ${link.name}`, () => podSysctls(podNetns, link.name, hasV6, enableDad));
  for (const ip of ips) {
    await step(`add IP address ${ip.address} to ${link.name}`, () => addAddress(pod, link.index, ip.address, { noDad: !enableDad }));
  }
  await step(`set ${link.name} up`, () => setLinkUp(pod, link.index));
  if (enableDad && hasV6) await step(`wait for DAD on ${link.name}`, () => waitForDad(pod, link.index, link.name));
  for (const route of result.routes ?? []) {
    const gw = effectiveGateway(route, ips);
    await step(`add route ${route.dst}${gw ? ` via ${gw}` : ""} on ${link.name}`, async () => {
      try {
        await addRoute(pod, {
          dst: route.dst,
          gw,
          index: link.index,
          priority: route.priority,
          table: route.table,
          scope: route.scope,
          mtu: route.mtu,
          advmss: route.advmss,
        });
      } catch (err) {
        // The same route twice in the result (an IPAM default route plus isDefaultGateway's).
        if (!isKernelError(err, "EEXIST")) throw err;
      }
    });
  }
}
