import { isSea } from "node:sea";
import { chooseType, TYPES, type PluginType } from "./multicall.js";

/**
 * weft's multi-call entry: one executable serving the five CNI types. Each plugin's main module
 * runs its plugin when evaluated, and only the chosen one is evaluated (the bundler turns these
 * imports into lazy module initialisers), so start-up pays for one plugin, not five.
 */
const PLUGINS: Record<PluginType, () => Promise<unknown>> = {
  flannel: () => import("../flannel/main.js"),
  bridge: () => import("../bridge/main.js"),
  "host-local": () => import("../../ipam/host-local/main.js"),
  portmap: () => import("../portmap/main.js"),
  loopback: () => import("../loopback/main.js"),
};

const type = chooseType({ sea: isSea(), argv: process.argv, argv0: process.argv0, execPath: process.execPath });
if (type) {
  PLUGINS[type]().catch((err: unknown) => {
    process.stderr.write(`weft: failed to load plugin ${type}: ${(err as Error)?.stack ?? String(err)}\n`);
    process.exit(1);
  });
} else {
  process.stderr.write(
    `weft: invoked as ${JSON.stringify(process.argv0)}: install this executable under one of the CNI type names (${TYPES.join(", ")}), or run "weft <type>"\n`,
  );
  process.exitCode = 1;
}
