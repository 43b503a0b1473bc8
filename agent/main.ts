import { agentNetworkConfig } from "../gen/validators.js";
import { Agent } from "./daemon.js";
import { runDockerOpts } from "./docker-opts.js";
import { parseFlags, type AgentFlags } from "./flags.js";
import { stderrLogger } from "./log.js";
import { iptablesTrafficRules, nftablesTrafficRules } from "./traffic-rules.js";

declare const WEFT_VERSION: string;

const USAGE = `Usage: flanneld [flags]   (weft's flanneld, etcd mode)
       flanneld docker-opts [-f FILE] [-d FILE] [-i] [-c] [-m] [-k KEY]   Docker's options from subnet.env, as mk-docker-opts.sh (-h for more)

  --etcd-endpoints=http://127.0.0.1:4001,http://127.0.0.1:2379   etcd endpoints
  --etcd-prefix=/coreos.com/network   --etcd-keyfile --etcd-certfile --etcd-cafile --etcd-username --etcd-password
  --iface=NAME|ADDRESS (repeatable)   --iface-regex=REGEX (repeatable)   --iface-can-reach=ADDRESS
  --public-ip=ADDRESS   --public-ipv6=ADDRESS
  --ip-masq   --iptables-resync=5   --iptables-forward-rules=true
  --subnet-file=/run/flannel/subnet.env   --subnet-lease-renew-margin=60 (minutes)
  --healthz-ip=0.0.0.0   --healthz-port=0 (0: no health server)
  --route-resync=60 (weft: seconds between full comparisons of routes, neighbours and fdb entries with the leases)
  --cleanup (weft: remove the agent's iptables and nftables rules, then exit)
  --version   -v=LEVEL
Each flag is also read from FLANNELD_<FLAG> (dashes as underscores, upper case).
`;

/** --cleanup: both kinds of rules, both families, whichever the config chose when they were made. */
async function cleanupTrafficRules(): Promise<number> {
  let removed = 0;
  for (const rules of [iptablesTrafficRules(), nftablesTrafficRules()]) for (const family of [4, 6] as const) removed += await rules.cleanup(family);
  return removed;
}

async function main(): Promise<number> {
  // mk-docker-opts.sh's job: before flanneld's flags, which it does not take.
  if (process.argv[2] === "docker-opts") return runDockerOpts(process.argv.slice(3), process.env);
  let flags: AgentFlags;
  try {
    flags = parseFlags(process.argv.slice(2), process.env);
  } catch (err) {
    process.stderr.write(`flanneld: ${(err as Error).message}\n`);
    return 2;
  }
  if (flags.help) {
    process.stdout.write(USAGE);
    return 0;
  }
  if (flags.version) {
    process.stdout.write(`${WEFT_VERSION}\n`);
    return 0;
  }
  const log = stderrLogger();
  if (flags.cleanup) {
    const removed = await cleanupTrafficRules();
    log.info(`removed ${removed} netfilter rules and chains of flanneld`);
    return 0;
  }
  for (const flag of flags.ignored) log.warn(`--${flag} is ignored: it is read by flanneld's Kubernetes subnet manager only`);

  const agent = new Agent({ flags, log, validateConfig: agentNetworkConfig });
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info(`${signal}: stopping; the device (but udp's flannel0, which goes with the process), routes, fdb entries, rules and lease stay in place`);
    void agent.stop().then(() => process.exit(0));
  };
  process.on("SIGTERM", () => stop("SIGTERM"));
  process.on("SIGINT", () => stop("SIGINT"));
  try {
    await agent.start();
  } catch (err) {
    if (stopping) return 0;
    log.error(`${(err as Error).message}`);
    await agent.stop().catch(() => undefined);
    return 1;
  }
  // The agent runs until a signal stops it.
  return new Promise<number>(() => undefined);
}

void main().then((code) => process.exit(code));
