import type { InProcessPlugins } from "../cni/invoke.js";
import { runPlugin } from "../cni/skel.js";
import { bridgePlugin } from "./plugin.js";

declare const WEFT_VERSION: string;

// weft's host-local, when CNI_PATH resolves the IPAM plugin to it, runs in this process.
const inProcess: InProcessPlugins = {
  version: WEFT_VERSION,
  plugins: { "host-local": async () => (await import("../../ipam/host-local/plugin.js")).hostLocalPlugin },
};

runPlugin(bridgePlugin({ inProcess }));
