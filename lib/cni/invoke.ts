import type { ChildProcess } from "node:child_process";
import { accessSync, constants } from "node:fs";
import { join } from "node:path";
import type { NetConf } from "./config.js";
import type { CniEnv, Verb } from "./env.js";
import { nodeChildProcess } from "../node/builtins.js";
import { asCniError, CniError, ErrorCode } from "../errors/cni.js";
import { parseResult, type Result } from "./result.js";
import { dispatch, writeAll, type Plugin, type Request } from "./skel.js";

/** Finds a plugin executable named `type` in the CNI_PATH directories (pkg/invoke FindInPath). */
export function findInPath(type: string, paths: readonly string[]): string {
  if (type === "") throw new CniError(ErrorCode.InvalidNetworkConfig, "no plugin name provided");
  if (type.includes("/") || type === "." || type === "..") {
    throw new CniError(ErrorCode.InvalidNetworkConfig, `invalid plugin name ${JSON.stringify(type)}: it must not be a path`);
  }
  if (paths.length === 0) throw new CniError(ErrorCode.InvalidEnvironment, "CNI_PATH is empty: cannot find plugins");
  for (const dir of paths) {
    const candidate = join(dir, type);
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not in this directory
    }
  }
  throw new CniError(ErrorCode.InvalidEnvironment, `failed to find plugin ${JSON.stringify(type)} in path [${paths.join(" ")}]`);
}

export interface DelegateOptions {
  /** Overrides the command the delegate sees; the rest of the environment is the caller's. */
  verb: Verb;
  /** The delegate's stdin: the config it should act on. */
  stdin: Buffer | string;
  env: NodeJS.ProcessEnv;
  /** A delegate that does not answer in time is killed; the caller gets code 11 (try again). */
  timeoutMs?: number;
  /** weft's own plugins this bundle carries: a delegate that is one of them runs in this process. */
  inProcess?: InProcessPlugins;
}

/**
 * The weft plugins a bundle can run in its own process, by CNI type, each loaded only when used,
 * and the version of the build they come from.
 */
export interface InProcessPlugins {
  version: string;
  plugins: Readonly<Record<string, () => Promise<Plugin<NetConf>>>>;
  /** The type of the plugin the executable at a path runs, when it is weft's of this very build. */
  identify(path: string): string | undefined;
}

export const DEFAULT_DELEGATE_TIMEOUT_MS = 120_000;

/**
 * An in-process delegate gets this much longer than the executables it runs itself, so that their
 * timeouts fire first and it undoes its own work (bridge removes the veth when host-local hangs).
 */
const IN_PROCESS_GRACE_MS = 1_000;

/** Delegate processes still running, so that a delegate given up on leaves none behind. */
const runningDelegates = new Set<ChildProcess>();

/** Kills a delegate and whatever it started in its process group (a hung foreign IPAM's children). */
function killDelegate(child: ChildProcess): void {
  try {
    if (child.pid !== undefined) process.kill(-child.pid, "SIGKILL");
  } catch {
    child.kill("SIGKILL");
  }
}

/**
 * The timeout when the caller sets none: WEFT_DELEGATE_TIMEOUT_MS of the delegate's environment (the
 * caller's own, a positive integer) or the default.
 */
export function delegateTimeoutMs(options: Pick<DelegateOptions, "timeoutMs" | "env">): number {
  if (options.timeoutMs !== undefined) return options.timeoutMs;
  const fromEnv = Number(options.env.WEFT_DELEGATE_TIMEOUT_MS);
  return Number.isInteger(fromEnv) && fromEnv > 0 ? fromEnv : DEFAULT_DELEGATE_TIMEOUT_MS;
}

export interface ExecOutput {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: Buffer;
}

async function execFile(path: string, options: DelegateOptions): Promise<ExecOutput> {
  // Loaded on first use: child_process costs a few ms of start-up that VERSION and an all-weft,
  // in-process chain never need. (A plain require: the executables' loader compiles the bundle
  // with vm.Script, where import() of a builtin is not available on Node 20.)
  const { spawn } = nodeChildProcess();
  return new Promise((resolve, reject) => {
    // A process group of its own, so that a timeout kills what the delegate started too.
    const child = spawn(path, [], {
      env: { ...options.env, CNI_COMMAND: options.verb },
      stdio: ["pipe", "pipe", "inherit"],
      detached: true,
    });
    runningDelegates.add(child);
    const chunks: Buffer[] = [];
    let timedOut = false;
    const timeoutMs = delegateTimeoutMs(options);
    const timer = setTimeout(() => {
      timedOut = true;
      killDelegate(child);
    }, timeoutMs);
    child.stdout.on("data", (chunk: Buffer) => chunks.push(chunk));
    child.on("error", (err) => {
      clearTimeout(timer);
      runningDelegates.delete(child);
      reject(asCniError(err, `failed to run plugin ${path}`));
    });
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      runningDelegates.delete(child);
      if (timedOut) {
        reject(new CniError(ErrorCode.TryAgainLater, `plugin ${path} did not finish ${options.verb} within ${timeoutMs} ms and was killed`));
      } else {
        resolve({ code, signal, stdout: Buffer.concat(chunks) });
      }
    });
    // A delegate that exits without reading stdin closes the pipe: that is its answer, not ours to fail on.
    child.stdin.on("error", () => undefined);
    child.stdin.end(options.stdin);
  });
}

