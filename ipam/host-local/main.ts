import { runPlugin } from "../../plugins/cni/skel.js";
import { hostLocalPlugin } from "./plugin.js";

runPlugin(hostLocalPlugin);
