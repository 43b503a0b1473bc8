import { CniError, ErrorCode } from "../errors/cni.js";

/**
 * CNI_ARGS as pkg/types/args.go LoadArgs reads it: "K=V;K=V", exactly one "=" per pair. A key the
 * plugin does not know is an error unless IgnoreUnknown is 1 or true (kubelet always sends it).
 */
export function parseCniArgs(raw: string, knownKeys: readonly string[]): Map<string, string> {
  const pairs = new Map<string, string>();
  if (raw === "") return pairs;
  for (const pair of raw.split(";")) {
    const parts = pair.split("=");
    if (parts.length !== 2) {
      throw new CniError(ErrorCode.InvalidEnvironment, `CNI_ARGS: invalid pair ${JSON.stringify(pair)}: expected KEY=VALUE`);
    }
    pairs.set(parts[0]!, parts[1]!);
  }
  const ignoreUnknown = /^(1|true)$/i.test(pairs.get("IgnoreUnknown") ?? "");
  if (!ignoreUnknown) {
    const unknown = [...pairs.keys()].filter((k) => k !== "IgnoreUnknown" && !knownKeys.includes(k));
    if (unknown.length > 0) {
      throw new CniError(
        ErrorCode.InvalidEnvironment,
        `CNI_ARGS: unknown args [${unknown.join(",")}]`,
        `known keys: [${knownKeys.join(",")}]; add IgnoreUnknown=1 to ignore the others`,
      );
    }
  }
  return pairs;
}
