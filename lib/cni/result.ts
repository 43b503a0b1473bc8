import { CniError, ErrorCode } from "../errors/cni.js";
import { canonicalCidr, canonicalIp, parseCidr } from "../ip/ip.js";
import { CURRENT_VERSION, DEFAULT_CONFIG_VERSION, isSupportedVersion, type SpecVersion } from "./version.js";

/** A result in the newest spec's shape (1.1.0); older versions are produced from it when printed. */
export interface Interface {
  name: string;
  mac?: string;
  mtu?: number;
  sandbox?: string;
  socketPath?: string;
  pciID?: string;
}

export interface IPConfig {
  /** Index into interfaces. */
  interface?: number;
  address: string;
  gateway?: string;
}

export interface Route {
  dst: string;
  gw?: string;
  mtu?: number;
  advmss?: number;
  priority?: number;
  table?: number;
  scope?: number;
}

export interface DNS {
  nameservers?: string[];
  domain?: string;
  search?: string[];
  options?: string[];
}

export interface Result {
  cniVersion?: string;
  interfaces?: Interface[];
  ips?: IPConfig[];
  routes?: Route[];
  dns?: DNS;
}

// ---------------------------------------------------------------------------------------------
// Reading a result of any version (a prevResult, or a delegate's output) into the 1.1.0 shape.

type Json = unknown;

function isObject(v: Json): v is Record<string, Json> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

class ResultReader {
  constructor(private readonly what: string) {}

  fail(field: string, problem: string): never {
    throw new CniError(ErrorCode.DecodingFailure, `${this.what}: ${field} ${problem}`);
  }

  object(v: Json, field: string): Record<string, Json> {
    if (!isObject(v)) this.fail(field, "must be an object");
    return v;
  }

  list(v: Json, field: string): Json[] {
    if (v === undefined || v === null) return [];
    if (!Array.isArray(v)) this.fail(field, "must be a list");
    return v;
  }

  optionalString(v: Json, field: string): string | undefined {
    if (v === undefined || v === null || v === "") return undefined;
    if (typeof v !== "string") this.fail(field, "must be a string");
    return v;
  }

  optionalInt(v: Json, field: string): number | undefined {
    if (v === undefined || v === null) return undefined;
    if (typeof v !== "number" || !Number.isInteger(v)) this.fail(field, "must be an integer");
    return v;
  }

  cidr(v: Json, field: string): string {
    const s = this.optionalString(v, field);
    const canonical = s === undefined ? undefined : canonicalCidr(s);
    if (canonical === undefined) this.fail(field, `must be an address with a prefix length, got ${JSON.stringify(v)}`);
    return canonical;
  }

  optionalIp(v: Json, field: string): string | undefined {
    const s = this.optionalString(v, field);
    if (s === undefined) return undefined;
    const canonical = canonicalIp(s);
    if (canonical === undefined) this.fail(field, `must be an IP address, got ${JSON.stringify(v)}`);
    return canonical;
  }

  stringList(v: Json, field: string): string[] | undefined {
    const items = this.list(v, field);
    if (items.length === 0) return undefined;
    return items.map((item, i) => {
      if (typeof item !== "string") this.fail(`${field}[${i}]`, "must be a string");
      return item;
    });
  }

  dns(v: Json, field: string): DNS | undefined {
    if (v === undefined || v === null) return undefined;
    const o = this.object(v, field);
    const dns: DNS = {};
    const nameservers = this.stringList(o.nameservers, `${field}.nameservers`);
    const domain = this.optionalString(o.domain, `${field}.domain`);
    const search = this.stringList(o.search, `${field}.search`);
    const options = this.stringList(o.options, `${field}.options`);
    if (nameservers) dns.nameservers = nameservers;
    if (domain !== undefined) dns.domain = domain;
    if (search) dns.search = search;
    if (options) dns.options = options;
    return Object.keys(dns).length ? dns : undefined;
  }

  route(v: Json, field: string): Route {
    const o = this.object(v, field);
    const route: Route = { dst: this.cidr(o.dst, `${field}.dst`) };
    const gw = this.optionalIp(o.gw, `${field}.gw`);
    if (gw !== undefined) route.gw = gw;
    for (const key of ["mtu", "advmss", "priority", "table", "scope"] as const) {
      const n = this.optionalInt(o[key], `${field}.${key}`);
      if (n !== undefined && n !== 0) route[key] = n;
    }
    return route;
  }

