import { bridge as validateBridge } from "../../gen/validators.js";
import type { Verb } from "../../lib/cni/env.js";
import { delegateFor, delegateSpeaks110, type InProcessPlugins } from "../../lib/cni/invoke.js";
import type { Interface, Result } from "../../lib/cni/result.js";
import type { GcRequest, Plugin, Request } from "../../lib/cni/skel.js";
import { Rollback, step } from "../../lib/cni/steps.js";
import { crashPoint } from "../../lib/crash/crash.js";
import { asCniError, CniError, combinedError, ErrorCode } from "../../lib/errors/cni.js";
import { addMacSpoofCheck, macspoofKey, removeMacSpoofCheck } from "../../lib/netfilter/macspoof.js";
import { addMasquerade, chooseBackend, gcMasquerade, removeMasquerade } from "../../lib/netfilter/masquerade.js";
import { delLink, delLinkByName, linkByIndex, setLinkUp, waitOperUp, type Link } from "../../lib/netlink/link.js";
import { Rtnl } from "../../lib/netlink/rtnl.js";
import { Netns, NetnsPathError, openPodNetns } from "../../lib/netns/netns.js";
import { ensureSysctl } from "../../lib/sysctl/sysctl.js";
import { checkAttachment } from "./check.js";
import { bridgeSettings, type BridgeConf, type BridgeSettings } from "./config.js";
import { configureContainer, containerLink } from "./container.js";
import { calcGateways, type Gateways } from "./gateway.js";
import { configureHostVeth, createPodVeth, ensureGatewayAddress, ensureIfNameFree, ensureVlanGateway, setupBridge, type VethPair } from "./host.js";

type BridgeRequest = Request<BridgeConf>;

export interface BridgeOptions {
  /** weft plugins to run in this process when CNI_PATH resolves the IPAM plugin to one of them. */
  inProcess?: InProcessPlugins;
}

export function bridgePlugin(options: BridgeOptions = {}): Plugin<BridgeConf> {
  return {
    type: "bridge",
    validate: validateBridge,
    argsKeys: ["MAC"],
    add: (request) => add(request, options),
    del: (request) => del(request, options),
    check: (request) => check(request, options),
    status: (request) => status(request, options),
    gc: (request) => gc(request, options),
  };
}

/** The kernel handles one verb uses, closed together. */
class Handles {
  private hostSocket?: Rtnl;
  pod?: Rtnl;
  podNetns?: Netns;

  async host(): Promise<Rtnl> {
    this.hostSocket ??= await Rtnl.open();
    return this.hostSocket;
  }

  async enter(netns: Netns): Promise<Rtnl> {
    this.podNetns = netns;
    this.pod = await Rtnl.open(netns);
    return this.pod;
  }

  close(): void {
    this.hostSocket?.close();
    this.pod?.close();
    this.podNetns?.close();
  }
}

/** What ADD's steps share: the request, its settings, the kernel handles and the undo stack. */
interface AddContext {
  request: BridgeRequest;
  settings: BridgeSettings;
  options: BridgeOptions;
  host: Rtnl;
  pod: Rtnl;
  podNetns: Netns;
  rollback: Rollback;
}

/** The L3 half of ADD: the result so far, and the VLAN gateway interface when one was made. */
interface Addressing {
  result: Result;
  extraInterfaces: Interface[];
}

