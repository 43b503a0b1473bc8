import { runPlugin } from "../../lib/cni/skel.js";
import { hostLocalPlugin } from "./plugin.js";

runPlugin(hostLocalPlugin());
