import { hostLocal } from "../../gen/validators.js";
import { pendingPlugin } from "../../plugins/cni/pending.js";
import { runPlugin } from "../../plugins/cni/skel.js";

runPlugin(pendingPlugin("host-local", hostLocal));
