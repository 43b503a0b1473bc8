import { CniError, ErrorCode } from "../lib/errors/cni.js";
import { parseIp, type IpFamily } from "../lib/ip/ip.js";

/** flanneld's options in etcd mode, read once at start from the command line and FLANNELD_* variables. */
export interface AgentFlags {
  etcdEndpoints: string[];
  etcdPrefix: string;
  etcdKeyfile: string;
  etcdCertfile: string;
  etcdCafile: string;
  etcdUsername: string;
  etcdPassword: string;
  /** Interface names or addresses, tried in order. */
  iface: string[];
  /** Regular expressions over interface names and addresses, tried after `iface`. */
  ifaceRegex: string[];
  ifaceCanReach: string;
  publicIP: string;
  publicIPv6: string;
  ipMasq: boolean;
  subnetFile: string;
  subnetLeaseRenewMarginMinutes: number;
  iptablesResyncSeconds: number;
  iptablesForwardRules: boolean;
  healthzIP: string;
  /** 0: no health server. */
  healthzPort: number;
  /** weft's own: seconds between full passes comparing the kernel's routes, neighbours and fdb entries with the leases. */
  routeResyncSeconds: number;
  /** weft's own: remove the agent's netfilter rules and exit. */
  cleanup: boolean;
  /** klog's -v: the log verbosity. */
  verbosity: number;
  version: boolean;
  help: boolean;
  /** Flags of flanneld's Kubernetes mode that were given; flanneld ignores them in etcd mode, and so does weft. */
  ignored: string[];
}

interface FlagSpec {
  /** Absent: a string. */
  kind?: "bool" | "int" | "list";
  /** Where the value goes; undefined for the flags that are only accepted. */
  field?: keyof AgentFlags;
  /** What a valid value is, for the error message. */
  expected: string;
  /** Refuses a value the agent cannot use (the reason is `expected`); the kind's syntax is checked before. */
  valid?: (value: string) => boolean;
  /** The value for an int flag, already known to be an integer. */
  range?: [number, number];
}

const isAddress = (family: IpFamily) => (value: string) => value === "" || parseIp(value)?.family === family;

function isRegExp(value: string): boolean {
  try {
    new RegExp(value);
  } catch {
    return false;
  }
  return true;
}

/** clientv3 takes a URL (http, https, unix, unixs) or a bare host:port. */
function isEndpointList(value: string): boolean {
  return value.split(",").every((endpoint) => {
    if (endpoint.includes("://")) {
      let url: URL;
      try {
        url = new URL(endpoint);
      } catch {
        return false;
      }
      return ["http:", "https:", "unix:", "unixs:"].includes(url.protocol);
    }
    return /^[^\s/:]+:\d+$/.test(endpoint) || /^\[[0-9a-fA-F:.]+\]:\d+$/.test(endpoint);
  });
}