async function add(request: BridgeRequest, options: BridgeOptions): Promise<Result> {
  const settings = bridgeSettings(request.config, request.cniArgs);
  const { ifName } = request.env;
  const handles = new Handles();
  const rollback = new Rollback();
  try {
    const podNetns = await step(`open netns ${JSON.stringify(request.env.netns)}`, () => openPodNetns(request.env.netns, request.env.netnsOverride));
    const c: AddContext = { request, settings, options, pod: await handles.enter(podNetns), podNetns, host: await handles.host(), rollback };
    await step(`create veth pair for ${ifName}`, () => ensureIfNameFree(c.pod, podNetns, ifName));
    const pendingIpam = startIpam(c);
    const bridge = await step(`create bridge ${JSON.stringify(settings.conf.bridge)}`, () => setupBridge(c.host, settings));
    crashPoint("bridge:bridge");
    const veth = await connectPodVeth(c, bridge);
    const container = await containerLink(c.pod, podNetns, ifName);
    if (settings.conf.macspoofchk) await setUpMacSpoofCheck(c, veth, container);
    const addressing = pendingIpam ? await configureAddressing(c, bridge, container, pendingIpam) : await setUpWithoutIpam(c, container);
    return await attachmentResult(c, bridge, veth, container, addressing);
  } catch (err) {
    await rollback.run(request.log);
    throw err;
  } finally {
    handles.close();
  }
}

/** IPAM runs (a process, ~10 ms) while the links are made; its release is the last undo. */
function startIpam(c: AddContext): Promise<Result | undefined> | undefined {
  const { ipamType } = c.settings;
  if (!ipamType) return undefined;
  const running = step(`run IPAM plugin ${ipamType}`, () => ipam(c.request, "ADD", ipamType, c.options));
  running.catch(() => undefined);
  c.rollback.push(`release IPAM (${ipamType} DEL)`, async () => {
    await running.catch(() => undefined);
    await ipam(c.request, "DEL", ipamType, c.options);
  });
  return running;
}

/** The veth pair, its pod end named ifName in the pod, its host end a configured port of the bridge. */
async function connectPodVeth(c: AddContext, bridge: Link): Promise<VethPair> {
  const { ifName } = c.request.env;
  const veth = await step(`create veth pair for ${ifName}`, () => createPodVeth(c.host, c.pod, c.podNetns, bridge, ifName, c.settings));
  crashPoint("bridge:veth");
  c.rollback.push(`delete veth ${veth.hostName}`, () => delLink(c.host, veth.hostIndex));
  await step(`connect ${veth.hostName} to bridge ${c.settings.conf.bridge}`, () => configureHostVeth(c.host, veth, c.settings));
  crashPoint("bridge:port");
  return veth;
}

async function setUpMacSpoofCheck(c: AddContext, veth: VethPair, container: Link): Promise<void> {
  const key = macspoofKey(c.request.env.containerId, c.request.env.ifName);
  await step("set up MAC spoof check", () => addMacSpoofCheck(veth.hostName, container.mac, key));
  c.rollback.push("remove MAC spoof check", () => removeMacSpoofCheck(key));
}

/** The IPAM result on the pod's interface, the gateways on the bridge, and masquerade. */
async function configureAddressing(c: AddContext, bridge: Link, container: Link, pendingIpam: Promise<Result | undefined>): Promise<Addressing> {
  const { conf } = c.settings;
  const ipamResult = await pendingIpam;
  crashPoint("bridge:ipam");
  if (!ipamResult?.ips?.length) throw new CniError(ErrorCode.Internal, "IPAM plugin returned missing IP config");
  const { result, gateways } = calcGateways(ipamResult, c.settings.isGateway, conf.isDefaultGateway);
  await configureContainer(c.pod, c.podNetns, container, result, conf.enabledad);
  crashPoint("bridge:addresses");
  const extraInterfaces = c.settings.isGateway ? await setUpGateways(c, bridge, gateways) : [];
  if (conf.ipMasq) await setUpMasquerade(c, result);
  return { result, extraInterfaces };
}

/** Without IPAM the pod's interface is only brought up (unless the config wants it left alone). */
async function setUpWithoutIpam(c: AddContext, container: Link): Promise<Addressing> {
  if (!c.settings.conf.disableContainerInterface) await step(`set ${c.request.env.ifName} up`, () => setLinkUp(c.pod, container.index));
  return { result: { ips: [], routes: [] }, extraInterfaces: [] };
}

