import { bridge as validateBridge } from "../../gen/validators.js";
import { asCniError, CniError, combinedError, ErrorCode } from "../../lib/errors/cni.js";
import { delegate, delegateEnv, execPlugin, findInPath, type InProcessPlugins } from "../../lib/cni/invoke.js";
import type { Result } from "../../lib/cni/result.js";
import type { GcRequest, Plugin, Request } from "../../lib/cni/skel.js";
import type { Verb } from "../../lib/cni/env.js";
import { delLink, delLinkByName, linkByIndex, setLinkUp, waitOperUp, type Link } from "../../lib/netlink/link.js";
import { addMacSpoofCheck, macspoofKey, removeMacSpoofCheck } from "../../lib/netfilter/macspoof.js";
import { addMasquerade, chooseBackend, gcMasquerade, removeMasquerade } from "../../lib/netfilter/masquerade.js";
import { isOwnNetns, Netns, NetnsPathError } from "../../lib/netns/netns.js";
import { Rtnl } from "../../lib/netlink/rtnl.js";
import { ensureSysctl } from "../../lib/sysctl/sysctl.js";
import { checkAttachment } from "./check.js";
import { bridgeSettings, type BridgeConf, type BridgeSettings } from "./config.js";
import { configureContainer, containerLink } from "./container.js";
import { calcGateways } from "./gateway.js";
import { configureHostVeth, createPodVeth, ensureGatewayAddress, ensureIfNameFree, ensureVlanGateway, setupBridge } from "./host.js";
import { Rollback, step } from "./rollback.js";
import { crashPoint } from "../../lib/crash/crash.js";

type BridgeRequest = Request<BridgeConf>;

export interface BridgeOptions {
  /** weft plugins to run in this process when CNI_PATH resolves the IPAM plugin to one of them. */
  inProcess?: InProcessPlugins;
}

/**
 * Opens CNI_NETNS: it must be a network namespace (nsfs), and not the plugin's own unless the
 * runtime says so with CNI_NETNS_OVERRIDE (code 8, plugins#714: a recycled /proc/<pid>/ns/net).
 */