/** flanneld's flags (main.go), with its defaults. */
const FLAGS: Record<string, FlagSpec> = {
  "etcd-endpoints": {
    field: "etcdEndpoints",
    expected: "a comma-separated list of etcd URLs (http://host:2379, https://host:2379)",
    valid: isEndpointList,
  },
  "etcd-prefix": {
    field: "etcdPrefix",
    expected: "an etcd key prefix starting with / (e.g. /coreos.com/network)",
    valid: (v) => v.startsWith("/"),
  },
  "etcd-keyfile": { field: "etcdKeyfile", expected: "the path of the client key file for etcd" },
  "etcd-certfile": { field: "etcdCertfile", expected: "the path of the client certificate file for etcd" },
  "etcd-cafile": { field: "etcdCafile", expected: "the path of the CA certificate file for etcd" },
  "etcd-username": { field: "etcdUsername", expected: "a user name for etcd" },
  "etcd-password": { field: "etcdPassword", expected: "a password for etcd" },
  iface: { kind: "list", field: "iface", expected: "an interface name or address", valid: (v) => v !== "" },
  "iface-regex": { kind: "list", field: "ifaceRegex", expected: "a regular expression", valid: (v) => v !== "" && isRegExp(v) },
  "iface-can-reach": { field: "ifaceCanReach", expected: "an IP address", valid: (v) => v === "" || parseIp(v) !== undefined },
  "public-ip": { field: "publicIP", expected: "an IPv4 address", valid: isAddress(4) },
  "public-ipv6": { field: "publicIPv6", expected: "an IPv6 address", valid: isAddress(6) },
  "ip-masq": { kind: "bool", field: "ipMasq", expected: "true or false" },
  "subnet-file": { field: "subnetFile", expected: "a file path", valid: (v) => v !== "" },
  "subnet-lease-renew-margin": {
    kind: "int",
    field: "subnetLeaseRenewMarginMinutes",
    expected: "a whole number of minutes from 1 to 1439",
    range: [1, 1439],
  },
  "iptables-resync": { kind: "int", field: "iptablesResyncSeconds", expected: "a whole number of seconds, 1 or more", range: [1, 2 ** 31 - 1] },
  "iptables-forward-rules": { kind: "bool", field: "iptablesForwardRules", expected: "true or false" },
  "healthz-ip": { field: "healthzIP", expected: "an IP address", valid: (v) => parseIp(v) !== undefined },
  "healthz-port": { kind: "int", field: "healthzPort", expected: "a port number from 0 (no health server) to 65535", range: [0, 65535] },
  "route-resync": {
    kind: "int",
    field: "routeResyncSeconds",
    expected: "a whole number of seconds from 1 to 3600 (weft: how often routes, neighbours and fdb entries are compared with the leases)",
    range: [1, 3600],
  },
  cleanup: { kind: "bool", field: "cleanup", expected: "true or false (weft: remove the agent's netfilter rules and exit)" },
  v: { kind: "int", field: "verbosity", expected: "a log level, 0 or more", range: [0, 2 ** 31 - 1] },
  vmodule: { expected: "a klog vmodule setting" },
  log_backtrace_at: { expected: "a klog file:line" },
  version: { kind: "bool", field: "version", expected: "true or false" },
  help: { kind: "bool", field: "help", expected: "true or false" },
  h: { kind: "bool", field: "help", expected: "true or false" },
  "kube-subnet-mgr": { kind: "bool", expected: "false: weft's flanneld runs in etcd mode only" },
  "kube-api-url": { expected: "a URL" },
  "kube-annotation-prefix": { expected: "an annotation prefix" },
  "kubeconfig-file": { expected: "a file path" },
  "net-config-path": { expected: "a file path" },
  "set-node-network-unavailable": { kind: "bool", expected: "true or false" },
};

const KUBE_ONLY = ["kube-api-url", "kube-annotation-prefix", "kubeconfig-file", "net-config-path", "set-node-network-unavailable"];

export function defaultFlags(): AgentFlags {
  return {
    etcdEndpoints: ["http://127.0.0.1:4001", "http://127.0.0.1:2379"],
    etcdPrefix: "/coreos.com/network",
    etcdKeyfile: "",
    etcdCertfile: "",
    etcdCafile: "",
    etcdUsername: "",
    etcdPassword: "",
    iface: [],
    ifaceRegex: [],
    ifaceCanReach: "",
    publicIP: "",
    publicIPv6: "",
    ipMasq: false,
    subnetFile: "/run/flannel/subnet.env",
    subnetLeaseRenewMarginMinutes: 60,
    iptablesResyncSeconds: 5,
    iptablesForwardRules: true,
    healthzIP: "0.0.0.0",
    healthzPort: 0,
    routeResyncSeconds: 60,
    cleanup: false,
    verbosity: 0,
    version: false,
    help: false,
    ignored: [],
  };
}

/** The environment variable flanneld reads for a flag (flagutil.SetFlagsFromEnv): FLANNELD_ETCD_ENDPOINTS. */
export function envName(flag: string): string {
  return `FLANNELD_${flag.toUpperCase().replace(/-/g, "_")}`;
}

function fail(source: string, message: string): never {
  throw new CniError(ErrorCode.InvalidEnvironment, `${source}: ${message}`);
}

// strconv.ParseBool's spellings.
const TRUE = ["1", "t", "T", "TRUE", "true", "True"];
const FALSE = ["0", "f", "F", "FALSE", "false", "False"];

