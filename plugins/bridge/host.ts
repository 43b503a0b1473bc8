import { CniError, ErrorCode } from "../../lib/errors/cni.js";
import { addAddress, delAddress, listAddresses, prefixesOverlap } from "../../lib/netlink/addr.js";
import { isKernelError } from "../../lib/errors/kernel.js";
import {
  addPortVlan,
  createVethPair,
  delPortVlan,
  ensureBridge,
  linkByIndex,
  linkByName,
  listPortVlans,
  randomVethName,
  setHairpin,
  setLinkMac,
  setLinkUp,
  setPortIsolated,
  type Link,
} from "../../lib/netlink/link.js";
import type { Netns } from "../../lib/netns/netns.js";
import type { Rtnl } from "../../lib/netlink/rtnl.js";
import { trySysctl } from "../../lib/sysctl/sysctl.js";
import type { BridgeSettings } from "./config.js";

/** The bridge, created or reused, up, with the MTU; the reference's ensureBridge. */
export async function setupBridge(host: Rtnl, s: BridgeSettings): Promise<Link> {
  const { conf } = s;
  const vlanFiltering = conf.vlan !== 0 || s.trunk.length > 0;
  let link: Link;
  try {
    ({ link } = await ensureBridge(host, { name: conf.bridge, mtu: conf.mtu || undefined, promisc: conf.promiscMode, vlanFiltering }));
  } catch (err) {
    if (vlanFiltering && isKernelError(err, "ENOTSUP", "EOPNOTSUPP")) {
      throw new CniError(
        ErrorCode.KernelRefused,
        `${(err as Error).message}: this kernel cannot filter VLANs on a bridge (CONFIG_BRIDGE_VLAN_FILTERING), which vlan and vlanTrunk need`,
      );
    }
    throw err;
  }
  // The bridge's routes are the plugin's: no router advertisement should add any.
  trySysctl(`net/ipv6/conf/${conf.bridge}/accept_ra`, "0");
  return link;
}

export interface VethPair {
  hostName: string;
  hostIndex: number;
}

/** An interface of that name already in the pod is an error (the spec's ADD), found before anything is made. */
export async function ensureIfNameFree(pod: Rtnl, podNetns: Netns, ifName: string): Promise<void> {
  if (await linkByName(pod, ifName)) {
    throw new CniError(ErrorCode.NodeConflict, `container veth name ${JSON.stringify(ifName)} already exists in ${podNetns.path}`);
  }
}

/**
 * Creates the pod's veth pair in one request: the container end named ifName straight in the pod's
 * namespace (with the MTU and the requested MAC), the host end "veth<8 hex>" enslaved to the bridge.
 */
export async function createPodVeth(host: Rtnl, pod: Rtnl, podNetns: Netns, bridge: Link, ifName: string, s: BridgeSettings): Promise<VethPair> {
  for (let attempt = 1; ; attempt++) {
    const hostName = randomVethName();
    try {
      await createVethPair(host, {
        name: hostName,
        peerName: ifName,
        mtu: s.conf.mtu || undefined,
        peerMac: s.mac,
        peerNetns: podNetns,
        master: bridge.index,
      });
    } catch (err) {
      // EEXIST here is the random host name taken (the container name was checked above).
      if (isKernelError(err, "EEXIST") && attempt < 10 && !(await linkByName(pod, ifName))) continue;
      throw err;
    }
    const link = await linkByName(host, hostName);
    if (!link) throw new CniError(ErrorCode.Internal, `host veth ${hostName} vanished after it was created`);
    return { hostName, hostIndex: link.index };
  }
}

/** The host end as a bridge port: hairpin, isolation, VLANs, up. */
export async function configureHostVeth(host: Rtnl, veth: VethPair, s: BridgeSettings): Promise<void> {
  const { conf } = s;
  trySysctl(`net/ipv6/conf/${veth.hostName}/accept_ra`, "0");
  if (conf.hairpinMode) await setHairpin(host, veth.hostIndex, true);
  if (conf.portIsolation) await setPortIsolated(host, veth.hostIndex, true);
  if ((conf.vlan !== 0 || s.trunk.length > 0) && !conf.preserveDefaultVlan) {
    for (const v of await listPortVlans(host, veth.hostIndex)) await delPortVlan(host, veth.hostIndex, v.vid);
  }
  if (conf.vlan !== 0) await addPortVlan(host, veth.hostIndex, { vid: conf.vlan, pvid: true, untagged: true });
  for (const vid of s.trunk) await addPortVlan(host, veth.hostIndex, { vid, pvid: false, untagged: false });
  await setLinkUp(host, veth.hostIndex);
}

/**
 * With vlan and isGateway, the gateway lives on "<bridge>.<vlan>", a veth whose peer is an access
 * port of that VLAN on the bridge (the reference's ensureVlanInterface).
 */
export async function ensureVlanGateway(host: Rtnl, bridge: Link, s: BridgeSettings): Promise<Link> {
  const name = `${bridge.name}.${s.conf.vlan}`;
  const existing = await linkByName(host, name);
  if (existing) return existing;
  const peerName = randomVethName();
  await createVethPair(host, { name, peerName, mtu: bridge.mtu, master: bridge.index });
  const peer = await linkByName(host, peerName);
  if (!peer) throw new CniError(ErrorCode.Internal, `vlan gateway peer ${peerName} vanished`);
  await configureHostVeth(
    host,
    { hostName: peerName, hostIndex: peer.index },
    { ...s, trunk: [], conf: { ...s.conf, hairpinMode: false, portIsolation: false } },
  );
  const link = await linkByName(host, name);
  if (!link) throw new CniError(ErrorCode.Internal, `vlan gateway ${name} vanished`);
  await setLinkUp(host, link.index);
  return link;
}

/**
 * Puts a gateway address on the bridge. An address already there is fine; a different IPv4
 * address (or an overlapping IPv6 one) is the operator's most common failure: with forceAddress it
 * is replaced, otherwise the error names both and how to fix it. The address skips IPv6 duplicate
 * address detection, so pods can use the gateway the moment ADD returns.
 */
export async function ensureGatewayAddress(host: Rtnl, link: Link, gateway: string, family: 4 | 6, forceAddress: boolean): Promise<void> {
  for (const a of await listAddresses(host, { index: link.index, family })) {
    if (a.scope === "link") continue;
    if (a.cidr === gateway) return;
    if (family === 4 || prefixesOverlap(a.cidr, gateway)) {
      if (forceAddress) {
        await delAddress(host, link.index, a.cidr);
      } else {
        throw new CniError(
          ErrorCode.NodeConflict,
          `${JSON.stringify(link.name)} already has an IP address different from ${gateway}`,
          `${link.name} holds ${a.cidr} but this network's gateway is ${gateway}: the node's pod subnet changed ` +
            `(new flannel lease, cluster reset) while the bridge kept the old address. Once no pod uses the old subnet, ` +
            `delete the bridge (ip link delete ${link.name}) or set "forceAddress": true to replace the address.`,
        );
      }
    }
  }
  try {
    await addAddress(host, link.index, gateway, { noDad: true });
  } catch (err) {
    // Another ADD racing on the same bridge added it first.
    if (!isKernelError(err, "EEXIST")) throw err;
  }
  // Pin the bridge MAC: otherwise it follows the lowest-numbered port as pods come and go. A bridge
  // without ports may have no MAC yet (all zeros), which cannot be pinned.
  const current = (await linkByIndex(host, link.index))?.mac ?? link.mac;
  if (current && !/^(00:){5}00$/.test(current)) await setLinkMac(host, link.index, current);
}
