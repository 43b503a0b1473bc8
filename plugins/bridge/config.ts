import type { NetConf } from "../../lib/cni/config.js";
import { IFNAME_PATTERN } from "../../lib/cni/env.js";
import { CniError, ErrorCode } from "../../lib/errors/cni.js";
import type { MasqBackend } from "../../lib/netfilter/masquerade.js";

export interface VlanTrunkEntry {
  id?: number;
  minID?: number;
  maxID?: number;
}

/** The config as schema.ts validates it, defaults filled in. */
export interface BridgeConf extends NetConf {
  bridge: string;
  isGateway: boolean;
  isDefaultGateway: boolean;
  forceAddress: boolean;
  ipMasq: boolean;
  ipMasqBackend?: MasqBackend;
  mtu: number;
  hairpinMode: boolean;
  promiscMode: boolean;
  vlan: number;
  preserveDefaultVlan: boolean;
  vlanTrunk?: VlanTrunkEntry[] | null;
  enabledad: boolean;
  macspoofchk: boolean;
  disableContainerInterface: boolean;
  portIsolation: boolean;
  runtimeConfig?: { mac?: string; [key: string]: unknown };
  args?: { cni?: { mac?: string; [key: string]: unknown }; [key: string]: unknown };
}

/** What the plugin acts on: the config's keys after the reference's checks and implications. */
export interface BridgeSettings {
  conf: BridgeConf;
  /** isGateway, or implied by isDefaultGateway. */
  isGateway: boolean;
  /** An ipam.type is set: addresses come from IPAM; otherwise the link is layer 2 only. */
  ipamType?: string;
  /** Tagged VLANs of the host port, sorted, from vlanTrunk. */
  trunk: number[];
  /** The container MAC asked for: runtimeConfig.mac > args.cni.mac > CNI_ARGS MAC. */
  mac?: string;
}

function invalid(message: string): CniError {
  return new CniError(ErrorCode.InvalidNetworkConfig, message);
}

/** vlanTrunk -> sorted VLAN ids, with the reference's messages (collectVlanTrunk). */
export function collectVlanTrunk(entries: readonly VlanTrunkEntry[] | null | undefined): number[] {
  const ids = new Set<number>();
  const valid = (v: number) => v > 0 && v <= 4094;
  for (const e of entries ?? []) {
    if (e.minID !== undefined && e.maxID !== undefined) {
      if (!valid(e.minID)) throw invalid("incorrect trunk minID parameter");
      if (!valid(e.maxID)) throw invalid("incorrect trunk maxID parameter");
      if (e.maxID < e.minID) throw invalid("minID is greater than maxID in trunk parameter");
      for (let v = e.minID; v <= e.maxID; v++) ids.add(v);
    } else if (e.minID === undefined && e.maxID !== undefined) {
      throw invalid("minID and maxID should be configured simultaneously, minID is missing");
    } else if (e.minID !== undefined && e.maxID === undefined) {
      throw invalid("minID and maxID should be configured simultaneously, maxID is missing");
    }
    if (e.id !== undefined) {
      if (!valid(e.id)) throw invalid("incorrect trunk id parameter");
      ids.add(e.id);
    }
  }
  return [...ids].sort((a, b) => a - b);
}

/** Go's net.ParseMAC output form: lower case, colons. */
function normalizeMac(mac: string, source: string): string {
  if (!/^([0-9a-fA-F]{2}[:-]){5}[0-9a-fA-F]{2}$/.test(mac)) {
    throw new CniError(ErrorCode.InvalidNetworkConfig, `invalid MAC address ${JSON.stringify(mac)} in ${source}`);
  }
  return mac.toLowerCase().replace(/-/g, ":");
}

export function bridgeSettings(conf: BridgeConf, cniArgs: ReadonlyMap<string, string>): BridgeSettings {
  // The name becomes a netlink attribute and part of sysctl paths (net/ipv6/conf/<bridge>/...).
  if (conf.bridge.length > 15 || !IFNAME_PATTERN.test(conf.bridge) || conf.bridge === "." || conf.bridge === "..") {
    throw invalid(`invalid bridge name ${JSON.stringify(conf.bridge)}: 1 to 15 of the characters a-z A-Z 0-9 . _ -, and not . or ..`);
  }
  if (conf.vlan < 0 || conf.vlan > 4094) throw invalid(`invalid VLAN ID ${conf.vlan} (must be between 0 and 4094)`);
  const trunk = collectVlanTrunk(conf.vlanTrunk);
  if (conf.hairpinMode && conf.promiscMode) throw invalid("cannot set hairpin mode and promiscuous mode at the same time");
  const ipamType = conf.ipam?.type || undefined;
  if (conf.disableContainerInterface && ipamType) throw invalid("cannot use IPAM when DisableContainerInterface flag is set");
  let mac: string | undefined;
  const argsMac = cniArgs.get("MAC");
  if (argsMac) mac = normalizeMac(argsMac, "CNI_ARGS MAC");
  if (conf.args?.cni?.mac) mac = normalizeMac(conf.args.cni.mac, "args.cni.mac");
  if (conf.runtimeConfig?.mac) mac = normalizeMac(conf.runtimeConfig.mac, "runtimeConfig.mac");
  const settings: BridgeSettings = { conf, isGateway: conf.isGateway || conf.isDefaultGateway, trunk };
  if (ipamType) settings.ipamType = ipamType;
  if (mac) settings.mac = mac;
  return settings;
}
