import { readFileSync } from "node:fs";
import { parseIp } from "../ip/ip.js";
import { ensureSysctl } from "../sysctl/sysctl.js";

/**
 * route_localnet for DNAT from 127.0.0.1: a connection to 127.0.0.1:hostPort that the output chain
 * sends to a pod keeps its 127.0.0.1 source until postrouting masquerades it, and the kernel drops
 * such "martian" packets at routing unless route_localnet is set on the outgoing interface. IPv4
 * only: IPv6 has no such knob, so [::1]:hostPort cannot be mapped.
 */

export interface Ipv4Route {
  iface: string;
  /** Network and mask as unsigned 32-bit numbers. */
  destination: number;
  mask: number;
}

function hexToUint32LE(hex: string): number {
  // /proc/net/route prints the in-memory (network order) value as a little-endian host integer.
  const n = parseInt(hex, 16);
  return (((n & 0xff) << 24) | ((n & 0xff00) << 8) | ((n >>> 8) & 0xff00) | (n >>> 24)) >>> 0;
}

/** Parses /proc/net/route (pure, for tests). */
export function parseProcRoutes(text: string): Ipv4Route[] {
  const routes: Ipv4Route[] = [];
  for (const line of text.split("\n").slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f.length < 8) continue;
    routes.push({ iface: f[0]!, destination: hexToUint32LE(f[1]!), mask: hexToUint32LE(f[7]!) });
  }
  return routes;
}

function popcount(n: number): number {
  let c = 0;
  for (let v = n >>> 0; v; v >>>= 1) c += v & 1;
  return c;
}

/** The interface of the longest prefix containing ip in the main table (what the kernel routes by here). */
export function interfaceFor(routes: readonly Ipv4Route[], ip: string): string | undefined {
  const parsed = parseIp(ip);
  if (!parsed || parsed.family !== 4) return undefined;
  const b = parsed.bytes;
  const addr = ((b[0]! << 24) | (b[1]! << 16) | (b[2]! << 8) | b[3]!) >>> 0;
  let best: Ipv4Route | undefined;
  for (const r of routes) {
    if ((addr & r.mask) >>> 0 !== r.destination) continue;
    if (!best || popcount(r.mask) > popcount(best.mask)) best = r;
  }
  return best?.iface;
}

/**
 * Sets route_localnet on the interface that routes to podIp, in the namespace the process runs in.
 * Returns the interface, or undefined when no route leads to the pod.
 */
export function enableRouteLocalnet(podIp: string): string | undefined {
  const iface = interfaceFor(parseProcRoutes(readFileSync("/proc/net/route", "utf8")), podIp);
  if (iface === undefined || iface.includes("/") || iface.includes("..")) return undefined;
  ensureSysctl(`net/ipv4/conf/${iface}/route_localnet`, "1");
  return iface;
}