function openPodNetns(request: BridgeRequest): Netns {
  const netns = Netns.open(request.env.netns);
  if (!request.env.netnsOverride && isOwnNetns(netns)) {
    netns.close();
    throw new CniError(ErrorCode.InvalidNetns, "netns must not be the plugin's own network namespace", `CNI_NETNS ${request.env.netns}; set CNI_NETNS_OVERRIDE=1 if this is intended`);
  }
  return netns;
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

export function bridgePlugin(options: BridgeOptions = {}): Plugin<BridgeConf> {
  const ipam = (request: BridgeRequest, verb: Verb, type: string) =>
    delegate(type, {
      verb,
      stdin: request.configBytes,
      env: delegateEnv(request.env, process.env),
      paths: request.env.path,
      inProcess: options.inProcess,
    });

  const attachment = (request: BridgeRequest) => ({
    network: request.config.name,
    containerId: request.env.containerId,
    ifName: request.env.ifName,
  });

  async function add(request: BridgeRequest): Promise<Result> {
    const s = bridgeSettings(request.config, request.cniArgs);
    const { conf } = s;
    const { ifName } = request.env;
    const k = new Handles();
    const rollback = new Rollback();
    try {
      const podNetns = await step(`open netns ${JSON.stringify(request.env.netns)}`, () => openPodNetns(request));
      const pod = await k.enter(podNetns);
      const host = await k.host();
      await step(`create veth pair for ${ifName}`, () => ensureIfNameFree(pod, podNetns, ifName));

      // IPAM runs (a process, ~10 ms) while the links are made; its release is the last undo.
      let pendingIpam: Promise<Result | undefined> | undefined;
      if (s.ipamType) {
        const ipamType = s.ipamType;
        const running = step(`run IPAM plugin ${ipamType}`, () => ipam(request, "ADD", ipamType));
        running.catch(() => undefined);
        pendingIpam = running;
        rollback.push(`release IPAM (${ipamType} DEL)`, async () => {
          await running.catch(() => undefined);
          await ipam(request, "DEL", ipamType);
        });
      }

      let bridge = await step(`create bridge ${JSON.stringify(conf.bridge)}`, () => setupBridge(host, s));
      crashPoint("bridge:bridge");
      const veth = await step(`create veth pair for ${ifName}`, () => createPodVeth(host, pod, podNetns, bridge, ifName, s));
      crashPoint("bridge:veth");
      rollback.push(`delete veth ${veth.hostName}`, () => delLink(host, veth.hostIndex));
      await step(`connect ${veth.hostName} to bridge ${conf.bridge}`, () => configureHostVeth(host, veth, s));
      crashPoint("bridge:port");
      let container = await containerLink(pod, podNetns, ifName);

      if (conf.macspoofchk) {
        const key = macspoofKey(request.env.containerId, ifName);
        await step("set up MAC spoof check", () => addMacSpoofCheck(veth.hostName, container.mac, key));
        rollback.push("remove MAC spoof check", () => removeMacSpoofCheck(key));
      }

      let result: Result = { ips: [], routes: [] };
      const extraInterfaces: Array<{ name: string; mac: string }> = [];
      if (pendingIpam) {
        const ipamResult = await pendingIpam;
        crashPoint("bridge:ipam");
        if (!ipamResult?.ips?.length) throw new CniError(ErrorCode.Internal, "IPAM plugin returned missing IP config");
        const calc = calcGateways(ipamResult, s.isGateway, conf.isDefaultGateway);
        result = calc.result;
        await configureContainer(pod, podNetns, container, result, conf.enabledad);
        crashPoint("bridge:addresses");

        if (s.isGateway) {
          let gatewayLink: Link = bridge;
          if (conf.vlan !== 0 && (calc.gateways[4].length || calc.gateways[6].length)) {
            gatewayLink = await step("create vlan interface", () => ensureVlanGateway(host, bridge, s));
            extraInterfaces.push({ name: gatewayLink.name, mac: gatewayLink.mac });
          }
          const what = conf.vlan !== 0 ? "set vlan interface for bridge with addr" : "set bridge addr";
          for (const family of [4, 6] as const) {
            for (const gw of calc.gateways[family]) {
              await step(what, () => ensureGatewayAddress(host, gatewayLink, gw, family, conf.forceAddress));
            }
            if (calc.gateways[family].length) {
              await step("enable forwarding", () => ensureSysctl(family === 4 ? "net/ipv4/ip_forward" : "net/ipv6/conf/all/forwarding", "1"));
            }
          }
          crashPoint("bridge:gateway");
        }

        if (conf.ipMasq) {
          const addresses = (result.ips ?? []).map((ip) => ip.address);
          const backend = chooseBackend(conf.ipMasqBackend);
          await step("set up IP masquerade", () => addMasquerade(attachment(request), addresses, backend));
          crashPoint("bridge:masquerade");
          rollback.push("remove IP masquerade", () => removeMasquerade(attachment(request)));
        }
      } else if (!conf.disableContainerInterface) {
        await step(`set ${ifName} up`, () => setLinkUp(pod, container.index));
      }

      // A port whose pod end stays down never forwards: like the reference, wait only when the pod end is up.
      const hostVeth = conf.disableContainerInterface
        ? await step(`look up ${veth.hostName}`, async () => (await linkByIndex(host, veth.hostIndex)) ?? Promise.reject(new Error(`${veth.hostName} is gone`)))
        : await step(`wait for ${veth.hostName} to forward`, () => waitOperUp(host, veth.hostIndex));
      bridge = (await linkByIndex(host, bridge.index)) ?? bridge;
      container = (await linkByIndex(pod, container.index)) ?? container;
      if (dnsSet(conf)) result.dns = conf.dns;
      crashPoint("bridge:done");
      return {
        ...result,
        interfaces: [
          { name: bridge.name, mac: bridge.mac },
          { name: hostVeth.name, mac: hostVeth.mac },
          { name: container.name, mac: container.mac, sandbox: request.env.netns },
          ...extraInterfaces,
        ],
      };
    } catch (err) {
      await rollback.run(request.log);
      throw err;
    } finally {
      k.close();
    }
  }

  /**
   * Deletes CNI_IFNAME in the pod's namespace; nothing there, or no namespace (a stale path that is
   * no namespace counts as gone: nothing left inside, §3 #14), is success.
   */
  async function deletePodInterface(request: BridgeRequest): Promise<void> {
    let podNetns: Netns | undefined;
    try {
      podNetns = openPodNetns(request);
      const netns = podNetns;
      await step(`delete ${request.env.ifName}`, () => delLinkByName(netns, request.env.ifName));
    } catch (err) {
      if (!(err instanceof NetnsPathError)) throw err;
      request.log(`${err.message}: treating the namespace as gone`);
    } finally {
      podNetns?.close();
    }
  }

  async function del(request: BridgeRequest): Promise<void> {
    const s = bridgeSettings(request.config, request.cniArgs);
    const { conf } = s;
    // The kernel takes about 20 ms to delete a veth pair, inside the request: IPAM releases the
    // address meanwhile (the reference releases it first, so neither order is new to a runtime).
    // Without the pod's namespace nothing proves which host veth was this attachment's: prevResult
    // is the runtime's word and may name another pod's. Like the reference, only IPAM and the
    // rules keyed by this attachment's identity go then; a veth whose namespace died went with it.
    const podInterface = request.env.netns === "" ? Promise.resolve() : deletePodInterface(request);
    const ipamType = s.ipamType;
    const release = ipamType ? step(`release IPAM (${ipamType} DEL)`, () => ipam(request, "DEL", ipamType)) : Promise.resolve();
    const [deleted, released] = await Promise.allSettled([podInterface, release]);
    if (deleted.status === "rejected") throw deleted.reason;
    if (released.status === "rejected") throw released.reason;
    if (conf.macspoofchk) await step("remove MAC spoof check", () => removeMacSpoofCheck(macspoofKey(request.env.containerId, request.env.ifName)));
    if (conf.ipMasq) await step("remove IP masquerade", () => removeMasquerade(attachment(request)));
  }

  async function check(request: BridgeRequest): Promise<void> {
    const s = bridgeSettings(request.config, request.cniArgs);
    const prev = request.prevResult;
    if (!prev) throw new CniError(ErrorCode.InvalidNetworkConfig, "Required prevResult missing");
    if (s.ipamType) {
      const ipamType = s.ipamType;
      await step(`check IPAM (${ipamType} CHECK)`, () => ipam(request, "CHECK", ipamType));
    }
    const k = new Handles();
    try {
      const podNetns = await step(`open netns ${JSON.stringify(request.env.netns)}`, () => openPodNetns(request));
      const pod = await k.enter(podNetns);
      await checkAttachment({ host: await k.host(), pod, podNetns, settings: s, prevResult: prev, env: request.env, attachment: attachment(request) });
    } finally {
      k.close();
    }
  }

  /**
   * STATUS and GC are forwarded to IPAM (spec T4, G4), when it speaks spec 1.1.0: an older plugin
   * (Debian's host-local is 1.0.0) has nothing to report or collect, and answers them with errors.
   */
  const ipamIfSupported = async (request: BridgeRequest, verb: "STATUS" | "GC", type: string) => {
    const out = await execPlugin(findInPath(type, request.env.path), {
      verb: "VERSION",
      stdin: '{"cniVersion":"1.1.0"}',
      env: delegateEnv(request.env, process.env),
      inProcess: options.inProcess,
    });
    let supported: unknown;
    try {
      supported = (JSON.parse(out.toString("utf8")) as { supportedVersions?: unknown }).supportedVersions;
    } catch {
      supported = undefined;
    }
    if (!Array.isArray(supported) || !supported.includes("1.1.0")) {
      request.log(`IPAM plugin ${type} does not speak CNI 1.1.0: ${verb} not forwarded`);
      return;
    }
    await ipam(request, verb, type);
  };

  async function status(request: BridgeRequest): Promise<void> {
    const s = bridgeSettings(request.config, request.cniArgs);
    if (s.ipamType) await ipamIfSupported(request, "STATUS", s.ipamType);
  }

  async function gc(request: GcRequest<BridgeConf>): Promise<void> {
    const s = bridgeSettings(request.config, request.cniArgs);
    const errors: CniError[] = [];
    if (s.ipamType) {
      const ipamType = s.ipamType;
      await ipamIfSupported(request, "GC", ipamType).catch((err: unknown) => errors.push(asCniError(err, "IPAM GC")));
    }
    const keep = request.validAttachments.map((a) => ({ containerId: a.containerID, ifName: a.ifname }));
    await gcMasquerade(request.config.name, keep).catch((err: unknown) => errors.push(asCniError(err, "masquerade GC")));
    if (errors.length) throw combinedError("GC failed", errors);
  }

  return { type: "bridge", validate: validateBridge, argsKeys: ["MAC"], add, del, check, status, gc };
}

function dnsSet(conf: BridgeConf): boolean {
  const d = conf.dns;
  return !!d && (d.nameservers !== undefined || d.search !== undefined || d.options !== undefined || !!d.domain);
}

export type { BridgeSettings };