  routes(v: Json, field: string): Route[] {
    return this.list(v, field).map((r, i) => this.route(r, `${field}[${i}]`));
  }
}

/**
 * Parses a result printed by any plugin of any version (0.1.0 ... 1.1.0) into the 1.1.0 shape,
 * keeping its cniVersion. A result without cniVersion takes `fallbackVersion` (libcni fills a
 * prevResult's missing version from the config's), and a 0.x one without it is 0.1.0.
 */
export function parseResult(raw: Json, what = "result", fallbackVersion?: string): Result {
  const r: ResultReader = new ResultReader(what);
  const o = r.object(raw, "the result");
  const declared = o.cniVersion ?? "";
  if (typeof declared !== "string") r.fail("cniVersion", "must be a string");
  const version = declared === "" ? (fallbackVersion ?? DEFAULT_CONFIG_VERSION) : declared;
  if (!isSupportedVersion(version)) r.fail("cniVersion", `${JSON.stringify(version)} is not a supported version`);

  const result: Result = { cniVersion: version };
  if (version === "0.1.0" || version === "0.2.0") {
    const ips: IPConfig[] = [];
    const routes: Route[] = [];
    for (const key of ["ip4", "ip6"] as const) {
      if (o[key] === undefined || o[key] === null) continue;
      const ipc = r.object(o[key], key);
      const entry: IPConfig = { address: r.cidr(ipc.ip, `${key}.ip`) };
      const gateway = r.optionalIp(ipc.gateway, `${key}.gateway`);
      if (gateway !== undefined) entry.gateway = gateway;
      ips.push(entry);
      routes.push(...r.routes(ipc.routes, `${key}.routes`));
    }
    result.interfaces = [];
    result.ips = ips;
    result.routes = routes;
  } else {
    result.interfaces = r.list(o.interfaces, "interfaces").map((v, i) => {
      const field = `interfaces[${i}]`;
      const io = r.object(v, field);
      const name = r.optionalString(io.name, `${field}.name`);
      const intf: Interface = { name: name ?? "" };
      for (const key of ["mac", "sandbox", "socketPath", "pciID"] as const) {
        const s = r.optionalString(io[key], `${field}.${key}`);
        if (s !== undefined) intf[key] = s;
      }
      const mtu = r.optionalInt(io.mtu, `${field}.mtu`);
      if (mtu !== undefined && mtu !== 0) intf.mtu = mtu;
      return intf;
    });
    result.ips = r.list(o.ips, "ips").map((v, i) => {
      const field = `ips[${i}]`;
      const io = r.object(v, field);
      const entry: IPConfig = { address: r.cidr(io.address, `${field}.address`) };
      const index = r.optionalInt(io.interface, `${field}.interface`);
      if (index !== undefined) entry.interface = index;
      const gateway = r.optionalIp(io.gateway, `${field}.gateway`);
      if (gateway !== undefined) entry.gateway = gateway;
      return entry;
    });
    result.routes = r.routes(o.routes, "routes");
  }
  const dns = r.dns(o.dns, "dns");
  if (dns) result.dns = dns;
  return result;
}

// ---------------------------------------------------------------------------------------------
// Printing a result in the version the config asked for, exactly as the Go libraries print it.

type Printable = Record<string, unknown>;

function familyOf(cidr: string): 4 | 6 {
  return parseCidr(cidr)?.ip.family ?? 4;
}

/** Go marshals structs in field order and drops omitempty fields: build objects in that order. */
function compact<T extends Printable>(o: T): T {
  for (const key of Object.keys(o)) {
    const v = o[key];
    if (v === undefined || v === "" || (Array.isArray(v) && v.length === 0)) delete o[key];
  }
  return o;
}

function dnsObject(dns: DNS | undefined): Printable {
  return compact({
    nameservers: dns?.nameservers,
    domain: dns?.domain,
    search: dns?.search,
    options: dns?.options,
  });
}

function routeObject(route: Route): Printable {
  return compact({
    dst: route.dst,
    gw: route.gw,
    mtu: route.mtu || undefined,
    advmss: route.advmss || undefined,
    priority: route.priority || undefined,
    table: route.table || undefined,
    scope: route.scope || undefined,
  });
}

