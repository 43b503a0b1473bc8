import { runPlugin } from "../../lib/cni/skel.js";
import { inProcessPlugins } from "../in-process.js";
import { bridgePlugin } from "./plugin.js";

declare const WEFT_VERSION: string;

// weft's host-local, when CNI_PATH resolves the IPAM plugin to it, runs in this process.
runPlugin(bridgePlugin({ inProcess: inProcessPlugins(WEFT_VERSION) }));
