import type { NetConf } from "./config.js";
import { CniError, ErrorCode } from "./errors.js";
import type { Plugin, Request } from "./skel.js";

/**
 * A plugin whose verbs are not built yet: it answers VERSION (the dispatcher does) and every other
 * verb with a clear error, so a node never mistakes it for a working plugin.
 */
export function pendingPlugin(type: string, validate: Plugin<NetConf>["validate"]): Plugin<NetConf> {
  const refuse = async (request: Request<NetConf>): Promise<never> => {
    throw new CniError(
      ErrorCode.NotImplemented,
      `weft ${type}: ${request.verb} is not implemented yet in this build`,
      "this executable only answers VERSION; use the reference plugin until weft's is released",
    );
  };
  return { type, validate, add: refuse, del: refuse, check: refuse, gc: refuse, status: refuse };
}
