import { flannel } from "../../gen/validators.js";
import { pendingPlugin } from "../cni/pending.js";
import { runPlugin } from "../cni/skel.js";

runPlugin(pendingPlugin("flannel", flannel));
