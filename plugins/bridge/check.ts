import type { CniEnv } from "../../lib/cni/env.js";
import { CniError, ErrorCode } from "../../lib/errors/cni.js";
import type { Interface, Result } from "../../lib/cni/result.js";
import { listAddresses } from "../../lib/netlink/addr.js";
import { linkByName, type Link } from "../../lib/netlink/link.js";
import { chooseBackend, missingMasquerade, type MasqAttachment } from "../../lib/netfilter/masquerade.js";
import type { Netns } from "../../lib/netns/netns.js";
import { listRoutes, RT_TABLE_MAIN, type KernelRoute } from "../../lib/netlink/route.js";
import type { Rtnl } from "../../lib/netlink/rtnl.js";
import type { BridgeSettings } from "./config.js";
import { canonicalDst, CONTAINER_INTERFACE_INDEX, effectiveGateway, familyOfCidr, firstAddress, sameIp } from "./gateway.js";

export interface CheckContext {
  host: Rtnl;
  pod: Rtnl;
  podNetns: Netns;
  settings: BridgeSettings;
  prevResult: Result;
  env: CniEnv;
  attachment: MasqAttachment;
}

/**
 * CHECK: compares the kernel with prevResult and the config and reports every difference at once.
 * Routes without a gateway in prevResult (flannel's FLANNEL_NETWORK route) are expected via the
 * gateway of their family, as ADD installed them, so a healthy flannel pod passes.
 */
export async function checkAttachment(c: CheckContext): Promise<void> {
  const { conf } = c.settings;
  const problems: string[] = [];
  const interfaces = c.prevResult.interfaces ?? [];

  const brEntry = interfaces.find((i) => i.name === conf.bridge && !i.sandbox);
  const bridge = await linkByName(c.host, conf.bridge);
  if (!bridge) problems.push(`bridge ${conf.bridge} not found`);
  else {
    if (bridge.kind !== "bridge") problems.push(`${conf.bridge} is not a bridge`);
    if (brEntry?.mac && brEntry.mac !== bridge.mac) problems.push(`bridge ${conf.bridge} MAC is ${bridge.mac}, prevResult says ${brEntry.mac}`);
    if (bridge.promisc !== conf.promiscMode)
      problems.push(`bridge ${conf.bridge} promiscuous mode is ${bridge.promisc}, config says ${conf.promiscMode}`);
    if (conf.mtu && bridge.mtu !== conf.mtu) problems.push(`bridge ${conf.bridge} MTU is ${bridge.mtu}, config says ${conf.mtu}`);
  }

  const contIndex = interfaces.findIndex((i) => i.name === c.env.ifName && i.sandbox === c.env.netns);
  const contEntry: Interface | undefined = interfaces[contIndex];
  let container: Link | undefined;
  if (!contEntry) {
    problems.push(`prevResult has no interface ${c.env.ifName} in sandbox ${c.env.netns}`);
  } else {
    container = await linkByName(c.pod, c.env.ifName);
    if (!container) problems.push(`interface ${c.env.ifName} not found in ${c.env.netns}`);
    else {
      if (container.kind !== "veth") problems.push(`${c.env.ifName} is a ${container.kind ?? "device"}, not a veth`);
      if (contEntry.mac && contEntry.mac !== container.mac)
        problems.push(`${c.env.ifName} MAC is ${container.mac}, prevResult says ${contEntry.mac}`);
      if (conf.mtu && container.mtu !== conf.mtu) problems.push(`${c.env.ifName} MTU is ${container.mtu}, config says ${conf.mtu}`);
      if (!conf.disableContainerInterface && !container.up) problems.push(`${c.env.ifName} is down`);
    }
  }

  // The host veth: the prevResult interface (outside the sandbox) whose peer is the container end.
  let hostVeth: Link | undefined;
  for (const entry of interfaces) {
    if (entry.sandbox || entry === brEntry || !entry.name) continue;
    const link = await linkByName(c.host, entry.name);
    if (link?.kind !== "veth" || !container || link.peerIndex !== container.index || container.peerIndex !== link.index) continue;
    hostVeth = link;
    if (bridge && link.master !== bridge.index) problems.push(`host veth ${link.name} is not a port of ${conf.bridge}`);
    if (entry.mac && entry.mac !== link.mac) problems.push(`host veth ${link.name} MAC is ${link.mac}, prevResult says ${entry.mac}`);
    if (conf.mtu && link.mtu !== conf.mtu) problems.push(`host veth ${link.name} MTU is ${link.mtu}, config says ${conf.mtu}`);
    if (link.hairpin !== conf.hairpinMode) problems.push(`host veth ${link.name} hairpin mode is ${link.hairpin}, config says ${conf.hairpinMode}`);
    if (link.isolated !== conf.portIsolation)
      problems.push(`host veth ${link.name} port isolation is ${link.isolated}, config says ${conf.portIsolation}`);
    break;
  }
  if (container && !hostVeth) problems.push(`no host veth of ${conf.bridge} peered with ${c.env.ifName} in prevResult`);

  const ips = (c.prevResult.ips ?? []).filter(
    (ip) => ip.interface === undefined || ip.interface === contIndex || ip.interface === CONTAINER_INTERFACE_INDEX,
  );
  if (container) {
    const present = new Set((await listAddresses(c.pod, { index: container.index })).map((a) => a.cidr));
    for (const ip of ips) if (!present.has(ip.address)) problems.push(`address ${ip.address} not on ${c.env.ifName}`);

    const routes: Record<4 | 6, KernelRoute[] | undefined> = { 4: undefined, 6: undefined };
    for (const route of c.prevResult.routes ?? []) {
      const family = familyOfCidr(route.dst);
      routes[family] ??= await listRoutes(c.pod, { family, table: route.table ?? RT_TABLE_MAIN });
      const dst = canonicalDst(route.dst);
      const gw = effectiveGateway(route, ips);
      const found = routes[family].some((r) => r.dst === dst && sameIp(r.gw, gw));
      if (!found) problems.push(`route ${dst}${gw ? ` via ${gw}` : ""} not found in ${c.env.netns}`);
    }
  }

  if (c.settings.isGateway && bridge && conf.vlan === 0) {
    const present = new Set((await listAddresses(c.host, { index: bridge.index })).map((a) => a.cidr));
    for (const ip of ips) {
      const gw = `${ip.gateway ?? firstAddress(ip.address)}/${ip.address.split("/")[1]}`;
      if (!present.has(gw)) problems.push(`bridge ${conf.bridge} does not hold gateway address ${gw}`);
    }
  }

  if (conf.ipMasq && ips.length) {
    // A pod added before a change of backend (or by the Go plugin with the other one) keeps its
    // rules where they were made: either complete set is healthy.
    const backend = chooseBackend(conf.ipMasqBackend);
    const addresses = ips.map((ip) => ip.address);
    const missing = await missingMasquerade(c.attachment, addresses, backend);
    if (
      missing.length &&
      (await missingMasquerade(c.attachment, addresses, backend === "iptables" ? "nftables" : "iptables").catch(() => missing)).length
    ) {
      problems.push(`masquerade rules missing (${backend}): ${missing.join("; ")}`);
    }
  }

  if (problems.length) {
    throw new CniError(ErrorCode.CheckFailed, `bridge CHECK failed: ${problems.join("; ")}`);
  }
}
