import { flannel as validateFlannel } from "../../gen/validators.js";
import { delegateFor, delegateSpeaks110, findInPath, type InProcessPlugins } from "../../lib/cni/invoke.js";
import type { Result } from "../../lib/cni/result.js";
import type { GcRequest, Plugin, Request } from "../../lib/cni/skel.js";
import { Rollback, step } from "../../lib/cni/steps.js";
import { crashPoint } from "../../lib/crash/crash.js";
import { asCniError, CniError, combinedError, ErrorCode } from "../../lib/errors/cni.js";
import {
  buildDelegateConfig,
  checkDelegateBase,
  renderDelegateConfig,
  type DelegateConfig,
  type FlannelConf,
  type Json,
  type JsonObject,
} from "./delegate-config.js";
import { SavedConfigStore, type SavedConfig } from "./store.js";
import { readSubnetEnv } from "./subnet-env.js";

type FlannelRequest = Request<FlannelConf>;

export interface FlannelOptions {
  /** weft plugins to run in this process when CNI_PATH resolves the delegate to one of them. */
  inProcess?: InProcessPlugins;
}

/**
 * flannel: turns this node's flanneld lease (subnet.env) into a config for the real plugin (bridge
 * + host-local by default), saves it per container, and delegates every verb to that plugin.
 */
export function flannelPlugin(options: FlannelOptions = {}): Plugin<FlannelConf> {
  return {
    type: "flannel",
    validate: validateFlannel,
    add: (request) => add(request, options),
    del: (request) => del(request, options),
    check: (request) => check(request, options),
    gc: (request) => gc(request, options),
    status: (request) => status(request, options),
  };
}

async function add(request: FlannelRequest, options: FlannelOptions): Promise<Result> {
  const { containerId } = request.env;
  checkDelegateBase(request.config);
  const config = currentDelegateConfig(request);
  const bytes = renderDelegateConfig(config);
  const store = new SavedConfigStore(request.config.dataDir);
  // Saved before delegating: a plugin killed mid-ADD still leaves DEL what it needs.
  store.save(containerId, bytes);
  crashPoint("flannel:saved");
  const rollback = new Rollback();
  rollback.push(`forget the saved delegate config of ${containerId}`, () => store.remove(containerId));
  // Undo what the delegate may have made (veth, address); the Go plugin leaves it and the file behind (plugins#426).
  rollback.push(`undo the delegate's part (${config.type} DEL)`, () => delegateFor(request, config.type, "DEL", bytes, options.inProcess));
  try {
    return await step("delegate add", () => delegateAdd(request, config.type, bytes, options));
  } catch (err) {
    await rollback.run(request.log);
    throw err;
  }
}

async function delegateAdd(request: FlannelRequest, type: string, bytes: string, options: FlannelOptions): Promise<Result> {
  const result = await delegateFor(request, type, "ADD", bytes, options.inProcess);
  crashPoint("flannel:delegated");
  if (!result) throw new CniError(ErrorCode.Internal, `plugin ${type} printed no result`);
  return result;
}

async function del(request: FlannelRequest, options: FlannelOptions): Promise<void> {
  const store = new SavedConfigStore(request.config.dataDir);
  const saved = store.load(request.env.containerId);
  if (saved.state === "saved") {
    // The saved bytes, not today's subnet.env: the pod was set up with those. The file goes only
    // once the delegate has let go, so a failed DEL can be retried (the Go plugin deletes it first).
    await step("delegate del", () => delegateFor(request, saved.config.type, "DEL", saved.bytes, options.inProcess));
    store.remove(request.env.containerId);
    return;
  }
  await deleteWithRebuiltConfig(request, store, saved, options);
}

/**
 * DEL without a usable saved config (dataDir wiped, a Go plugin's truncated write): bridge and
 * host-local release by container id and interface, so a config rebuilt from today's subnet.env
 * still frees the address and the veth. Best effort: a DEL that cannot do better must not wedge the pod.
 */
async function deleteWithRebuiltConfig(request: FlannelRequest, store: SavedConfigStore, saved: SavedConfig, options: FlannelOptions): Promise<void> {
  const { containerId } = request.env;
  if (saved.state === "corrupt") request.log(`${saved.problem}; deleting with a config rebuilt from ${request.config.subnetFile}`);
  let config: DelegateConfig;
  try {
    config = currentDelegateConfig(request);
  } catch (err) {
    request.log(`no saved delegate config for ${containerId} and none can be rebuilt: ${asCniError(err).message}`);
    return;
  }
  try {
    await delegateFor(request, config.type, "DEL", renderDelegateConfig(config), options.inProcess);
  } catch (err) {
    request.log(`delegate DEL of ${containerId} with a rebuilt config failed: ${asCniError(err).message}`);
    return;
  }
  if (saved.state === "corrupt") store.remove(containerId);
}

