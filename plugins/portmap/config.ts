import type { NetConf } from "../../lib/cni/config.js";
import { CniError, ErrorCode } from "../../lib/errors/cni.js";
import { formatCidr, formatIp, networkOf, parseCidr, parseIp, type IpFamily } from "../../lib/ip/ip.js";
import type { Result } from "../../lib/cni/result.js";

export type Protocol = "tcp" | "udp" | "sctp";
export type Backend = "iptables" | "nftables";

export interface PortMappingConf {
  hostPort: number;
  containerPort: number;
  protocol: Protocol | "TCP" | "UDP" | "SCTP";
  hostIP?: string;
}

/** The config as schema.ts validates it, defaults filled in. */
export interface PortmapConf extends NetConf {
  snat: boolean;
  masqAll: boolean;
  markMasqBit?: number;
  externalSetMarkChain?: string;
  conditionsV4?: string[] | null;
  conditionsV6?: string[] | null;
  backend?: Backend;
  runtimeConfig?: { portMappings?: PortMappingConf[] | null; [key: string]: unknown };
}

/** A port mapping after validation: ports in range, protocol lower case, hostIP parsed. */
export interface PortMapping {
  hostPort: number;
  containerPort: number;
  protocol: Protocol;
  /** Canonical address and family; absent when no hostIP was given. */
  hostIP?: { ip: string; family: IpFamily; unspecified: boolean };
}

/** The pod address portmap forwards to, one per family at most. */
export interface PodAddress {
  family: IpFamily;
  /** "10.244.1.2" */
  ip: string;
  /** The pod's subnet, "10.244.1.0/24": the sources whose hairpin connections are masqueraded. */
  subnet: string;
}

/** Everything the rules are computed from. */
export interface PortmapSettings {
  network: string;
  containerId: string;
  backend: Backend;
  mappings: PortMapping[];
  snat: boolean;
  masqAll: boolean;
  markMasqBit: number;
  /** The chain that marks connections for masquerade (iptables). */
  setMarkChain: string;
  /** Whether weft owns setMarkChain (false with externalSetMarkChain). */
  ownSetMark: boolean;
  conditions: Record<IpFamily, string[]>;
}

/** Kubernetes uses mark bits 14 and 15, Calico 20-31: the reference's default stays clear of both. */
export const DEFAULT_MARK_BIT = 13;
export const SET_MARK_CHAIN = "CNI-HOSTPORT-SETMARK";

function invalid(message: string): CniError {
  return new CniError(ErrorCode.InvalidNetworkConfig, message);
}

/** "iptables" when the first token is iptables syntax ("-d", "--sport", "!"), "nftables" otherwise (the reference's rule). */
export function backendOfConditions(conditions: readonly string[] | null | undefined): Backend | undefined {
  const first = conditions?.[0];
  if (!first) return undefined;
  return first.startsWith("-") || first.startsWith("!") ? "iptables" : "nftables";
}

/**
 * nftables conditions become part of one rule in an `nft -f` script: a ";" or a line break would
 * end the rule and start another command, a "#" would comment out the rest of it (the jump).
 */
