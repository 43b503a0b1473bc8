import { portmap as validatePortmap } from "../../gen/validators.js";
import { CniError, ErrorCode } from "../../lib/errors/cni.js";
import type { Result } from "../../lib/cni/result.js";
import type { GcRequest, Plugin, Request } from "../../lib/cni/skel.js";
import { step } from "../../lib/cni/steps.js";
import { enableRouteLocalnet } from "../../lib/netfilter/netfilter-localnet.js";
import { defaultBackend } from "../../lib/netfilter/netfilter.js";
import { collectPorts, portmapBackend, unforwardPorts } from "./apply.js";
import { podAddresses, portmapSettings, type PortmapConf } from "./config.js";
import { MAX_PORT_MAPPINGS } from "./schema.js";
import { crashPoint } from "../../lib/crash/crash.js";

type PortmapRequest = Request<PortmapConf>;

const settingsOf = (request: PortmapRequest) => portmapSettings(request.config, request.env.containerId, defaultBackend);

async function add(request: PortmapRequest): Promise<Result> {
  const prev = request.prevResult;
  if (!prev)
    throw new CniError(
      ErrorCode.InvalidNetworkConfig,
      "must be called as chained plugin",
      "portmap needs the result of the plugin before it (prevResult)",
    );
  const s = settingsOf(request);
  if (s.mappings.length === 0) return prev;
  if (s.mappings.length > MAX_PORT_MAPPINGS) {
    throw new CniError(
      ErrorCode.InvalidNetworkConfig,
      `runtimeConfig.portMappings has ${s.mappings.length} mappings: at most ${MAX_PORT_MAPPINGS} per pod`,
      "map fewer host ports, or run the pod with hostNetwork",
    );
  }
  const pods = podAddresses(prev, request.env.ifName);
  if (pods.length === 0) {
    request.log(`prevResult has no address on ${request.env.ifName}: no port mapped`);
    return prev;
  }
  const v4 = pods.find((p) => p.family === 4);
  if (s.snat && v4) await step("enable route_localnet", () => enableRouteLocalnet(v4.ip));
  try {
    await step(`set up ${s.backend} rules for port mappings`, () => portmapBackend(s.backend).forward(s, pods));
    crashPoint("portmap:rules");
  } catch (err) {
    // iptables applies a family at a time: an IPv6 failure must not leave the IPv4 half behind.
    await unforwardPorts(s).catch((undo: Error) => request.log(`rollback: ${undo.message}`));
    throw err;
  }
  return prev;
}

/**
 * Removes the container's rules whatever runtimeConfig and the backend say now: the runtime may
 * not resend portMappings on DEL (plugins#683), the pod may have been added by the Go plugin or
 * with the other backend, and rules left behind would keep the host port.
 */
async function del(request: PortmapRequest): Promise<void> {
  const s = settingsOf(request);
  await step("remove port mapping rules", () => unforwardPorts(s));
}

async function check(request: PortmapRequest): Promise<void> {
  const prev = request.prevResult;
  if (!prev) throw new CniError(ErrorCode.InvalidNetworkConfig, "Required prevResult missing");
  const s = settingsOf(request);
  if (s.mappings.length === 0) return;
  const pods = podAddresses(prev, request.env.ifName);
  const missing = await step(`check ${s.backend} rules`, () => portmapBackend(s.backend).missing(s, pods));
  if (missing.length) {
    throw new CniError(ErrorCode.CheckFailed, `missing hostport rules for container ${request.env.containerId}`, `missing: ${missing.join("; ")}`);
  }
}

async function gc(request: GcRequest<PortmapConf>): Promise<void> {
  const keep = new Set(request.validAttachments.map((a) => a.containerID));
  const removed = await step("collect stale port mapping rules", () => collectPorts(request.config.name, keep));
  if (removed) request.log(`GC removed ${removed} stale port mapping rules of network ${request.config.name}`);
}

async function status(request: PortmapRequest): Promise<void> {
  const backend = portmapBackend(settingsOf(request).backend);
  if (!backend.available()) {
    throw new CniError(ErrorCode.NotAvailable, `portmap ${backend.name} backend is not available: ${backend.tool} is not installed`);
  }
}

export function portmapPlugin(): Plugin<PortmapConf> {
  return { type: "portmap", validate: validatePortmap, add, del, check, gc, status };
}
