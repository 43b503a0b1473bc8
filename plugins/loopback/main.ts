import { runPlugin } from "../cni/skel.js";
import { loopbackPlugin } from "./plugin.js";

runPlugin(loopbackPlugin());
