import type { NetConf } from "../lib/cni/config.js";
import type { InProcessPlugins } from "../lib/cni/invoke.js";
import type { Plugin } from "../lib/cni/skel.js";
import { weftProgramOf } from "../lib/executable/identity.js";
import { PROGRAMS, type Program } from "./registry.js";

/**
 * The plugins a weft process of this build runs in its own process when CNI_PATH resolves a delegate
 * to weft's executable of the same build: one Node.js per pod for flannel -> bridge -> host-local
 * instead of one per plugin. Each is imported only when a delegation needs it.
 */
export function inProcessPlugins(version: string): InProcessPlugins {
  const plugins: Record<string, () => Promise<Plugin<NetConf>>> = {};
  const registry: InProcessPlugins = { version, plugins, identify: (path) => weftProgramOf(path, version) };
  for (const program of PROGRAMS as readonly Program[]) {
    const load = program.load;
    if (load) plugins[program.type] = () => load(registry);
  }
  return registry;
}
