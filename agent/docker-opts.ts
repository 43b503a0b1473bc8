import { readFileSync, statSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { CniError, ErrorCode } from "../lib/errors/cni.js";
import { writeFileAtomically } from "../lib/files/atomic-write.js";
import { formatCidr, networkOf, parseCidr, type ParsedCidr } from "../lib/ip/ip.js";
import { listRoutes, type KernelRoute } from "../lib/netlink/route.js";
import { withRtnl } from "../lib/netlink/rtnl.js";
import type { Netns } from "../lib/netns/netns.js";

/**
 * `flanneld docker-opts`: flannel's dist/mk-docker-opts.sh, which turns subnet.env into the options
 * of a Docker daemon whose own bridge (docker0) takes this node's subnet. Same flags, defaults and
 * output file as the script run by its #!/bin/sh (dash); see DOCKER_OPTS_USAGE for where it is stricter.
 */

export const DEFAULT_SUBNET_FILE = "/run/flannel/subnet.env";
export const DEFAULT_DOCKER_ENV_FILE = "/run/docker_opts.env";
const DEFAULT_KEY = "DOCKER_OPTS";
/** The prefix of the separate variables; the script writes every shell variable that has it. */
const OPTION_PREFIX = "DOCKER_OPT_";

export const DOCKER_OPTS_USAGE = `Usage: flanneld docker-opts [-f FLANNEL-ENV-FILE] [-d DOCKER-ENV-FILE] [-i] [-c] [-m] [-k COMBINED-KEY]

Writes the Docker daemon's network options for this node from flanneld's subnet.env, as flannel's
mk-docker-opts.sh does.
  -f FILE, --subnet-file FILE   the subnet.env to read ($FLANNELD_SUBNET_FILE, else ${DEFAULT_SUBNET_FILE})
  -d FILE   the env file to write (${DEFAULT_DOCKER_ENV_FILE}), replaced whole
  -i        one variable per option: DOCKER_OPT_BIP, DOCKER_OPT_IPMASQ, DOCKER_OPT_MTU
  -c        all options in one variable (-i and -c both when neither is given)
  -k NAME   the one variable's name (${DEFAULT_KEY})
  -m        no --ip-masq option (for a Docker too old to know it)
  -h, --help   this text
As with the script, the combined value starts with that variable's value in the environment, and the
environment's DOCKER_OPT_* variables are written too. Unlike it, a missing or malformed subnet.env is an
error (FLANNEL_SUBNET and FLANNEL_MTU are required) and leaves the env file as it was.
`;

export type Environment = Readonly<Record<string, string | undefined>>;

export interface DockerOptsFlags {
  /** -f, --subnet-file */
  subnetFile: string;
  /** -d */
  dockerEnvFile: string;
  /** -i: one DOCKER_OPT_* line per option. */
  individual: boolean;
  /** -c: one line with all options under `key`. */
  combined: boolean;
  /** -k */
  key: string;
  /** false with -m: no --ip-masq option. */
  ipMasqOption: boolean;
  help: boolean;
}

/** What Docker's options are made of, from subnet.env. */
export interface DockerSubnet {
  /** FLANNEL_SUBNET as written: the bridge's address with the subnet's length (10.244.1.1/24). */
  subnet: string;
  mtu: number;
  /** FLANNEL_IPMASQ; absent only when -m made it irrelevant. */
  ipMasq?: boolean;
}

const IDENTIFIER = /^[A-Za-z_][A-Za-z0-9_]*$/;

function flagError(message: string): never {
  throw new CniError(ErrorCode.InvalidEnvironment, `${message} (flanneld docker-opts -h for usage)`);
}

/**
 * mk-docker-opts.sh's flags as getopts("f:d:icmk:?h") reads them (-ic, -kNAME and -k NAME alike), plus
 * flanneld's --subnet-file. Where getopts would stop at an operand and ignore the rest, an operand is
 * refused, as it is probably a flag that was meant.
 */
export function parseDockerOptsFlags(argv: readonly string[], env: Environment): DockerOptsFlags {
  const flags: DockerOptsFlags = {
    subnetFile: env.FLANNELD_SUBNET_FILE || DEFAULT_SUBNET_FILE,
    dockerEnvFile: DEFAULT_DOCKER_ENV_FILE,
    individual: false,
    combined: false,
    key: DEFAULT_KEY,
    ipMasqOption: true,
    help: false,
  };
  const setValue = (flag: string, value: string | undefined) => {
    if (value === undefined) flagError(`${flag} needs a value`);
    if (flag === "-k") {
      if (!IDENTIFIER.test(value)) flagError(`-k ${JSON.stringify(value)}: the combined key must be a shell variable name (letters, digits, _)`);
      flags.key = value;
    } else {
      if (value === "") flagError(`${flag} needs a file name, got ""`);
      if (flag === "-d") flags.dockerEnvFile = value;
      else flags.subnetFile = value;
    }
  };

  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === "--") {
      if (i + 1 < argv.length) flagError(`unexpected argument ${JSON.stringify(argv[i + 1])}`);
      break;
    }
    if (arg === "--help") {
      flags.help = true;
    } else if (arg === "--subnet-file" || arg.startsWith("--subnet-file=")) {
      const eq = arg.indexOf("=");
      setValue("--subnet-file", eq >= 0 ? arg.slice(eq + 1) : argv[++i]);
    } else if (arg.startsWith("--")) {
      flagError(`unknown flag ${arg}`);
    } else if (arg.startsWith("-") && arg.length > 1) {
      for (let j = 1; j < arg.length; j++) {
        const letter = arg[j];
        if (letter === "i") flags.individual = true;
        else if (letter === "c") flags.combined = true;
        else if (letter === "m") flags.ipMasqOption = false;
        else if (letter === "h" || letter === "?") flags.help = true;
        else if (letter === "f" || letter === "d" || letter === "k") {
          setValue(`-${letter}`, j + 1 < arg.length ? arg.slice(j + 1) : argv[++i]);
          break;
        } else flagError(`unknown flag -${letter}`);
      }
    } else {
      flagError(`unexpected argument ${JSON.stringify(arg)}`);
    }
  }
  if (!flags.individual && !flags.combined) {
    flags.individual = true;
    flags.combined = true;
  }
  return flags;
}

