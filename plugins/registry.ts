import type { NetConf } from "../lib/cni/config.js";
import type { InProcessPlugins } from "../lib/cni/invoke.js";
import type { Plugin } from "../lib/cni/skel.js";

/**
 * Every program weft builds, once. The build, the standalone executable, the installer (through the
 * `programs` file the build writes beside the executables), the bench and the multi-call entry read
 * this list; nothing else names a program.
 *
 * This module is read by the build scripts under Node.js's type stripping as well as bundled, so it
 * holds data and lazy imports only: nothing here loads a plugin until a delegation asks for it.
 */
export interface Program {
  /** The CNI type (or the agent's name), and the name the executable is installed under. */
  readonly type: string;
  /** A CNI plugin, run by the runtime per pod; or the node agent, a daemon (flanneld). */
  readonly kind: "cni" | "agent";
  /** The module that runs the program when evaluated, from the repository root. */
  readonly entry: string;
  /** The module exporting the program's config schema (one object with an $id). */
  readonly schema: string;
  /** Points of ADD where a test may have the program killed (WEFT_CRASH_AT), in ADD's order. */
  readonly crashPoints: readonly string[];
  /**
   * The plugin itself, for a delegating weft process of the same build to run in its own process
   * instead of executing it (see plugins/in-process.ts). Only the plugins something delegates to have one:
   * each would otherwise add to every delegating executable's bundle.
   */
  readonly load?: (inProcess: InProcessPlugins) => Promise<Plugin<NetConf>>;
}

export const PROGRAMS = [
  {
    type: "flannel",
    kind: "cni",
    entry: "plugins/flannel/main.ts",
    schema: "plugins/flannel/schema.ts",
    // The delegate config is saved, nothing delegated yet; the delegate answered.
    crashPoints: ["flannel:saved", "flannel:delegated"],
    load: async (inProcess: InProcessPlugins) => (await import("./flannel/plugin.js")).flannelPlugin({ inProcess }),
  },
  {
    type: "bridge",
    kind: "cni",
    entry: "plugins/bridge/main.ts",
    schema: "plugins/bridge/schema.ts",
    // host-local runs between port and ipam, in the same process when it is weft's.
    crashPoints: [
      "bridge:bridge",
      "bridge:veth",
      "bridge:port",
      "bridge:ipam",
      "bridge:addresses",
      "bridge:gateway",
      "bridge:masquerade",
      "bridge:done",
    ],
    load: async (inProcess: InProcessPlugins) => (await import("./bridge/plugin.js")).bridgePlugin({ inProcess }),
  },
  {
    type: "host-local",
    kind: "cni",
    entry: "ipam/host-local/main.ts",
    schema: "ipam/host-local/schema.ts",
    // An address file written, the cursor not yet; the allocation made, the lock let go.
    crashPoints: ["host-local:reserved", "host-local:allocated"],
    load: async () => (await import("../ipam/host-local/plugin.js")).hostLocalPlugin(),
  },
  {
    type: "portmap",
    kind: "cni",
    entry: "plugins/portmap/main.ts",
    schema: "plugins/portmap/schema.ts",
    // The rules are in, the result not yet printed.
    crashPoints: ["portmap:rules"],
  },
  {
    type: "loopback",
    kind: "cni",
    entry: "plugins/loopback/main.ts",
    schema: "plugins/loopback/schema.ts",
    crashPoints: [],
  },
  {
    // The node agent: leases the node's subnet, writes subnet.env, programs the routes between nodes.
    type: "flanneld",
    kind: "agent",
    entry: "agent/main.ts",
    schema: "agent/network-config.schema.ts",
    crashPoints: [],
  },
] as const satisfies readonly Program[];

export type ProgramType = (typeof PROGRAMS)[number]["type"];

export const PROGRAM_TYPES: readonly ProgramType[] = PROGRAMS.map((p) => p.type);

export type CniType = Extract<(typeof PROGRAMS)[number], { kind: "cni" }>["type"];

/** The CNI plugins alone: what a runtime executes from the CNI bin dir. */
export const CNI_TYPES: readonly CniType[] = PROGRAMS.filter((p): p is Extract<(typeof PROGRAMS)[number], { kind: "cni" }> => p.kind === "cni").map(
  (p) => p.type,
);

export function isProgramType(name: string): name is ProgramType {
  return (PROGRAM_TYPES as readonly string[]).includes(name);
}

export type CrashPoint = (typeof PROGRAMS)[number]["crashPoints"][number];

export const CRASH_POINTS: readonly CrashPoint[] = PROGRAMS.flatMap((p) => p.crashPoints);
