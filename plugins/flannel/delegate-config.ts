import type { NetConf } from "../../lib/cni/config.js";
import { CniError, ErrorCode } from "../../lib/errors/cni.js";
import { canonicalIp, formatCidr, parseCidr } from "../../lib/ip/ip.js";
import type { SubnetEnv } from "./subnet-env.js";

export type Json = null | boolean | number | string | Json[] | JsonObject;
export interface JsonObject {
  [key: string]: Json;
}

/** A route as the user may write it in ipam.routes (schema.ts). */
export interface RouteConf {
  dst: string;
  gw?: string;
  mtu?: number;
  advmss?: number;
  priority?: number;
  table?: number;
  scope?: number;
}

/** flannel's config after schema.ts (defaults applied). */
export interface FlannelConf extends NetConf {
  subnetFile: string;
  dataDir: string;
  delegate?: JsonObject | null;
  ipam?: { type?: string; routes?: RouteConf[] | null; [key: string]: unknown };
}

/** The delegate's config: the user's delegate and ipam keys, completed from subnet.env. */
export interface DelegateConfig extends JsonObject {
  name: string;
  type: string;
}

function invalid(message: string): CniError {
  return new CniError(ErrorCode.InvalidNetworkConfig, `invalid network config: ${message}`);
}

/** The Go plugin's refusals, checked before subnet.env is read so a config error is never masked. */
export function checkDelegateBase(conf: FlannelConf): void {
  const base = conf.delegate ?? {};
  if ("name" in base) throw invalid("delegate.name must not be set: flannel sets it to the network name");
  if ("ipam" in base) throw invalid("delegate.ipam must not be set: flannel builds it (use the top-level ipam key)");
}

/**
 * ipam.routes as the Go plugin re-encodes them through types.Route: known fields only, addresses in
 * Go's canonical form (dst keeps its host bits), mtu/advmss/priority dropped when 0, table and scope
 * kept when present.
 */
function userRoutes(routes: readonly RouteConf[]): JsonObject[] {
  return routes.map((route, i) => {
    const dst = parseCidr(route.dst);
    if (!dst) throw invalid(`ipam.routes[${i}].dst ${JSON.stringify(route.dst)} is not a CIDR`);
    const out: JsonObject = { dst: formatCidr(dst) };
    if (route.gw !== undefined && route.gw !== "") {
      const gw = canonicalIp(route.gw);
      if (gw === undefined) throw invalid(`ipam.routes[${i}].gw ${JSON.stringify(route.gw)} is not an IP address`);
      out.gw = gw;
    }
    if (route.mtu) out.mtu = route.mtu;
    if (route.advmss) out.advmss = route.advmss;
    if (route.priority) out.priority = route.priority;
    if (route.table !== undefined) out.table = route.table;
    if (route.scope !== undefined) out.scope = route.scope;
    return out;
  });
}

/**
 * The delegate config, exactly as flannel-io/cni-plugin builds it (doCmdAdd, getDelegateIPAM): the
 * user's delegate with name, type (bridge), ipMasq (the opposite of FLANNEL_IPMASQ), mtu
 * (FLANNEL_MTU), isGateway (bridge only) and cniVersion filled in where absent, runtimeConfig copied
 * whole, and an ipam block from the user's with type host-local, one range set per family from the
 * node's subnets, and a route to every cluster network after the user's routes.
 */
export function buildDelegateConfig(conf: FlannelConf, env: SubnetEnv): DelegateConfig {
  checkDelegateBase(conf);
  const delegate = structuredClone<JsonObject>(conf.delegate ?? {});
  if (conf.runtimeConfig !== undefined) delegate.runtimeConfig = structuredClone(conf.runtimeConfig) as JsonObject;
  delegate.name = conf.name;
  if (!("type" in delegate)) delegate.type = "bridge";
  if (!("ipMasq" in delegate)) delegate.ipMasq = !env.ipMasq;
  if (!("mtu" in delegate)) delegate.mtu = env.mtu;
  if (delegate.type === "bridge" && !("isGateway" in delegate)) delegate.isGateway = true;
  if (conf.cniVersion) delegate.cniVersion = conf.cniVersion;

  const { routes, ...ipamBase } = structuredClone(conf.ipam ?? {});
  const ipam = ipamBase as JsonObject;
  if (!("type" in ipam)) ipam.type = "host-local";
  const rangeSets: JsonObject[][] = [];
  if (env.subnets.length > 0) rangeSets.push(env.subnets.map((subnet) => ({ subnet })));
  if (env.ipv6Subnets.length > 0) rangeSets.push(env.ipv6Subnets.map((subnet) => ({ subnet })));
  ipam.ranges = rangeSets;
  ipam.routes = [...userRoutes(routes ?? []), ...[...env.networks, ...env.ipv6Networks].map((dst) => ({ dst }))];
  delegate.ipam = ipam;
  return delegate as DelegateConfig;
}

// ---------------------------------------------------------------------------------------------
// Rendering as Go's json.Marshal does, so the saved file is byte for byte the Go plugin's.

/** types.Route is a struct: its fields come out in declaration order, not sorted. */
const ROUTE_FIELDS = ["dst", "gw", "mtu", "advmss", "priority", "table", "scope"];

/** Go escapes these inside strings (HTML safety) where JSON.stringify does not. */
function goString(s: string): string {
  return JSON.stringify(s).replace(/[<>&\u2028\u2029]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`);
}

/** Objects marshal with their keys sorted (Go maps), except the routes under ipam (types.Route structs). */
function marshal(value: Json | undefined, path: readonly string[]): string {
  if (value === null || value === undefined) return "null";
  if (typeof value === "string") return goString(value);
  if (typeof value !== "object") return JSON.stringify(value);
  if (Array.isArray(value)) return `[${value.map((v) => marshal(v, [...path, "[]"])).join(",")}]`;
  const isRoute = path.length === 3 && path[0] === "ipam" && path[1] === "routes";
  const keys = isRoute ? ROUTE_FIELDS.filter((k) => k in value) : Object.keys(value).sort();
  return `{${keys.map((k) => `${goString(k)}:${marshal(value[k], [...path, k])}`).join(",")}}`;
}

/** The delegate config as the Go plugin saves and sends it: json.Marshal of its map, compact, no newline. */
export function renderDelegateConfig(config: JsonObject): string {
  return marshal(config, []);
}