/** The gateway addresses on the bridge (or on its VLAN interface) and forwarding on; returns the VLAN interface made, if any. */
async function setUpGateways(c: AddContext, bridge: Link, gateways: Gateways): Promise<Interface[]> {
  const { conf } = c.settings;
  const extraInterfaces: Interface[] = [];
  let gatewayLink: Link = bridge;
  if (conf.vlan !== 0 && (gateways[4].length || gateways[6].length)) {
    gatewayLink = await step("create vlan interface", () => ensureVlanGateway(c.host, bridge, c.settings));
    extraInterfaces.push({ name: gatewayLink.name, mac: gatewayLink.mac });
  }
  const what = conf.vlan !== 0 ? "set vlan interface for bridge with addr" : "set bridge addr";
  for (const family of [4, 6] as const) {
    for (const gw of gateways[family]) {
      await step(what, () => ensureGatewayAddress(c.host, gatewayLink, gw, family, conf.forceAddress));
    }
    if (gateways[family].length) {
      await step("enable forwarding", () => ensureSysctl(family === 4 ? "net/ipv4/ip_forward" : "net/ipv6/conf/all/forwarding", "1"));
    }
  }
  crashPoint("bridge:gateway");
  return extraInterfaces;
}

async function setUpMasquerade(c: AddContext, result: Result): Promise<void> {
  const addresses = (result.ips ?? []).map((ip) => ip.address);
  const backend = chooseBackend(c.settings.conf.ipMasqBackend);
  await step("set up IP masquerade", () => addMasquerade(attachment(c.request), addresses, backend));
  crashPoint("bridge:masquerade");
  c.rollback.push("remove IP masquerade", () => removeMasquerade(attachment(c.request)));
}

/** The result: the bridge, the host veth and the pod's interface as the kernel has them now. */
async function attachmentResult(c: AddContext, bridge: Link, veth: VethPair, container: Link, addressing: Addressing): Promise<Result> {
  const { conf } = c.settings;
  // A port whose pod end stays down never forwards: like the reference, wait only when the pod end is up.
  const hostVeth = conf.disableContainerInterface
    ? await step(
        `look up ${veth.hostName}`,
        async () => (await linkByIndex(c.host, veth.hostIndex)) ?? Promise.reject(new Error(`${veth.hostName} is gone`)),
      )
    : await step(`wait for ${veth.hostName} to forward`, () => waitOperUp(c.host, veth.hostIndex));
  const bridgeNow = (await linkByIndex(c.host, bridge.index)) ?? bridge;
  const containerNow = (await linkByIndex(c.pod, container.index)) ?? container;
  const { result } = addressing;
  if (dnsSet(conf)) result.dns = conf.dns;
  crashPoint("bridge:done");
  return {
    ...result,
    interfaces: [
      { name: bridgeNow.name, mac: bridgeNow.mac },
      { name: hostVeth.name, mac: hostVeth.mac },
      { name: containerNow.name, mac: containerNow.mac, sandbox: c.request.env.netns },
      ...addressing.extraInterfaces,
    ],
  };
}

async function del(request: BridgeRequest, options: BridgeOptions): Promise<void> {
  const s = bridgeSettings(request.config, request.cniArgs);
  const { conf } = s;
  // The kernel takes about 20 ms to delete a veth pair, inside the request: IPAM releases the
  // address meanwhile (the reference releases it first, so neither order is new to a runtime).
  // Without the pod's namespace nothing proves which host veth was this attachment's: prevResult
  // is the runtime's word and may name another pod's. Like the reference, only IPAM and the
  // rules keyed by this attachment's identity go then; a veth whose namespace died went with it.
  const podInterface = request.env.netns === "" ? Promise.resolve() : deletePodInterface(request);
  const ipamType = s.ipamType;
  const release = ipamType ? step(`release IPAM (${ipamType} DEL)`, () => ipam(request, "DEL", ipamType, options)) : Promise.resolve();
  const [deleted, released] = await Promise.allSettled([podInterface, release]);
  if (deleted.status === "rejected") throw deleted.reason;
  if (released.status === "rejected") throw released.reason;
  if (conf.macspoofchk) await step("remove MAC spoof check", () => removeMacSpoofCheck(macspoofKey(request.env.containerId, request.env.ifName)));
  if (conf.ipMasq) await step("remove IP masquerade", () => removeMasquerade(attachment(request)));
}

