import { portmap } from "../../gen/validators.js";
import { pendingPlugin } from "../cni/pending.js";
import { runPlugin } from "../cni/skel.js";

runPlugin(pendingPlugin("portmap", portmap));
