import { runPlugin } from "../../lib/cni/skel.js";
import { loopbackPlugin } from "./plugin.js";

runPlugin(loopbackPlugin());