function checkNftConditions(key: string, conditions: readonly string[]): void {
  for (const token of conditions) {
    const quotes = (token.match(/"/g) ?? []).length;
    if (/[;#\n\r\0\\']/.test(token) || quotes % 2 !== 0) {
      throw invalid(`invalid ${key} token ${JSON.stringify(token)}: nftables conditions may not contain ; # ' \\, line breaks or unbalanced quotes`);
    }
  }
}

function checkIptablesConditions(key: string, conditions: readonly string[]): void {
  for (const token of conditions) {
    if (/[\n\r\0]/.test(token)) throw invalid(`invalid ${key} token ${JSON.stringify(token)}: line breaks are not allowed`);
  }
}

function parseMapping(m: PortMappingConf, i: number): PortMapping {
  const mapping: PortMapping = {
    hostPort: m.hostPort,
    containerPort: m.containerPort,
    protocol: m.protocol.toLowerCase() as Protocol,
  };
  if (m.hostIP !== undefined && m.hostIP !== "") {
    const ip = parseIp(m.hostIP);
    if (!ip) throw invalid(`invalid runtimeConfig.portMappings[${i}].hostIP ${JSON.stringify(m.hostIP)}: not an IP address`);
    mapping.hostIP = { ip: formatIp(ip), family: ip.family, unspecified: ip.bytes.every((b) => b === 0) };
  }
  return mapping;
}

/**
 * The backend: the one the config names, else the one its backend-specific keys imply (so a
 * config written for the reference's iptables layout keeps it), else the reference's automatic
 * choice (iptables where it is usable).
 */
function chooseBackend(conf: PortmapConf, automatic: () => Backend): Backend {
  const iptablesKeys: string[] = [];
  const nftablesKeys: string[] = [];
  if (conf.externalSetMarkChain !== undefined) iptablesKeys.push("externalSetMarkChain");
  for (const key of ["conditionsV4", "conditionsV6"] as const) {
    const b = backendOfConditions(conf[key]);
    if (b === "iptables") iptablesKeys.push(key);
    if (b === "nftables") nftablesKeys.push(key);
  }
  if (iptablesKeys.length && nftablesKeys.length) {
    throw invalid(
      `configuration mixes iptables-specific options [${iptablesKeys.join(" ")}] and nftables-specific options [${nftablesKeys.join(" ")}]`,
    );
  }
  const backend: Backend =
    conf.backend ?? (iptablesKeys.length || conf.markMasqBit !== undefined ? "iptables" : nftablesKeys.length ? "nftables" : automatic());
  const wrong = backend === "iptables" ? nftablesKeys : iptablesKeys;
  if (wrong.length) {
    throw invalid(
      `${backend} backend was requested but configuration contains ${backend === "iptables" ? "nftables" : "iptables"}-specific options [${wrong.join(" ")}]`,
    );
  }
  return backend;
}

export function portmapSettings(conf: PortmapConf, containerId: string, automatic: () => Backend): PortmapSettings {
  if (conf.markMasqBit !== undefined && conf.externalSetMarkChain !== undefined) {
    throw invalid("Cannot specify externalSetMarkChain and markMasqBit");
  }
  const backend = chooseBackend(conf, automatic);
  const conditions: Record<IpFamily, string[]> = { 4: [...(conf.conditionsV4 ?? [])], 6: [...(conf.conditionsV6 ?? [])] };
  for (const [family, key] of [
    [4, "conditionsV4"],
    [6, "conditionsV6"],
  ] as const) {
    if (backend === "nftables") checkNftConditions(key, conditions[family]);
    else checkIptablesConditions(key, conditions[family]);
  }
  return {
    network: conf.name,
    containerId,
    backend,
    mappings: (conf.runtimeConfig?.portMappings ?? []).map(parseMapping),
    snat: conf.snat,
    masqAll: conf.masqAll,
    markMasqBit: conf.markMasqBit ?? DEFAULT_MARK_BIT,
    setMarkChain: conf.externalSetMarkChain ?? SET_MARK_CHAIN,
    ownSetMark: conf.externalSetMarkChain === undefined,
    conditions,
  };
}

/**
 * The pod's addresses: the first IPv4 and the first IPv6 of prevResult on the sandbox interface
 * CNI_IFNAME (an address without an interface index, as IPAM-only results have, counts).
 */
export function podAddresses(prevResult: Result, ifName: string): PodAddress[] {
  const found = new Map<IpFamily, PodAddress>();
  const interfaces = prevResult.interfaces ?? [];
  for (const entry of prevResult.ips ?? []) {
    const cidr = parseCidr(entry.address);
    if (!cidr || found.has(cidr.ip.family)) continue;
    const index = entry.interface;
    if (index !== undefined && index >= 0 && index < interfaces.length) {
      const intf = interfaces[index]!;
      if (intf.name !== ifName || !intf.sandbox) continue;
    }
    found.set(cidr.ip.family, { family: cidr.ip.family, ip: formatIp(cidr.ip), subnet: formatCidr(networkOf(cidr)) });
  }
  return [...found.values()].sort((a, b) => a.family - b.family);
}