/** The delegate's error JSON as a CniError; a delegate that printed none is described by its exit. */
function delegateError(path: string, output: ExecOutput): CniError {
  const text = output.stdout.toString("utf8").trim();
  try {
    const parsed = JSON.parse(text) as { code?: unknown; msg?: unknown; details?: unknown };
    if (typeof parsed.code === "number" && typeof parsed.msg === "string") {
      return new CniError(parsed.code, parsed.msg, typeof parsed.details === "string" ? parsed.details : undefined);
    }
  } catch {
    // not JSON: fall through
  }
  const how = output.signal ? `was killed by ${output.signal}` : `exited with status ${output.code}`;
  return new CniError(ErrorCode.Internal, `netplugin failed: plugin ${path} ${how}${text ? `: ${JSON.stringify(text)}` : ""}`);
}

/**
 * The plugin to run in-process for the executable at `path`: only when it is weft's, of the very
 * build this bundle is (InProcessPlugins.identify), and of a type the bundle carries.
 */
async function inProcessPlugin(path: string, inProcess: InProcessPlugins | undefined): Promise<Plugin<NetConf> | undefined> {
  if (!inProcess) return undefined;
  const type = inProcess.identify(path);
  if (type === undefined) return undefined;
  const load = Object.hasOwn(inProcess.plugins, type) ? inProcess.plugins[type] : undefined;
  return load?.();
}

/**
 * What executing the plugin would do, without a new process: the same dispatcher reads the same
 * environment (the caller's plus CNI_COMMAND) and stdin, stdout is collected, stderr goes where the
 * child's would (inherited), and the exit code is dispatch's.
 */
async function runInProcess(plugin: Plugin<NetConf>, path: string, options: DelegateOptions): Promise<ExecOutput> {
  const env: NodeJS.ProcessEnv = { ...options.env, CNI_COMMAND: options.verb };
  const stdin = Buffer.from(options.stdin);
  const chunks: string[] = [];
  const run = dispatch(plugin, {
    getenv: (name) => env[name],
    environment: env,
    readStdin: () => stdin,
    stdout: (text) => chunks.push(text),
    stderr: (text) => writeAll(2, text),
  });
  const timeoutMs = delegateTimeoutMs(options);
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      // The abandoned run cannot be stopped, but the processes it waits on can.
      for (const child of runningDelegates) killDelegate(child);
      reject(
        new CniError(
          ErrorCode.TryAgainLater,
          `plugin ${path} did not finish ${options.verb} within ${timeoutMs} ms and was killed (run in-process: given up on ${IN_PROCESS_GRACE_MS} ms later, its delegate processes killed)`,
        ),
      );
    }, timeoutMs + IN_PROCESS_GRACE_MS);
    timer.unref();
  });
  try {
    const code = await Promise.race([run, timeout]);
    return { code, signal: null, stdout: Buffer.from(chunks.join("")) };
  } finally {
    clearTimeout(timer);
  }
}

/** Runs a delegate plugin (in this process when it is weft's own, see DelegateOptions.inProcess); returns its stdout, or throws its error. */
export async function execPlugin(path: string, options: DelegateOptions): Promise<Buffer> {
  const plugin = await inProcessPlugin(path, options.inProcess);
  const output = plugin ? await runInProcess(plugin, path, options) : await execFile(path, options);
  if (output.code !== 0) throw delegateError(path, output);
  return output.stdout;
}

/** The environment a delegate gets: the caller's, as pkg/invoke DelegateArgs does. */
export function delegateEnv(env: CniEnv, base: Readonly<NodeJS.ProcessEnv>): NodeJS.ProcessEnv {
  return {
    ...base,
    CNI_CONTAINERID: env.containerId,
    CNI_NETNS: env.netns,
    CNI_IFNAME: env.ifName,
    CNI_ARGS: env.args,
    CNI_PATH: env.path.join(":"),
  };
}

/**
 * Delegates a verb to the plugin named `type` found in CNI_PATH (IPAM, or flannel's delegate).
 * ADD returns the delegate's result in the 1.1.0 shape; the other verbs return nothing.
 */
export async function delegate(type: string, options: DelegateOptions & { paths: readonly string[] }): Promise<Result | undefined> {
  const path = findInPath(type, options.paths);
  const stdout = await execPlugin(path, options);
  if (options.verb !== "ADD") return undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(stdout.toString("utf8"));
  } catch (err) {
    throw new CniError(ErrorCode.DecodingFailure, `plugin ${type} printed a result that is not JSON: ${(err as Error).message}`);
  }
  return parseResult(parsed, `result of plugin ${type}`);
}

/** What delegating takes from a plugin's request: the runtime's CNI_ variables and the environment. */
export type DelegatingRequest = Pick<Request<NetConf>, "env" | "environment">;

/**
 * Runs `verb` of the plugin named `type` in the request's CNI_PATH, with the request's CNI_
 * variables and environment (pkg/invoke DelegateAdd and the others). ADD returns the result.
 */
export function delegateFor(
  request: DelegatingRequest,
  type: string,
  verb: Verb,
  stdin: Buffer | string,
  inProcess?: InProcessPlugins,
): Promise<Result | undefined> {
  return delegate(type, { verb, stdin, env: delegateEnv(request.env, request.environment), paths: request.env.path, inProcess });
}

/**
 * Whether the plugin named `type` in the request's CNI_PATH speaks spec 1.1.0, asked with VERSION:
 * an older one (Debian's host-local is 1.0.0) has no GC or STATUS and fails them with odd codes.
 */
export async function delegateSpeaks110(request: DelegatingRequest, type: string, inProcess?: InProcessPlugins): Promise<boolean> {
  const out = await execPlugin(findInPath(type, request.env.path), {
    verb: "VERSION",
    stdin: '{"cniVersion":"1.1.0"}',
    env: delegateEnv(request.env, request.environment),
    inProcess,
  });
  try {
    const supported = (JSON.parse(out.toString("utf8")) as { supportedVersions?: unknown }).supportedVersions;
    return Array.isArray(supported) && supported.includes("1.1.0");
  } catch {
    return false;
  }
}
