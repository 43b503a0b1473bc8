import { fstatSync, readSync, writeSync } from "node:fs";
import { parseCniArgs } from "./args.js";
import {
  checkConfigSize,
  configVersion,
  decodeConfig,
  MAX_STDIN_BYTES,
  readPrevResult,
  validateWith,
  type CompiledValidator,
  type NetConf,
} from "./config.js";
import { readCommand, readEnvironment, validateAttachment, type CniEnv, type EnvLookup, type Verb } from "./env.js";
import { asCniError, CniError, ErrorCode } from "../errors/cni.js";
import { formatResult, marshalIndent, type Result } from "./result.js";
import { CURRENT_VERSION, isSupportedVersion, SUPPORTED_VERSIONS, versionAtLeast, type SpecVersion } from "./version.js";
// poll(2), which Node.js lacks, for a runtime that hands over non-blocking stdio (the addon loads only then).
import { POLLIN, POLLOUT, weftSyscalls } from "../native/syscalls.js";

/** Everything a verb handler gets: the validated config and the runtime's parameters. */
export interface Request<C extends NetConf> {
  verb: Verb;
  config: C;
  /** stdin as received, for delegating to another plugin unchanged. */
  configBytes: Buffer;
  /** stdin decoded but before schema defaults were applied. */
  rawConfig: Record<string, unknown>;
  version: SpecVersion;
  env: CniEnv;
  /** The plugin's whole environment, CNI_ variables and the rest, which a delegate inherits. */
  environment: Readonly<NodeJS.ProcessEnv>;
  cniArgs: Map<string, string>;
  prevResult?: Result;
  log: (message: string) => void;
}

export interface Attachment {
  containerID: string;
  ifname: string;
}

export interface GcRequest<C extends NetConf> extends Request<C> {
  /** cni.dev/valid-attachments (or the older cni.dev/attachments): everything else may be removed. */
  validAttachments: Attachment[];
}

/** A plugin: its schema, and one handler per verb. Handlers throw CniError to fail. */
export interface Plugin<C extends NetConf> {
  /** The CNI type, e.g. "bridge". */
  type: string;
  validate: CompiledValidator;
  /** CNI_ARGS keys the plugin understands (others need IgnoreUnknown=1). */
  argsKeys?: readonly string[];
  add(request: Request<C>): Promise<Result>;
  del(request: Request<C>): Promise<void>;
  check(request: Request<C>): Promise<void>;
  gc?(request: GcRequest<C>): Promise<void>;
  status?(request: Request<C>): Promise<void>;
}

/** Where the dispatcher reads and writes: the process in production, buffers in tests and in-process delegation. */
export interface PluginIO {
  getenv: EnvLookup;
  /** The environment delegates inherit (pkg/invoke passes the plugin's own): the process's when left out. */
  environment?: Readonly<NodeJS.ProcessEnv>;
  readStdin: () => Buffer;
  stdout: (text: string) => void;
  stderr: (text: string) => void;
}

export const ABOUT = "weft CNI plugin";

/** Minimum config version for each verb (the Go skel's rules: CHECK needs 0.4.0, GC and STATUS 1.1.0). */
const MIN_VERSION: Partial<Record<Verb, SpecVersion>> = { CHECK: "0.4.0", GC: "1.1.0", STATUS: "1.1.0" };

function errorJson(err: CniError, version: string): string {
  const body: Record<string, unknown> = { cniVersion: version, code: err.code, msg: err.message };
  if (err.details) body.details = err.details;
  return marshalIndent(body);
}

function versionReply(stdin: Buffer): string {
  let requested: unknown;
  try {
    requested = stdin.length ? (JSON.parse(stdin.toString("utf8")) as { cniVersion?: unknown }).cniVersion : undefined;
  } catch {
    requested = undefined;
  }
  // The spec says VERSION echoes the requested version; Go always answers its newest one.
  const version = typeof requested === "string" && isSupportedVersion(requested) ? requested : CURRENT_VERSION;
  return `${JSON.stringify({ cniVersion: version, supportedVersions: SUPPORTED_VERSIONS })}\n`;
}

function validAttachments(raw: Record<string, unknown>): Attachment[] {
  const list = raw["cni.dev/valid-attachments"] ?? raw["cni.dev/attachments"] ?? [];
  if (!Array.isArray(list)) {
    throw new CniError(ErrorCode.InvalidNetworkConfig, "invalid network config: cni.dev/valid-attachments must be a list");
  }
  return list.map((entry, i) => {
    const e = entry as Record<string, unknown> | null;
    if (typeof e !== "object" || e === null || typeof e.containerID !== "string" || typeof e.ifname !== "string") {
      throw new CniError(
        ErrorCode.InvalidNetworkConfig,
        `invalid network config: cni.dev/valid-attachments[${i}] must be {"containerID": string, "ifname": string}`,
      );
    }
    return { containerID: e.containerID, ifname: e.ifname };
  });
}

/**
 * Runs one CNI invocation: reads the environment and stdin, validates them, calls the verb's
 * handler and prints its result or its error. Returns the exit code.
 */
