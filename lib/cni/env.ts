import { CniError, ErrorCode } from "../errors/cni.js";

export const VERBS = ["ADD", "DEL", "CHECK", "GC", "STATUS", "VERSION"] as const;
export type Verb = (typeof VERBS)[number];

/** What the runtime told the plugin through CNI_ variables, validated for the verb. */
export interface CniEnv {
  command: Verb;
  containerId: string;
  netns: string;
  ifName: string;
  args: string;
  path: string[];
  /** CNI_NETNS_OVERRIDE: lets a runtime pass the plugin's own netns on purpose (plugins#714). */
  netnsOverride: boolean;
}

export type EnvLookup = (name: string) => string | undefined;

/** The spec's name rule for container ids and network names. */
// eslint-disable-next-line no-useless-escape -- as Go's skel writes it: the source is quoted in errors
export const NAME_PATTERN = /^[a-zA-Z0-9][a-zA-Z0-9_.\-]*$/;
/**
 * Longer ids are refused: weft names files after the id (and the interface name), and a file name
 * is at most 255 bytes. Runtimes use 64 to about 80 characters.
 */
export const MAX_CONTAINER_ID_LENGTH = 200;
/** The network name names a directory (host-local's store) too: the same bound. */
export const MAX_NETWORK_NAME_LENGTH = 200;
/**
 * What weft accepts as an interface name: ASCII letters, digits and . _ -, starting with a letter
 * or digit (so never an option to a command, nor . or ..), at most 15.
 */
// eslint-disable-next-line no-useless-escape -- as Go's skel writes it: the source is quoted in errors
export const IFNAME_PATTERN = /^[a-zA-Z0-9][a-zA-Z0-9_.\-]*$/;
/** IFNAMSIZ is 16 including the NUL. */
export const MAX_IFNAME_LENGTH = 15;

interface VariableSpec {
  name: string;
  /** Verbs for which the variable must be non-empty; others may leave it out. */
  requiredFor: readonly Verb[];
}

// Requirements as the Go skel enforces them (pkg/skel), except that STATUS, like the spec says, does
// not need CNI_PATH; a plugin that must delegate reports a missing path when it needs it.
const VARIABLES: readonly VariableSpec[] = [
  { name: "CNI_COMMAND", requiredFor: VERBS },
  { name: "CNI_CONTAINERID", requiredFor: ["ADD", "DEL", "CHECK"] },
  { name: "CNI_NETNS", requiredFor: ["ADD", "CHECK"] },
  { name: "CNI_IFNAME", requiredFor: ["ADD", "DEL", "CHECK"] },
  { name: "CNI_ARGS", requiredFor: [] },
  { name: "CNI_PATH", requiredFor: ["ADD", "DEL", "CHECK", "GC"] },
];

export function isVerb(s: string): s is Verb {
  return (VERBS as readonly string[]).includes(s);
}

/** Reads CNI_COMMAND alone; undefined when it is unset (a bare invocation). */
export function readCommand(getenv: EnvLookup): string | undefined {
  const command = getenv("CNI_COMMAND");
  return command === undefined || command === "" ? undefined : command;
}

/**
 * Reads and validates every CNI_ variable the verb needs. All missing variables are reported
 * together (code 4), then each value is checked in the order the Go skel checks them.
 */
export function readEnvironment(getenv: EnvLookup): CniEnv {
  const command = getenv("CNI_COMMAND") ?? "";
  if (command !== "" && !isVerb(command)) {
    throw new CniError(ErrorCode.InvalidEnvironment, `unknown CNI_COMMAND: ${command}`);
  }
  const verb = command as Verb;
  const missing = VARIABLES.filter((v) => (getenv(v.name) ?? "") === "" && (v.name === "CNI_COMMAND" || v.requiredFor.includes(verb))).map(
    (v) => v.name,
  );
  if (missing.length > 0) {
    throw new CniError(ErrorCode.InvalidEnvironment, `required env variables [${missing.join(",")}] missing`);
  }
  const value = (name: string) => getenv(name) ?? "";
  return {
    command: verb,
    containerId: value("CNI_CONTAINERID"),
    netns: value("CNI_NETNS"),
    ifName: value("CNI_IFNAME"),
    args: value("CNI_ARGS"),
    path: splitPath(value("CNI_PATH")),
    netnsOverride: /^(1|true)$/i.test(value("CNI_NETNS_OVERRIDE")),
  };
}

function splitPath(raw: string): string[] {
  return raw.split(":").filter((p) => p !== "");
}

/** Checks the values of an attachment verb's variables (ADD, DEL, CHECK). */
export function validateAttachment(env: CniEnv): void {
  validateContainerId(env.containerId);
  validateInterfaceName(env.ifName);
  if (env.netns !== "") validateNetnsPath(env.netns);
}

export function validateContainerId(id: string): void {
  if (id === "") throw new CniError(ErrorCode.UnknownContainer, "missing containerID");
  if (id.length > MAX_CONTAINER_ID_LENGTH) {
    throw new CniError(
      ErrorCode.InvalidEnvironment,
      `CNI_CONTAINERID is ${id.length} characters long; at most ${MAX_CONTAINER_ID_LENGTH} are allowed`,
    );
  }
  if (!NAME_PATTERN.test(id)) {
    throw new CniError(
      ErrorCode.InvalidEnvironment,
      "invalid characters in containerID",
      `CNI_CONTAINERID ${JSON.stringify(id)} must match ${NAME_PATTERN.source}`,
    );
  }
}

export function validateInterfaceName(name: string): void {
  if (name === "") throw new CniError(ErrorCode.InvalidEnvironment, "interface name is empty");
  if (name.length > MAX_IFNAME_LENGTH) {
    throw new CniError(
      ErrorCode.InvalidEnvironment,
      `interface name is too long`,
      `CNI_IFNAME ${JSON.stringify(name)} has ${name.length} characters; the kernel allows at most ${MAX_IFNAME_LENGTH}`,
    );
  }
  if (name === "." || name === "..") {
    throw new CniError(ErrorCode.InvalidEnvironment, `interface name is . or ..`);
  }
  // eslint-disable-next-line no-control-regex
  if (/[/:\s\u0000-\u001f\u007f]/.test(name)) {
    throw new CniError(ErrorCode.InvalidEnvironment, `interface name contains / or : or whitespace characters`, `CNI_IFNAME ${JSON.stringify(name)}`);
  }
  // Stricter than the Go skel: the kernel reads a "%" as a name template ("eth%d" becomes eth0),
  // and the name reaches sysctl paths, nft comments and ip(8) arguments.
  if (!IFNAME_PATTERN.test(name)) {
    throw new CniError(
      ErrorCode.InvalidEnvironment,
      "invalid characters in interface name",
      `CNI_IFNAME ${JSON.stringify(name)} must match ${IFNAME_PATTERN.source}`,
    );
  }
}

export function validateNetnsPath(path: string): void {
  // eslint-disable-next-line no-control-regex
  if (!path.startsWith("/") || /[\u0000-\u001f]/.test(path)) {
    throw new CniError(ErrorCode.InvalidEnvironment, `CNI_NETNS ${JSON.stringify(path)} is not an absolute path to a network namespace`);
  }
}
