import { flannel as validateFlannel } from "../../gen/validators.js";
import { asCniError, CniError, combinedError, ErrorCode } from "../../lib/errors/cni.js";
import { delegate, delegateEnv, execPlugin, findInPath, type InProcessPlugins } from "../../lib/cni/invoke.js";
import type { Result } from "../../lib/cni/result.js";
import type { GcRequest, Plugin, Request } from "../../lib/cni/skel.js";
import type { Verb } from "../../lib/cni/env.js";
import { buildDelegateConfig, checkDelegateBase, renderDelegateConfig, type DelegateConfig, type FlannelConf, type JsonObject } from "./delegate-config.js";
import { SavedConfigStore } from "./store.js";
import { crashPoint } from "../../lib/crash/crash.js";
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
  const run = (request: FlannelRequest, verb: Verb, type: string, stdin: Buffer | string) =>
    delegate(type, {
      verb,
      stdin,
      env: delegateEnv(request.env, process.env),
      paths: request.env.path,
      inProcess: options.inProcess,
    });

  /** The delegate config from this request's config and the current subnet.env. */
  const currentDelegateConfig = (request: FlannelRequest): DelegateConfig =>
    buildDelegateConfig(request.config, readSubnetEnv(request.config.subnetFile));

  /** Whether the delegate implements GC and STATUS (spec 1.1.0): older ones fail them with odd codes. */
  const delegateSpeaks110 = async (request: FlannelRequest, type: string): Promise<boolean> => {
    const out = await execPlugin(findInPath(type, request.env.path), {
      verb: "VERSION",
      stdin: '{"cniVersion":"1.1.0"}',
      env: delegateEnv(request.env, process.env),
      inProcess: options.inProcess,
    });
    try {
      const supported = (JSON.parse(out.toString("utf8")) as { supportedVersions?: unknown }).supportedVersions;
      return Array.isArray(supported) && supported.includes("1.1.0");
    } catch {
      return false;
    }
  };

  return {
    type: "flannel",
    validate: validateFlannel,

    async add(request): Promise<Result> {
      const { containerId } = request.env;
      checkDelegateBase(request.config);
      const config = currentDelegateConfig(request);
      const bytes = renderDelegateConfig(config);
      const store = new SavedConfigStore(request.config.dataDir);
      // Saved before delegating: a plugin killed mid-ADD still leaves DEL what it needs.
      store.save(containerId, bytes);
      crashPoint("flannel:saved");
      try {
        const result = await run(request, "ADD", config.type, bytes);
        crashPoint("flannel:delegated");
        if (!result) throw new CniError(ErrorCode.Internal, `plugin ${config.type} printed no result`);
        return result;
      } catch (err) {
        // Undo what the delegate may have made (veth, address), then forget the pod; the Go plugin
        // leaves both behind (plugins#426).
        await run(request, "DEL", config.type, bytes).catch((undoErr: unknown) =>
          request.log(`undoing the failed ADD of ${containerId}: delegate DEL failed: ${asCniError(undoErr).message}`),
        );
        try {
          store.remove(containerId);
        } catch (removeErr) {
          request.log(`undoing the failed ADD of ${containerId}: ${asCniError(removeErr).message}`);
        }
        throw asCniError(err, "failed to delegate add");
      }
    },

    async del(request): Promise<void> {
      const { containerId } = request.env;
      const store = new SavedConfigStore(request.config.dataDir);
      const saved = store.load(containerId);
      if (saved.state === "saved") {
        // The saved bytes, not today's subnet.env: the pod was set up with those. The file goes only
        // once the delegate has let go, so a failed DEL can be retried (the Go plugin deletes it first).
        try {
          await run(request, "DEL", saved.config.type, saved.bytes);
        } catch (err) {
          throw asCniError(err, "failed to delegate del");
        }
        store.remove(containerId);
        return;
      }
      // No usable file (dataDir wiped, a Go plugin's truncated write): bridge and host-local release
      // by container id and interface, so a config rebuilt from today's subnet.env still frees the
      // address and the veth. Best effort: a DEL that cannot do better must not wedge the pod.
      if (saved.state === "corrupt") request.log(`${saved.problem}; deleting with a config rebuilt from ${request.config.subnetFile}`);
      let config: DelegateConfig;
      try {
        config = currentDelegateConfig(request);
      } catch (err) {
        request.log(`no saved delegate config for ${containerId} and none can be rebuilt: ${asCniError(err).message}`);
        return;
      }
      try {
        await run(request, "DEL", config.type, renderDelegateConfig(config));
      } catch (err) {
        request.log(`delegate DEL of ${containerId} with a rebuilt config failed: ${asCniError(err).message}`);
        return;
      }
      if (saved.state === "corrupt") store.remove(containerId);
    },

    async check(request): Promise<void> {
      const { containerId } = request.env;
      const store = new SavedConfigStore(request.config.dataDir);
      const saved = store.load(containerId);
      if (saved.state === "missing") {
        throw new CniError(
          ErrorCode.UnknownContainer,
          `no saved delegate config for container ${containerId} in ${request.config.dataDir}: it was not added by flannel`,
        );
      }
      if (saved.state === "corrupt") throw new CniError(ErrorCode.IOFailure, saved.problem);
      const config: JsonObject = { ...saved.config };
      if (request.rawConfig.cniVersion !== undefined) config.cniVersion = request.rawConfig.cniVersion as string;
      if (request.rawConfig.prevResult !== undefined) config.prevResult = request.rawConfig.prevResult as JsonObject;
      try {
        await run(request, "CHECK", saved.config.type, renderDelegateConfig(config));
      } catch (err) {
        throw asCniError(err, "failed to delegate check");
      }
      checkDrift(request, saved.config, containerId);
    },

    async gc(request: GcRequest<FlannelConf>): Promise<void> {
      const problems: CniError[] = [];
      try {
        const config: JsonObject = currentDelegateConfig(request);
        for (const key of ["cni.dev/valid-attachments", "cni.dev/attachments"]) {
          if (request.rawConfig[key] !== undefined) config[key] = request.rawConfig[key] as Json;
        }
        const type = config.type as string;
        if (await delegateSpeaks110(request, type)) await run(request, "GC", type, renderDelegateConfig(config));
        else request.log(`delegate ${type} predates CNI 1.1.0 and has no GC: only flannel's own files are collected`);
      } catch (err) {
        problems.push(asCniError(err, "delegate GC"));
      }
      // Saved configs of this network's containers that the runtime no longer knows.
      const valid = new Set(request.validAttachments.map((a) => a.containerID));
      const store = new SavedConfigStore(request.config.dataDir);
      try {
        for (const containerId of store.containerIds()) {
          if (valid.has(containerId)) continue;
          const saved = store.load(containerId);
          if (saved.state === "saved" && saved.config.name === request.config.name) store.remove(containerId);
        }
      } catch (err) {
        problems.push(asCniError(err));
      }
      if (problems.length > 0) throw combinedError("flannel GC", problems);
    },

    async status(request): Promise<void> {
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
      if (await delegateSpeaks110(request, config.type)) {
        await run(request, "STATUS", config.type, renderDelegateConfig(config));
      }
    },
  };
}

type Json = JsonObject[string];

/**
 * CHECK's own part: the pod must still match what flanneld says (an MTU changed or a new lease leaves
 * running pods on the old values until they are recreated). Skipped while subnet.env is unreadable.
 */
function checkDrift(request: FlannelRequest, saved: JsonObject, containerId: string): void {
  let current: DelegateConfig;
  try {
    current = buildDelegateConfig(request.config, readSubnetEnv(request.config.subnetFile));
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
      `container ${containerId} was set up with ${drift.join(" and ")} (${request.config.subnetFile}): recreate the pod`,
    );
  }
}
