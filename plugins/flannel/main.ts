import { runPlugin } from "../cni/skel.js";
import { weftPlugins } from "./in-process.js";
import { flannelPlugin } from "./plugin.js";

declare const WEFT_VERSION: string;

runPlugin(flannelPlugin({ inProcess: weftPlugins(WEFT_VERSION) }));
