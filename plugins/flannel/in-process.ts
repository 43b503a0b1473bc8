import type { InProcessPlugins } from "../cni/invoke.js";

/**
 * The weft plugins flannel's bundle runs in its own process when CNI_PATH resolves a delegate to
 * weft's executable of this same build: one Node.js per pod for flannel -> bridge -> host-local
 * instead of one per plugin. Each is imported only when a delegation needs it.
 */
export function weftPlugins(version: string): InProcessPlugins {
  const registry: InProcessPlugins = {
    version,
    plugins: {
      flannel: async () => (await import("./plugin.js")).flannelPlugin({ inProcess: registry }),
      bridge: async () => (await import("../bridge/plugin.js")).bridgePlugin({ inProcess: registry }),
      "host-local": async () => (await import("../../ipam/host-local/plugin.js")).hostLocalPlugin,
    },
  };
  return registry;
}