function malformed(path: string, problem: string): never {
  throw new CniError(ErrorCode.InvalidNetworkConfig, `${path}: ${problem}: is it the subnet.env flanneld wrote on this node?`);
}

/** Removes one pair of matching quotes, as the shell that sources the file would. */
function unquote(value: string): string {
  const quote = value[0];
  return (quote === '"' || quote === "'") && value.length >= 2 && value.endsWith(quote) ? value.slice(1, -1) : value;
}

/**
 * The values Docker's options are made of. The script sources the file, so a line the shell reads is
 * accepted (comments, blank lines, `export`, quotes, a "\r" left by an editor, a later line winning);
 * other lines, and malformed values of the keys used, are refused with their line. The IPv6 lines and
 * other keys are not used: Docker's --bip takes one IPv4 subnet.
 */
export function parseDockerSubnetEnv(text: string, path: string, needIpMasq: boolean): DockerSubnet {
  const values = new Map<string, { value: string; line: number }>();
  text.split("\n").forEach((raw, i) => {
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) return;
    const match = /^(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)=(.*)$/.exec(line);
    if (!match) malformed(path, `line ${i + 1}: ${JSON.stringify(raw)} is not KEY=VALUE`);
    values.set(match[1]!, { value: unquote(match[2]!), line: i + 1 });
  });

  const problem = (key: string, expected: string) => {
    const entry = values.get(key)!;
    return `line ${entry.line}: ${key}=${JSON.stringify(entry.value)} is not ${expected}`;
  };
  const subnet = values.get("FLANNEL_SUBNET");
  const mtu = values.get("FLANNEL_MTU");
  const ipMasq = values.get("FLANNEL_IPMASQ");
  if (subnet && parseCidr(subnet.value)?.ip.family !== 4) malformed(path, problem("FLANNEL_SUBNET", "an IPv4 address with a prefix length"));
  if (mtu && !(/^\d+$/.test(mtu.value) && Number(mtu.value) >= 68 && Number(mtu.value) <= 65535)) {
    malformed(path, problem("FLANNEL_MTU", "an MTU (68 to 65535)"));
  }
  // The script checks FLANNEL_IPMASQ only without -m; a malformed file is refused either way.
  if (ipMasq && ipMasq.value !== "true" && ipMasq.value !== "false") malformed(path, problem("FLANNEL_IPMASQ", "true or false"));

  const missing = [...(subnet ? [] : ["FLANNEL_SUBNET"]), ...(mtu ? [] : ["FLANNEL_MTU"]), ...(ipMasq || !needIpMasq ? [] : ["FLANNEL_IPMASQ"])];
  if (!subnet || !mtu || missing.length > 0) {
    const ipv6 = values.get("FLANNEL_IPV6_SUBNET");
    const why = !subnet && ipv6 ? ` (this node's lease is IPv6 only, FLANNEL_IPV6_SUBNET=${ipv6.value}: Docker's --bip takes an IPv4 subnet)` : "";
    malformed(path, `${missing.join(", ")} ${missing.length > 1 ? "are" : "is"} missing${why}`);
  }
  return { subnet: subnet.value, mtu: Number(mtu.value), ...(ipMasq ? { ipMasq: ipMasq.value === "true" } : {}) };
}