/**
 * Deletes CNI_IFNAME in the pod's namespace; nothing there, or no namespace (a stale path that is
 * no namespace counts as gone: nothing is left inside), is success.
 */
async function deletePodInterface(request: BridgeRequest): Promise<void> {
  let podNetns: Netns | undefined;
  try {
    podNetns = openPodNetns(request.env.netns, request.env.netnsOverride);
    const netns = podNetns;
    await step(`delete ${request.env.ifName}`, () => delLinkByName(netns, request.env.ifName));
  } catch (err) {
    if (!(err instanceof NetnsPathError)) throw err;
    request.log(`${err.message}: treating the namespace as gone`);
  } finally {
    podNetns?.close();
  }
}

async function check(request: BridgeRequest, options: BridgeOptions): Promise<void> {
  const s = bridgeSettings(request.config, request.cniArgs);
  const prev = request.prevResult;
  if (!prev) throw new CniError(ErrorCode.InvalidNetworkConfig, "Required prevResult missing");
  if (s.ipamType) {
    const ipamType = s.ipamType;
    await step(`check IPAM (${ipamType} CHECK)`, () => ipam(request, "CHECK", ipamType, options));
  }
  const handles = new Handles();
  try {
    const podNetns = await step(`open netns ${JSON.stringify(request.env.netns)}`, () => openPodNetns(request.env.netns, request.env.netnsOverride));
    const pod = await handles.enter(podNetns);
    await checkAttachment({
      host: await handles.host(),
      pod,
      podNetns,
      settings: s,
      prevResult: prev,
      env: request.env,
      attachment: attachment(request),
    });
  } finally {
    handles.close();
  }
}

async function status(request: BridgeRequest, options: BridgeOptions): Promise<void> {
  const s = bridgeSettings(request.config, request.cniArgs);
  if (s.ipamType) await forwardToIpam(request, "STATUS", s.ipamType, options);
}

async function gc(request: GcRequest<BridgeConf>, options: BridgeOptions): Promise<void> {
  const s = bridgeSettings(request.config, request.cniArgs);
  const errors: CniError[] = [];
  if (s.ipamType) {
    const ipamType = s.ipamType;
    await forwardToIpam(request, "GC", ipamType, options).catch((err: unknown) => errors.push(asCniError(err, "IPAM GC")));
  }
  const keep = request.validAttachments.map((a) => ({ containerId: a.containerID, ifName: a.ifname }));
  await gcMasquerade(request.config.name, keep).catch((err: unknown) => errors.push(asCniError(err, "masquerade GC")));
  if (errors.length) throw combinedError("GC failed", errors);
}

/** The IPAM plugin runs the verb with bridge's own config on its stdin. */
function ipam(request: BridgeRequest, verb: Verb, type: string, options: BridgeOptions): Promise<Result | undefined> {
  return delegateFor(request, type, verb, request.configBytes, options.inProcess);
}

/**
 * STATUS and GC go to IPAM when it speaks spec 1.1.0: an older plugin (Debian's host-local is
 * 1.0.0) has nothing to report or collect, and answers them with errors.
 */
async function forwardToIpam(request: BridgeRequest, verb: "STATUS" | "GC", type: string, options: BridgeOptions): Promise<void> {
  if (!(await delegateSpeaks110(request, type, options.inProcess))) {
    request.log(`IPAM plugin ${type} does not speak CNI 1.1.0: ${verb} not forwarded`);
    return;
  }
  await ipam(request, verb, type, options);
}

function attachment(request: BridgeRequest) {
  return { network: request.config.name, containerId: request.env.containerId, ifName: request.env.ifName };
}

function dnsSet(conf: BridgeConf): boolean {
  const d = conf.dns;
  return !!d && (d.nameservers !== undefined || d.search !== undefined || d.options !== undefined || !!d.domain);
}

export type { BridgeSettings };
