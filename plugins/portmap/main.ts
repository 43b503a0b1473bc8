import { runPlugin } from "../../lib/cni/skel.js";
import { portmapPlugin } from "./plugin.js";

runPlugin(portmapPlugin());
