import { runPlugin } from "../../lib/cni/skel.js";
import { inProcessPlugins } from "../in-process.js";
import { flannelPlugin } from "./plugin.js";

declare const WEFT_VERSION: string;

runPlugin(flannelPlugin({ inProcess: inProcessPlugins(WEFT_VERSION) }));