/** A value the output's double quotes hold as it is, for the shell and for systemd's EnvironmentFile alike. */
function checkFromEnvironment(name: string, value: string): string {
  const bad = /["\\$`\n]/.exec(value);
  if (bad) {
    throw new CniError(
      ErrorCode.InvalidEnvironment,
      `${name} in the environment holds ${JSON.stringify(bad[0])}, which cannot be written inside double quotes as the options are: unset it or remove the character`,
    );
  }
  return value;
}

/**
 * The Docker env file's text, byte for byte what mk-docker-opts.sh writes under dash: with -i each
 * DOCKER_OPT_* variable (ours, and those of the environment, which ours override) as NAME="value" in
 * the order of the shell's `set` (byte order of the names); with -c the combined line, which starts
 * with the key's value in the environment and a space when that is not empty, then " value" per option.
 */
export function dockerOptsText(subnet: DockerSubnet, flags: DockerOptsFlags, env: Environment): string {
  const options = new Map<string, string>();
  for (const [name, value] of Object.entries(env)) {
    if (name.startsWith(OPTION_PREFIX) && IDENTIFIER.test(name) && value !== undefined) options.set(name, checkFromEnvironment(name, value));
  }
  options.set("DOCKER_OPT_BIP", `--bip=${subnet.subnet}`);
  options.set("DOCKER_OPT_MTU", `--mtu=${subnet.mtu}`);
  // flanneld masquerades the pods' traffic itself (FLANNEL_IPMASQ=true), so Docker must not, and the reverse.
  if (flags.ipMasqOption && subnet.ipMasq !== undefined) options.set("DOCKER_OPT_IPMASQ", `--ip-masq=${!subnet.ipMasq}`);

  const names = [...options.keys()].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  let text = "";
  if (flags.individual) for (const name of names) text += `${name}="${options.get(name)}"\n`;
  if (flags.combined) {
    const before = checkFromEnvironment(flags.key, env[flags.key] ?? "");
    const combined = names.reduce((line, name) => `${line} ${options.get(name)}`, before === "" ? "" : `${before} `);
    text += `${flags.key}="${combined}"\n`;
  }
  return text;
}

function readSubnetEnvText(path: string): string {
  try {
    return readFileSync(path, "utf8");
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    if (e.code === "ENOENT") {
      throw new CniError(
        ErrorCode.TryAgainLater,
        `${path} does not exist: flanneld has not written this node's subnet yet (is it running on this node?)`,
      );
    }
    throw new CniError(ErrorCode.IOFailure, `cannot read ${path}: ${e.message}`);
  }
}

/**
 * The script's last check, done before writing rather than after: a route to this node's subnet via a
 * gateway (another node's, left from when the subnet was its) would take the traffic meant for docker0.
 */
async function conflictingRoute(subnet: ParsedCidr, netns: Netns | undefined): Promise<KernelRoute | undefined> {
  const network = formatCidr(networkOf(subnet));
  const routes = await withRtnl(netns, (nl) => listRoutes(nl, { family: 4 }));
  return routes.find((route) => route.gw !== undefined && route.dst === network);
}

function writeDockerEnv(path: string, text: string): void {
  let mode = 0o644;
  try {
    mode = statSync(path).mode & 0o7777;
  } catch {
    // not there yet: the mode the script's redirection gets under the usual umask
  }
  try {
    writeFileAtomically(path, text, { mode, temporary: join(dirname(path), `.${basename(path)}.${process.pid}.tmp`), durable: true });
  } catch (err) {
    throw new CniError(ErrorCode.IOFailure, `cannot write ${path}: ${(err as Error).message}`);
  }
}

export interface DockerOptsIo {
  stdout: (text: string) => void;
  stderr: (text: string) => void;
  /** Where the routing table is read: this process's namespace when absent. */
  netns?: Netns;
}

const processIo: DockerOptsIo = {
  stdout: (text) => process.stdout.write(text),
  stderr: (text) => process.stderr.write(text),
};

/** `flanneld docker-opts ARGS`: 0 when the Docker env file is written, 1 (as the script) on any error, after a message. */
export async function runDockerOpts(argv: readonly string[], env: Environment, io: DockerOptsIo = processIo): Promise<number> {
  try {
    const flags = parseDockerOptsFlags(argv, env);
    if (flags.help) {
      io.stdout(DOCKER_OPTS_USAGE);
      return 0;
    }
    const subnet = parseDockerSubnetEnv(readSubnetEnvText(flags.subnetFile), flags.subnetFile, flags.ipMasqOption);
    const text = dockerOptsText(subnet, flags, env);
    const route = await conflictingRoute(parseCidr(subnet.subnet)!, io.netns);
    if (route) {
      throw new CniError(
        ErrorCode.NodeConflict,
        `the routing table already routes this node's subnet ${route.dst} via ${route.gw}: Docker's bridge (--bip=${subnet.subnet}) would clash with it; ${flags.dockerEnvFile} is left as it was`,
      );
    }
    writeDockerEnv(flags.dockerEnvFile, text);
    return 0;
  } catch (err) {
    io.stderr(`flanneld docker-opts: ${(err as Error).message}\n`);
    return 1;
  }
}
