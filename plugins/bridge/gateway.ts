import { formatCidr, formatIp, networkOf, parseCidr, parseIp, type IpFamily } from "../../lib/ip/ip.js";
import type { IPConfig, Result, Route } from "../../lib/cni/result.js";

/** The container interface's index in the result: [bridge, host veth, container]. */
export const CONTAINER_INTERFACE_INDEX = 2;

export interface Gateways {
  /** Per family: "gateway/prefix" addresses the bridge should carry. */
  4: string[];
  6: string[];
}

const DEFAULT_DST = { 4: "0.0.0.0/0", 6: "::/0" } as const;

export function familyOfCidr(cidr: string): IpFamily {
  const parsed = parseCidr(cidr);
  if (!parsed) throw new Error(`invalid address ${JSON.stringify(cidr)}`);
  return parsed.ip.family;
}

/** The subnet's first address: what the reference uses when IPAM gives no gateway. */
export function firstAddress(cidr: string): string {
  const net = networkOf(parseCidr(cidr)!);
  const bytes = net.ip.bytes.slice();
  for (let i = bytes.length - 1; i >= 0; i--) {
    bytes[i] = (bytes[i]! + 1) & 0xff;
    if (bytes[i] !== 0) break;
  }
  return formatIp({ family: net.ip.family, bytes });
}

/**
 * The reference's calcGateways, as a pure function of the IPAM result: every IP points at the
 * container interface, gets the subnet's first address as gateway when isGateway and IPAM gave
 * none, and with isDefaultGateway a default route via that gateway is appended per family unless
 * IPAM already gave one with a gateway. Returns the new result and the bridge's gateway addresses.
 */
export function calcGateways(ipam: Result, isGateway: boolean, isDefaultGateway: boolean): { result: Result; gateways: Gateways } {
  const routes: Route[] = (ipam.routes ?? []).map((r) => ({ ...r }));
  const gateways: Gateways = { 4: [], 6: [] };
  const defaultFound = { 4: false, 6: false };
  const ips: IPConfig[] = (ipam.ips ?? []).map((ip) => {
    const family = familyOfCidr(ip.address);
    const out: IPConfig = { ...ip, interface: CONTAINER_INTERFACE_INDEX };
    if (out.gateway === undefined && isGateway) out.gateway = firstAddress(ip.address);
    if (isDefaultGateway && !defaultFound[family]) {
      defaultFound[family] = routes.some((r) => r.gw !== undefined && r.dst === DEFAULT_DST[family]);
      if (!defaultFound[family]) {
        const route: Route = { dst: DEFAULT_DST[family] };
        if (out.gateway !== undefined) route.gw = out.gateway;
        routes.push(route);
        defaultFound[family] = true;
      }
    }
    if (isGateway && out.gateway !== undefined) {
      gateways[family].push(`${out.gateway}/${parseCidr(ip.address)!.prefixLength}`);
    }
    return out;
  });
  const result: Result = { ...ipam, ips, routes };
  return { result, gateways };
}

/**
 * The gateway a route without one is installed via: the gateway of the first IP of its family
 * (pkg/ipam ConfigureIface). flannel's FLANNEL_NETWORK route is such a route.
 */
export function effectiveGateway(route: Route, ips: readonly IPConfig[]): string | undefined {
  if (route.gw) return route.gw;
  const family = familyOfCidr(route.dst);
  return ips.find((ip) => ip.gateway !== undefined && familyOfCidr(ip.address) === family)?.gateway;
}

/** The canonical form of a route destination (network address, Go formatting). */
export function canonicalDst(dst: string): string {
  return formatCidr(networkOf(parseCidr(dst)!));
}

export function sameIp(a: string | undefined, b: string | undefined): boolean {
  if (a === undefined || b === undefined) return a === b;
  const pa = parseIp(a);
  const pb = parseIp(b);
  return !!pa && !!pb && formatIp(pa) === formatIp(pb);
}