async function check(request: FlannelRequest, options: FlannelOptions): Promise<void> {
  const saved = savedConfigToCheck(request);
  const config: JsonObject = { ...saved.config };
  if (request.rawConfig.cniVersion !== undefined) config.cniVersion = request.rawConfig.cniVersion as string;
  if (request.rawConfig.prevResult !== undefined) config.prevResult = request.rawConfig.prevResult as JsonObject;
  await step("delegate check", () => delegateFor(request, saved.config.type, "CHECK", renderDelegateConfig(config), options.inProcess));
  checkDrift(request, saved.config);
}

function savedConfigToCheck(request: FlannelRequest): Extract<SavedConfig, { state: "saved" }> {
  const { containerId } = request.env;
  const saved = new SavedConfigStore(request.config.dataDir).load(containerId);
  if (saved.state === "missing") {
    throw new CniError(
      ErrorCode.UnknownContainer,
      `no saved delegate config for container ${containerId} in ${request.config.dataDir}: it was not added by flannel`,
    );
  }
  if (saved.state === "corrupt") throw new CniError(ErrorCode.IOFailure, saved.problem);
  return saved;
}

/**
 * CHECK's own part: the pod must still match what flanneld says (an MTU changed or a new lease leaves
 * running pods on the old values until they are recreated). Skipped while subnet.env is unreadable.
 */
function checkDrift(request: FlannelRequest, saved: JsonObject): void {
  let current: DelegateConfig;
  try {
    current = currentDelegateConfig(request);
  } catch {
    return;
  }
  const savedIpam = (saved.ipam ?? {}) as JsonObject;
  const currentIpam = current.ipam as JsonObject;
  const drift: string[] = [];
  if (JSON.stringify(saved.mtu) !== JSON.stringify(current.mtu)) {
    drift.push(`mtu ${JSON.stringify(saved.mtu)}, now ${JSON.stringify(current.mtu)}`);
  }
  if (JSON.stringify(savedIpam.ranges) !== JSON.stringify(currentIpam.ranges)) {
    drift.push(`ranges ${JSON.stringify(savedIpam.ranges)}, now ${JSON.stringify(currentIpam.ranges)}`);
  }
  if (drift.length > 0) {
    throw new CniError(
      ErrorCode.CheckFailed,
      `container ${request.env.containerId} was set up with ${drift.join(" and ")} (${request.config.subnetFile}): recreate the pod`,
    );
  }
}

async function gc(request: GcRequest<FlannelConf>, options: FlannelOptions): Promise<void> {
  const problems: CniError[] = [];
  await delegateGc(request, options).catch((err: unknown) => problems.push(asCniError(err, "delegate GC")));
  try {
    forgetStaleConfigs(request);
  } catch (err) {
    problems.push(asCniError(err));
  }
  if (problems.length > 0) throw combinedError("flannel GC", problems);
}

async function delegateGc(request: GcRequest<FlannelConf>, options: FlannelOptions): Promise<void> {
  const config: JsonObject = currentDelegateConfig(request);
  for (const key of ["cni.dev/valid-attachments", "cni.dev/attachments"]) {
    if (request.rawConfig[key] !== undefined) config[key] = request.rawConfig[key] as Json;
  }
  const type = config.type as string;
  if (await delegateSpeaks110(request, type, options.inProcess))
    await delegateFor(request, type, "GC", renderDelegateConfig(config), options.inProcess);
  else request.log(`delegate ${type} predates CNI 1.1.0 and has no GC: only flannel's own files are collected`);
}

/** Removes the saved configs of this network's containers that the runtime no longer knows. */
function forgetStaleConfigs(request: GcRequest<FlannelConf>): void {
  const valid = new Set(request.validAttachments.map((a) => a.containerID));
  const store = new SavedConfigStore(request.config.dataDir);
  for (const containerId of store.containerIds()) {
    if (valid.has(containerId)) continue;
    const saved = store.load(containerId);
    if (saved.state === "saved" && saved.config.name === request.config.name) store.remove(containerId);
  }
}

async function status(request: FlannelRequest, options: FlannelOptions): Promise<void> {
  let config: DelegateConfig;
  try {
    config = currentDelegateConfig(request);
  } catch (err) {
    const e = asCniError(err);
    if (e.code === ErrorCode.InvalidNetworkConfig) throw e;
    throw new CniError(ErrorCode.NotAvailable, e.message);
  }
  // STATUS may come without CNI_PATH (spec): then only flannel's own readiness is known.
  if (request.env.path.length === 0) return;
  try {
    findInPath(config.type, request.env.path);
  } catch (err) {
    throw new CniError(ErrorCode.NotAvailable, `delegate plugin unavailable: ${asCniError(err).message}`);
  }
  if (await delegateSpeaks110(request, config.type, options.inProcess)) {
    await delegateFor(request, config.type, "STATUS", renderDelegateConfig(config), options.inProcess);
  }
}

/** The delegate config from this request's config and the current subnet.env. */
function currentDelegateConfig(request: FlannelRequest): DelegateConfig {
  return buildDelegateConfig(request.config, readSubnetEnv(request.config.subnetFile));
}