function setFlag(flags: AgentFlags, name: string, spec: FlagSpec, value: string, source: string): void {
  const refuse = (): never => fail(source, `expected ${spec.expected}, got ${JSON.stringify(value)}`);
  let parsed: string | boolean | number;
  if (spec.kind === "bool") {
    if (TRUE.includes(value)) parsed = true;
    else if (FALSE.includes(value)) parsed = false;
    else return refuse();
  } else if (spec.kind === "int") {
    // Decimal only: Go's strconv.ParseInt(s, 0, 64) would also take 0x10, 0o17 and read 010 as octal.
    if (!/^[+-]?\d+$/.test(value)) refuse();
    parsed = Number(value);
    if (spec.range && (parsed < spec.range[0] || parsed > spec.range[1])) refuse();
  } else {
    if (spec.valid && !spec.valid(value)) refuse();
    parsed = value;
  }

  if (name === "kube-subnet-mgr") {
    if (parsed === true) {
      fail(
        source,
        "the Kubernetes subnet manager is not supported: weft's flanneld runs in etcd mode only (the network config and the leases " +
          "under --etcd-prefix in etcd); leave the flag out and give --etcd-endpoints",
      );
    }
    return;
  }
  if (KUBE_ONLY.includes(name)) {
    if (!flags.ignored.includes(name)) flags.ignored.push(name);
    return;
  }
  if (!spec.field) return;
  const target = flags as unknown as Record<string, unknown>;
  if (spec.kind === "list") (target[spec.field] as string[]).push(value);
  else if (spec.field === "etcdEndpoints") flags.etcdEndpoints = value.split(",");
  else target[spec.field] = parsed;
}

/**
 * Reads flanneld's flags as Go's flag package does (`-flag`, `--flag`, `--flag=value`, `--flag value`;
 * a boolean takes no separate value: `--ip-masq`, `--ip-masq=false`; parsing stops at `--`), then
 * the FLANNELD_* variable of every flag the command line did not set (a non-empty value only, as
 * flagutil.SetFlagsFromEnv). Unlike flanneld, a bad variable or a stray argument stops the agent
 * instead of being logged and ignored.
 */
export function parseFlags(args: readonly string[], env: Readonly<Record<string, string | undefined>>): AgentFlags {
  const flags = defaultFlags();
  const setOnCommandLine = new Set<string>();
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    if (arg === "--") {
      if (i + 1 < args.length) fail(JSON.stringify(args[i + 1]), "flanneld takes no arguments, only flags");
      break;
    }
    if (arg.length < 2 || !arg.startsWith("-")) fail(JSON.stringify(arg), "flanneld takes no arguments, only flags");
    const body = arg.startsWith("--") ? arg.slice(2) : arg.slice(1);
    // (An empty body is "--", handled above, or "-", refused above.)
    if (body.startsWith("-") || body.startsWith("=")) fail(JSON.stringify(arg), "bad flag syntax");
    const eq = body.indexOf("=");
    const name = eq === -1 ? body : body.slice(0, eq);
    const spec = FLAGS[name];
    if (!spec) fail(`--${name}`, "unknown flag (see --help for flanneld's flags)");
    let value: string;
    if (eq !== -1) value = body.slice(eq + 1);
    else if (spec.kind === "bool") value = "true";
    else if (i + 1 < args.length) value = args[++i]!;
    else fail(`--${name}`, `needs a value: ${spec.expected}`);
    setFlag(flags, name, spec, value, `--${name}`);
    setOnCommandLine.add(name);
  }
  for (const [name, spec] of Object.entries(FLAGS)) {
    // flanneld acts on --version and --help before it reads the environment.
    if (setOnCommandLine.has(name) || ["h", "help", "version"].includes(name)) continue;
    const value = env[envName(name)];
    if (value !== undefined && value !== "") setFlag(flags, name, spec, value, envName(name));
  }
  checkTogether(flags);
  return flags;
}

function checkTogether(flags: AgentFlags): void {
  // flanneld silently falls back to plain http when only one of the two is given.
  if ((flags.etcdKeyfile === "") !== (flags.etcdCertfile === "")) {
    fail(
      flags.etcdKeyfile === "" ? "--etcd-certfile" : "--etcd-keyfile",
      "--etcd-keyfile and --etcd-certfile go together: give both for a client certificate, or neither",
    );
  }
}
