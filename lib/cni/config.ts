import { CniError, ErrorCode } from "../errors/cni.js";
import { MAX_NETWORK_NAME_LENGTH, NAME_PATTERN } from "./env.js";
import { parseResult, type DNS, type Result } from "./result.js";
import { DEFAULT_CONFIG_VERSION, isSupportedVersion, SUPPORTED_VERSIONS, type SpecVersion } from "./version.js";

/** The keys every plugin config shares (netconf.schema.ts); each plugin's config extends it. */
export interface NetConf {
  cniVersion?: string;
  name: string;
  type?: string;
  capabilities?: Record<string, boolean>;
  ipam?: { type?: string; [key: string]: unknown };
  dns?: DNS;
  runtimeConfig?: Record<string, unknown>;
  args?: Record<string, unknown>;
  prevResult?: Record<string, unknown>;
}

/** A validator compiled from a JSON Schema at build time (ajv standalone code, gen/validators.js). */
export interface CompiledValidator {
  (data: unknown): boolean;
  errors?: ValidationError[] | null;
}

interface ValidationError {
  instancePath: string;
  message?: string;
  params: Record<string, unknown>;
  keyword: string;
}

export interface ParsedConfig<C extends NetConf> {
  /** The config after validation, with the schema's defaults filled in. */
  config: C;
  /** The config exactly as it arrived, for delegates that must see the caller's bytes. */
  bytes: Buffer;
  version: SpecVersion;
  prevResult?: Result;
}

/**
 * The most stdin a plugin reads: a flannel conflist is a few KB, a prevResult or 1,024 port
 * mappings some tens. Reading stops one byte past it, so a larger input costs neither the time nor
 * the memory of parsing it.
 */
export const MAX_STDIN_BYTES = 1024 * 1024;

/** The most entries of each list of a prevResult (ips, routes, interfaces, dns lists). */
export const MAX_RESULT_LIST_LENGTH = 1024;

/** Code 7 for stdin larger than MAX_STDIN_BYTES; `length` may be anything above the bound (reading stops there). */
export function checkConfigSize(length: number): void {
  if (length > MAX_STDIN_BYTES) {
    throw new CniError(
      ErrorCode.InvalidNetworkConfig,
      `network config on stdin is larger than ${MAX_STDIN_BYTES} bytes (1 MiB)`,
      "no real config is this large; a generated one may have repeated a list",
    );
  }
}

/**
 * Deeper than any real config (a conflist plugin's deepest key, ipam.ranges[i][j].subnet or a
 * prevResult field, is 4 levels down), far shallower than what overflows the stack of the recursive
 * code after the decode (schema validation, structuredClone, JSON.stringify in messages).
 */
export const MAX_CONFIG_DEPTH = 64;

/** The nesting depth of a decoded JSON value, counted without recursion. */
function depthOf(value: unknown): number {
  let deepest = 0;
  const stack: Array<[unknown, number]> = [[value, 1]];
  while (stack.length > 0) {
    const [v, depth] = stack.pop()!;
    if (typeof v !== "object" || v === null) continue;
    if (depth > deepest) deepest = depth;
    if (deepest > MAX_CONFIG_DEPTH) break;
    for (const child of Object.values(v)) stack.push([child, depth + 1]);
  }
  return deepest;
}

function decode(bytes: Buffer): Record<string, unknown> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(bytes.toString("utf8"));
  } catch (err) {
    throw new CniError(ErrorCode.DecodingFailure, `error decoding network config from stdin: ${(err as Error).message}`);
  }
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
    throw new CniError(ErrorCode.DecodingFailure, "error decoding network config from stdin: expected a JSON object");
  }
  if (depthOf(parsed) > MAX_CONFIG_DEPTH) {
    throw new CniError(ErrorCode.DecodingFailure, `error decoding network config from stdin: nested more than ${MAX_CONFIG_DEPTH} levels deep`);
  }
  return parsed as Record<string, unknown>;
}

/** Decodes stdin and checks the network name, as the Go skel does before anything else. */
export function decodeConfig(bytes: Buffer): Record<string, unknown> {
  const raw = decode(bytes);
  const name = raw.name;
  if (name === undefined || name === "") throw new CniError(ErrorCode.InvalidNetworkConfig, "missing network name");
  if (typeof name !== "string") {
    throw new CniError(ErrorCode.InvalidNetworkConfig, `network name must be a string, got ${JSON.stringify(name)}`);
  }
  if (name.length > MAX_NETWORK_NAME_LENGTH) {
    throw new CniError(
      ErrorCode.InvalidNetworkConfig,
      `network name is ${name.length} characters long; at most ${MAX_NETWORK_NAME_LENGTH} are allowed`,
    );
  }
  if (!NAME_PATTERN.test(name)) {
    throw new CniError(
      ErrorCode.InvalidNetworkConfig,
      "invalid characters found in network name",
      `name ${JSON.stringify(name)} must match ${NAME_PATTERN.source}`,
    );
  }
  return raw;
}