export async function dispatch<C extends NetConf>(plugin: Plugin<C>, io: PluginIO): Promise<number> {
  let version: string = CURRENT_VERSION;
  try {
    const command = readCommand(io.getenv);
    if (command === undefined) {
      io.stderr(`${ABOUT} ${plugin.type}\nCNI protocol versions supported: ${SUPPORTED_VERSIONS.join(", ")}\n`);
      return 0;
    }
    const env = readEnvironment(io.getenv);
    if (env.command === "VERSION") {
      io.stdout(versionReply(io.readStdin()));
      return 0;
    }
    let bytes: Buffer;
    try {
      bytes = io.readStdin();
    } catch (err) {
      throw new CniError(ErrorCode.IOFailure, `error reading from stdin: ${(err as Error).message}`);
    }
    checkConfigSize(bytes.length);
    const rawConfig = decodeConfig(bytes);
    // Errors from here on speak the config's version when it is one weft knows.
    if (typeof rawConfig.cniVersion === "string" && isSupportedVersion(rawConfig.cniVersion)) version = rawConfig.cniVersion;
    if (env.command === "ADD" || env.command === "DEL" || env.command === "CHECK") validateAttachment(env);
    const specVersion = configVersion(rawConfig);
    version = specVersion;
    const minimum = MIN_VERSION[env.command];
    if (minimum && !versionAtLeast(specVersion, minimum)) {
      throw new CniError(ErrorCode.IncompatibleVersion, `config version does not allow ${env.command}`);
    }
    const config = validateWith<C>(plugin.validate, structuredClone(rawConfig));
    const request: Request<C> = {
      verb: env.command,
      config,
      configBytes: bytes,
      rawConfig,
      version: specVersion,
      env,
      environment: io.environment ?? process.env,
      cniArgs: parseCniArgs(env.args, plugin.argsKeys ?? []),
      prevResult: readPrevResult(rawConfig, specVersion),
      log: (message) => io.stderr(`${plugin.type}: ${message}\n`),
    };
    switch (env.command) {
      case "ADD": {
        const result = await plugin.add(request);
        let text: string;
        try {
          text = formatResult(result, specVersion);
        } catch (err) {
          // The attachment exists but cannot be told in the requested version (an L2-only bridge
          // asked for 0.2.0, which has no interfaces): failing ADD must not leave it behind.
          await plugin.del(request).catch((undo: unknown) => request.log(`undoing ADD: ${asCniError(undo).message}`));
          throw err;
        }
        io.stdout(text);
        return 0;
      }
      case "DEL":
        await plugin.del(request);
        return 0;
      case "CHECK":
        await plugin.check(request);
        return 0;
      case "GC":
        // A plugin with nothing to collect succeeds, as the spec allows.
        await plugin.gc?.({ ...request, validAttachments: validAttachments(rawConfig) });
        return 0;
      case "STATUS":
        await plugin.status?.(request);
        return 0;
    }
  } catch (err) {
    const cniError = asCniError(err);
    // A refusal the plugin did not word (the kernel's, a file's) is expected: only a bug gets its stack.
    if (!(err instanceof CniError) && cniError.code === ErrorCode.Internal)
      io.stderr(`${plugin.type}: internal error: ${(err as Error)?.stack ?? String(err)}\n`);
    io.stdout(errorJson(cniError, version));
    return 1;
  }
}

/**
 * Writes straight to the file descriptor: process.stdout and process.stderr would load Node's whole
 * streams stack (about 2 ms of every start) for a few hundred bytes.
 */
export function writeAll(fd: number, text: string): void {
  const data = Buffer.from(text);
  let offset = 0;
  while (offset < data.length) {
    try {
      offset += writeSync(fd, data, offset);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EAGAIN") throw err;
      // A non-blocking pipe that is full: wait until the reader makes room.
      weftSyscalls().pollFd(fd, POLLOUT);
    }
  }
}

/**
 * stdin of the process; a terminal is never waited on (VERSION from a shell). Reading stops one
 * byte past MAX_STDIN_BYTES: dispatch refuses that much, and the rest is never read or kept.
 */
function readProcessStdin(): Buffer {
  if (fstatSync(0).isCharacterDevice()) return Buffer.alloc(0);
  const chunks: Buffer[] = [];
  const chunk = Buffer.allocUnsafe(65536);
  for (let total = 0; total <= MAX_STDIN_BYTES;) {
    let n: number;
    try {
      n = readSync(0, chunk, 0, Math.min(chunk.length, MAX_STDIN_BYTES + 1 - total), null);
    } catch (err) {
      // A runtime may hand over a non-blocking pipe: wait until it has data or is closed.
      if ((err as NodeJS.ErrnoException).code !== "EAGAIN") throw err;
      weftSyscalls().pollFd(0, POLLIN);
      continue;
    }
    if (n === 0) break;
    total += n;
    chunks.push(Buffer.from(chunk.subarray(0, n)));
  }
  return Buffer.concat(chunks);
}

/** The process entry: dispatch with the real environment and stdio, then exit with its code. */
export function runPlugin<C extends NetConf>(plugin: Plugin<C>): void {
  const fail = (err: unknown) => {
    writeAll(2, `${plugin.type}: internal error: ${(err as Error)?.stack ?? String(err)}\n`);
    writeAll(1, errorJson(asCniError(err), CURRENT_VERSION));
    process.exit(1);
  };
  process.on("uncaughtException", fail);
  process.on("unhandledRejection", fail);
  const io: PluginIO = {
    getenv: (name) => process.env[name],
    environment: process.env,
    readStdin: readProcessStdin,
    stdout: (text) => writeAll(1, text),
    stderr: (text) => writeAll(2, text),
  };
  dispatch(plugin, io).then((code) => process.exit(code), fail);
}
