import { runPlugin } from "../cni/skel.js";
import { portmapPlugin } from "./plugin.js";

runPlugin(portmapPlugin());
