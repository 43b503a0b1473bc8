import { runPlugin } from "../cni/skel.js";
import { bridgePlugin } from "./plugin.js";

runPlugin(bridgePlugin());