/** The config's cniVersion, checked against what weft supports (code 1 for an unknown one). */
export function configVersion(raw: Record<string, unknown>): SpecVersion {
  const version = raw.cniVersion ?? DEFAULT_CONFIG_VERSION;
  if (typeof version !== "string") {
    throw new CniError(ErrorCode.DecodingFailure, `cniVersion must be a string, got ${JSON.stringify(version)}`);
  }
  const effective = version === "" ? DEFAULT_CONFIG_VERSION : version;
  if (!isSupportedVersion(effective)) {
    throw new CniError(
      ErrorCode.IncompatibleVersion,
      "incompatible CNI versions",
      `config is ${JSON.stringify(effective)}, plugin supports [${SUPPORTED_VERSIONS.map((v) => JSON.stringify(v)).join(" ")}]`,
    );
  }
  return effective;
}

/** "/ipam/ranges/0/1/subnet" -> "ipam.ranges[0][1].subnet" */
function fieldName(instancePath: string, extra?: string): string {
  const parts = instancePath.split("/").slice(1);
  if (extra !== undefined) parts.push(extra);
  let out = "";
  for (const part of parts) {
    const key = part.replace(/~1/g, "/").replace(/~0/g, "~");
    out += /^\d+$/.test(key) ? `[${key}]` : out === "" ? key : `.${key}`;
  }
  return out === "" ? "the config" : out;
}

function valueAt(data: unknown, instancePath: string): unknown {
  let v = data;
  for (const part of instancePath.split("/").slice(1)) {
    if (typeof v !== "object" || v === null) return undefined;
    v = (v as Record<string, unknown>)[part.replace(/~1/g, "/").replace(/~0/g, "~")];
  }
  return v;
}

function describe(error: ValidationError, data: unknown): string {
  if (error.keyword === "required") {
    return `${fieldName(error.instancePath, String(error.params.missingProperty))} is required`;
  }
  if (error.keyword === "additionalProperties") {
    return `${fieldName(error.instancePath, String(error.params.additionalProperty))} is not a known key`;
  }
  const value = JSON.stringify(valueAt(data, error.instancePath));
  const shown = value === undefined ? "" : ` (got ${value.length > 80 ? `${value.slice(0, 77)}...` : value})`;
  return `${fieldName(error.instancePath)} ${error.message ?? "is invalid"}${shown}`;
}

/** Runs a build-time compiled schema over the config; a mismatch is code 7 naming the field. */
export function validateWith<C>(validate: CompiledValidator, raw: Record<string, unknown>, what = "network config"): C {
  if (!validate(raw)) {
    const errors = validate.errors ?? [];
    const first = errors[0];
    throw new CniError(ErrorCode.InvalidNetworkConfig, `invalid ${what}: ${first ? describe(first, raw) : "does not match its schema"}`);
  }
  return raw as C;
}

/** Parses the prevResult of a chained plugin into the 1.1.0 shape (libcni fills a missing version). */
export function readPrevResult(raw: Record<string, unknown>, version: SpecVersion): Result | undefined {
  if (raw.prevResult === undefined || raw.prevResult === null) return undefined;
  checkResultListLengths(raw.prevResult);
  return parseResult(raw.prevResult, "invalid prevResult", version);
}

/** Refuses a prevResult with more entries in a list than any attachment has, before any is parsed. */
function checkResultListLengths(prevResult: unknown): void {
  if (typeof prevResult !== "object" || prevResult === null) return;
  const lists: Array<[string, unknown]> = [];
  const result = prevResult as Record<string, unknown>;
  for (const key of ["ips", "routes", "interfaces"]) lists.push([key, result[key]]);
  for (const key of ["ip4", "ip6"]) {
    const ipc = result[key] as Record<string, unknown> | null | undefined;
    if (typeof ipc === "object" && ipc !== null) lists.push([`${key}.routes`, ipc.routes]);
  }
  const dns = result.dns as Record<string, unknown> | null | undefined;
  if (typeof dns === "object" && dns !== null) for (const key of ["nameservers", "search", "options"]) lists.push([`dns.${key}`, dns[key]]);
  for (const [key, list] of lists) {
    if (Array.isArray(list) && list.length > MAX_RESULT_LIST_LENGTH) {
      throw new CniError(
        ErrorCode.InvalidNetworkConfig,
        `invalid prevResult: ${key} has ${list.length} entries; at most ${MAX_RESULT_LIST_LENGTH} are allowed`,
      );
    }
  }
}