function isDnsEmpty(dns: DNS | undefined): boolean {
  return !dns || (!dns.nameservers?.length && !dns.domain && !dns.search?.length && !dns.options?.length);
}

function sortKeysDeep(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(sortKeysDeep);
  if (isObject(v)) {
    const out: Printable = {};
    for (const key of Object.keys(v).sort()) out[key] = sortKeysDeep(v[key]);
    return out;
  }
  return v;
}

/** types100: Result.MarshalJSON round-trips through a map, so keys come out sorted and an empty dns is dropped. */
function as1x(result: Result, version: string): Printable {
  const out = compact({
    cniVersion: version,
    interfaces: result.interfaces?.map((i) => ({
      // Go keeps "name" even when empty: it has no omitempty.
      name: i.name,
      ...compact({ mac: i.mac, mtu: i.mtu || undefined, sandbox: i.sandbox, socketPath: i.socketPath, pciID: i.pciID }),
    })),
    ips: result.ips?.map((ip) => compact({ interface: ip.interface, address: ip.address, gateway: ip.gateway })),
    routes: result.routes?.map(routeObject),
    dns: isDnsEmpty(result.dns) ? undefined : dnsObject(result.dns),
  });
  return sortKeysDeep(out) as Printable;
}

/** types040: struct order, a version per IP, no 1.1 interface fields, dns always present. */
function as04x(result: Result, version: string): Printable {
  const out: Printable = { cniVersion: version };
  const interfaces = (result.interfaces ?? []).map((i) => {
    const o: Printable = { name: i.name };
    if (i.mac) o.mac = i.mac;
    if (i.sandbox) o.sandbox = i.sandbox;
    return o;
  });
  if (interfaces.length) out.interfaces = interfaces;
  const ips = (result.ips ?? []).map((ip) =>
    compact({ version: String(familyOf(ip.address)), interface: ip.interface, address: ip.address, gateway: ip.gateway }),
  );
  if (ips.length) out.ips = ips;
  const routes = (result.routes ?? []).map(routeObject);
  if (routes.length) out.routes = routes;
  out.dns = dnsObject(result.dns);
  return out;
}

/** types020: the first IPv4 and the first IPv6 only, routes split by family, no interfaces. */
function as02x(result: Result, version: string): Printable {
  const pick = (family: 4 | 6) => (result.ips ?? []).find((ip) => familyOf(ip.address) === family);
  const block = (family: 4 | 6): Printable | undefined => {
    const ip = pick(family);
    if (!ip) return undefined;
    const routes = (result.routes ?? []).filter((r) => familyOf(r.dst) === family).map((r) => compact({ dst: r.dst, gw: r.gw }));
    return compact({ ip: ip.address, gateway: ip.gateway, routes });
  };
  const ip4 = block(4);
  const ip6 = block(6);
  if (!ip4 && !ip6) {
    throw new CniError(ErrorCode.IncompatibleVersion, "cannot convert: no valid IP addresses", `result version ${version}`);
  }
  return compact({ cniVersion: version, ip4, ip6, dns: dnsObject(result.dns) });
}

const FORMATTERS: Record<SpecVersion, (result: Result, version: string) => Printable> = {
  "0.1.0": as02x,
  "0.2.0": as02x,
  "0.3.0": as04x,
  "0.3.1": as04x,
  "0.4.0": as04x,
  "1.0.0": as1x,
  "1.1.0": as1x,
};

/** The result as the plain object a Go plugin of that version would marshal. */
export function resultAsVersion(result: Result, version: string): Printable {
  if (!isSupportedVersion(version)) {
    throw new CniError(ErrorCode.IncompatibleVersion, `cannot convert a result to version ${JSON.stringify(version)}`);
  }
  return FORMATTERS[version](result, version);
}

/** Go's encoding/json escapes these even inside strings; matching it keeps outputs byte-identical. */
function escapeLikeGo(json: string): string {
  return json.replace(/[<>&\u2028\u2029]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`);
}

/** json.MarshalIndent(v, "", "    "), no trailing newline. */
export function marshalIndent(v: unknown): string {
  return escapeLikeGo(JSON.stringify(v, null, 4));
}

export function formatResult(result: Result, version: string = result.cniVersion ?? CURRENT_VERSION): string {
  return marshalIndent(resultAsVersion(result, version));
}
