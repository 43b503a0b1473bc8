import { chmodSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { CniError } from "../lib/errors/cni.js";
import { parseCidr } from "../lib/ip/ip.js";
import { Netns } from "../lib/netns/netns.js";
import { createNetns, removeNetns, type TestNetns } from "../test/helpers/netns.js";
import {
  DEFAULT_DOCKER_ENV_FILE,
  DEFAULT_SUBNET_FILE,
  DOCKER_OPTS_USAGE,
  dockerOptsText,
  parseDockerOptsFlags,
  parseDockerSubnetEnv,
  runDockerOpts,
  type Environment,
} from "./docker-opts.js";
import { parseNetworkConfig } from "./network-config.js";
import { formatSubnetEnv } from "./subnet-env.js";

// subnet.env files, and what flannel's dist/mk-docker-opts.sh (run by dash, its #!/bin/sh on Debian)
// wrote for them into its -d file, recorded byte for byte.
const FILES = {
  // flannel's dist/sample_subnet.env
  sample: "FLANNEL_NETWORK=10.1.0.0/16\nFLANNEL_SUBNET=10.1.74.1/24\nFLANNEL_MTU=1472\nFLANNEL_IPMASQ=false\n",
  v4: "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.1.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n",
  dual:
    "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.1.1/24\nFLANNEL_IPV6_NETWORK=fd00:10:244::/56\n" +
    "FLANNEL_IPV6_SUBNET=fd00:10:244:1::1/64\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=false\n",
  // What the shell that sources the file accepts: a comment, a blank line, export, quotes, a later line winning.
  handWritten:
    "# written by hand\n\nexport FLANNEL_SUBNET=\"10.244.2.1/24\"\nFLANNEL_MTU=1400\nFLANNEL_IPMASQ='true'\nFLANNEL_SUBNET=10.244.3.1/24\n",
};

interface ScriptCase {
  file: keyof typeof FILES;
  flags: string[];
  env?: Record<string, string>;
  output: string;
}

const SAMPLE_SEPARATE = 'DOCKER_OPT_BIP="--bip=10.1.74.1/24"\nDOCKER_OPT_IPMASQ="--ip-masq=true"\nDOCKER_OPT_MTU="--mtu=1472"\n';
const V4_SEPARATE = 'DOCKER_OPT_BIP="--bip=10.244.1.1/24"\nDOCKER_OPT_IPMASQ="--ip-masq=false"\nDOCKER_OPT_MTU="--mtu=1450"\n';
const V4_COMBINED = " --bip=10.244.1.1/24 --ip-masq=false --mtu=1450";

const SCRIPT_CASES: ScriptCase[] = [
  // flannel's own cases (dist/mk_docker_opts_test.go)
  { file: "sample", flags: [], output: `${SAMPLE_SEPARATE}DOCKER_OPTS=" --bip=10.1.74.1/24 --ip-masq=true --mtu=1472"\n` },
  { file: "sample", flags: ["-i"], output: SAMPLE_SEPARATE },
  { file: "sample", flags: ["-c"], output: 'DOCKER_OPTS=" --bip=10.1.74.1/24 --ip-masq=true --mtu=1472"\n' },
  { file: "sample", flags: ["-k", "CUSTOM_KEY"], output: `${SAMPLE_SEPARATE}CUSTOM_KEY=" --bip=10.1.74.1/24 --ip-masq=true --mtu=1472"\n` },
  {
    file: "sample",
    flags: ["-m"],
    output: 'DOCKER_OPT_BIP="--bip=10.1.74.1/24"\nDOCKER_OPT_MTU="--mtu=1472"\nDOCKER_OPTS=" --bip=10.1.74.1/24 --mtu=1472"\n',
  },
  // FLANNEL_IPMASQ=true: flanneld masquerades, so Docker must not
  { file: "v4", flags: [], output: `${V4_SEPARATE}DOCKER_OPTS="${V4_COMBINED}"\n` },
  { file: "v4", flags: ["-ic"], output: `${V4_SEPARATE}DOCKER_OPTS="${V4_COMBINED}"\n` },
  { file: "v4", flags: ["-mc"], output: 'DOCKER_OPTS=" --bip=10.244.1.1/24 --mtu=1450"\n' },
  { file: "v4", flags: ["-m", "-i"], output: 'DOCKER_OPT_BIP="--bip=10.244.1.1/24"\nDOCKER_OPT_MTU="--mtu=1450"\n' },
  { file: "v4", flags: ["-kXX"], output: `${V4_SEPARATE}XX="${V4_COMBINED}"\n` },
  { file: "v4", flags: ["-c", "-k", "DOCKER_NETWORK_OPTIONS"], output: `DOCKER_NETWORK_OPTIONS="${V4_COMBINED}"\n` },
  // the IPv6 lines are not Docker's --bip
  {
    file: "dual",
    flags: [],
    output:
      'DOCKER_OPT_BIP="--bip=10.244.1.1/24"\nDOCKER_OPT_IPMASQ="--ip-masq=true"\nDOCKER_OPT_MTU="--mtu=1450"\n' +
      'DOCKER_OPTS=" --bip=10.244.1.1/24 --ip-masq=true --mtu=1450"\n',
  },
  {
    file: "handWritten",
    flags: [],
    output:
      'DOCKER_OPT_BIP="--bip=10.244.3.1/24"\nDOCKER_OPT_IPMASQ="--ip-masq=false"\nDOCKER_OPT_MTU="--mtu=1400"\n' +
      'DOCKER_OPTS=" --bip=10.244.3.1/24 --ip-masq=false --mtu=1400"\n',
  },
  // the environment: the combined key's value comes first, DOCKER_OPT_* variables join in
  { file: "v4", flags: [], env: { DOCKER_OPTS: "--foo --bar" }, output: `${V4_SEPARATE}DOCKER_OPTS="--foo --bar ${V4_COMBINED}"\n` },
  { file: "v4", flags: ["-c"], env: { DOCKER_OPTS: "" }, output: `DOCKER_OPTS="${V4_COMBINED}"\n` },
  { file: "v4", flags: ["-c", "-k", "CUSTOM"], env: { CUSTOM: "--foo", DOCKER_OPTS: "zzz" }, output: `CUSTOM="--foo ${V4_COMBINED}"\n` },
  {
    file: "v4",
    flags: [],
    env: { DOCKER_OPT_AAA: "--a", DOCKER_OPT_ZZZ: "--z", DOCKER_OPT_C: "--c" },
    output:
      'DOCKER_OPT_AAA="--a"\nDOCKER_OPT_BIP="--bip=10.244.1.1/24"\nDOCKER_OPT_C="--c"\nDOCKER_OPT_IPMASQ="--ip-masq=false"\n' +
      'DOCKER_OPT_MTU="--mtu=1450"\nDOCKER_OPT_ZZZ="--z"\nDOCKER_OPTS=" --a --bip=10.244.1.1/24 --c --ip-masq=false --mtu=1450 --z"\n',
  },
  {
    file: "v4",
    flags: ["-m"],
    env: { DOCKER_OPT_IPMASQ: "--env-masq", DOCKER_OPT_X: "", DOCKER_OPT_a: "--lower" },
    output:
      'DOCKER_OPT_BIP="--bip=10.244.1.1/24"\nDOCKER_OPT_IPMASQ="--env-masq"\nDOCKER_OPT_MTU="--mtu=1450"\nDOCKER_OPT_X=""\n' +
      'DOCKER_OPT_a="--lower"\nDOCKER_OPTS=" --bip=10.244.1.1/24 --env-masq --mtu=1450  --lower"\n',
  },
];

const ENV: Environment = { PATH: "/usr/bin:/bin", HOME: "/root" };

function captured() {
  const out = { stdout: "", stderr: "" };
  return { out, io: (netns?: Netns) => ({ stdout: (t: string) => void (out.stdout += t), stderr: (t: string) => void (out.stderr += t), netns }) };
}

const thrown = (fn: () => unknown): string => {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(CniError);
    return (err as Error).message;
  }
  throw new Error("expected an error");
};

describe("parseDockerOptsFlags", () => {
  it("has mk-docker-opts.sh's defaults: both forms, DOCKER_OPTS, --ip-masq, its two files", () => {
    expect(parseDockerOptsFlags([], ENV)).toEqual({
      subnetFile: DEFAULT_SUBNET_FILE,
      dockerEnvFile: DEFAULT_DOCKER_ENV_FILE,
      individual: true,
      combined: true,
      key: "DOCKER_OPTS",
      ipMasqOption: true,
      help: false,
    });
    expect([DEFAULT_SUBNET_FILE, DEFAULT_DOCKER_ENV_FILE]).toEqual(["/run/flannel/subnet.env", "/run/docker_opts.env"]);
  });

  it("reads each flag as getopts does: separate or attached values, grouped letters, the last one winning", () => {
    const flags = parseDockerOptsFlags(["-f", "/a", "-d/b", "-mc", "-k", "K1", "-kK2"], ENV);
    expect(flags).toMatchObject({ subnetFile: "/a", dockerEnvFile: "/b", ipMasqOption: false, individual: false, combined: true, key: "K2" });
    expect(parseDockerOptsFlags(["-i"], ENV)).toMatchObject({ individual: true, combined: false });
    expect(parseDockerOptsFlags(["-icf/x"], ENV)).toMatchObject({ individual: true, combined: true, subnetFile: "/x" });
    expect(parseDockerOptsFlags(["-h"], ENV).help).toBe(true);
    expect(parseDockerOptsFlags(["-?"], ENV).help).toBe(true);
    expect(parseDockerOptsFlags(["--help"], ENV).help).toBe(true);
    expect(parseDockerOptsFlags(["-c", "--"], ENV).combined).toBe(true);
  });

  it("takes flanneld's --subnet-file, and FLANNELD_SUBNET_FILE as the default", () => {
    expect(parseDockerOptsFlags(["--subnet-file", "/s1"], ENV).subnetFile).toBe("/s1");
    expect(parseDockerOptsFlags(["--subnet-file=/s2"], ENV).subnetFile).toBe("/s2");
    expect(parseDockerOptsFlags([], { FLANNELD_SUBNET_FILE: "/s3" }).subnetFile).toBe("/s3");
    expect(parseDockerOptsFlags(["-f", "/s4"], { FLANNELD_SUBNET_FILE: "/s3" }).subnetFile).toBe("/s4");
  });

  it("refuses what it cannot read, naming the flag", () => {
    expect(thrown(() => parseDockerOptsFlags(["-x"], ENV))).toMatch(/^unknown flag -x /);
    expect(thrown(() => parseDockerOptsFlags(["-ciz"], ENV))).toMatch(/^unknown flag -z /);
    expect(thrown(() => parseDockerOptsFlags(["--ip-masq"], ENV))).toMatch(/^unknown flag --ip-masq /);
    expect(thrown(() => parseDockerOptsFlags(["-k"], ENV))).toMatch(/^-k needs a value/);
    expect(thrown(() => parseDockerOptsFlags(["-c", "-d"], ENV))).toMatch(/^-d needs a value/);
    expect(thrown(() => parseDockerOptsFlags(["--subnet-file"], ENV))).toMatch(/^--subnet-file needs a value/);
    expect(thrown(() => parseDockerOptsFlags(["-f", ""], ENV))).toMatch(/^-f needs a file name/);
    expect(thrown(() => parseDockerOptsFlags(["-k", "DOCKER-OPTS"], ENV))).toMatch(
      /^-k "DOCKER-OPTS": the combined key must be a shell variable name/,
    );
    expect(thrown(() => parseDockerOptsFlags(["-k", "1X"], ENV))).toMatch(/^-k "1X"/);
    expect(thrown(() => parseDockerOptsFlags(["-c", "extra"], ENV))).toMatch(/^unexpected argument "extra"/);
    expect(thrown(() => parseDockerOptsFlags(["--", "-c"], ENV))).toMatch(/^unexpected argument "-c"/);
    expect(thrown(() => parseDockerOptsFlags(["-"], ENV))).toMatch(/^unexpected argument "-"/);
  });
});

describe("parseDockerSubnetEnv", () => {
  it("reads the three values Docker's options are made of", () => {
    expect(parseDockerSubnetEnv(FILES.v4, "/f", true)).toEqual({ subnet: "10.244.1.1/24", mtu: 1450, ipMasq: true });
    expect(parseDockerSubnetEnv(FILES.sample, "/f", true)).toEqual({ subnet: "10.1.74.1/24", mtu: 1472, ipMasq: false });
    expect(parseDockerSubnetEnv(FILES.handWritten, "/f", true)).toEqual({ subnet: "10.244.3.1/24", mtu: 1400, ipMasq: true });
  });

  it("ignores the IPv6 lines, and drops a \\r left by an editor (the script would write it into --mtu)", () => {
    expect(parseDockerSubnetEnv(FILES.dual, "/f", true)).toEqual({ subnet: "10.244.1.1/24", mtu: 1450, ipMasq: false });
    expect(parseDockerSubnetEnv(FILES.v4.replace(/\n/g, "\r\n"), "/f", true)).toEqual({ subnet: "10.244.1.1/24", mtu: 1450, ipMasq: true });
  });

  it("reads every file weft's agent writes (IPv4 and dual stack)", () => {
    const config = (c: unknown) => parseNetworkConfig(JSON.stringify(c), () => true, "/coreos.com/network/config");
    const v4 = config({ Network: "10.244.0.0/16", Backend: { Type: "vxlan" } });
    const dual = config({ Network: "10.244.0.0/16", EnableIPv6: true, IPv6Network: "fd00:10:244::/56", Backend: { Type: "vxlan" } });
    const ipv4 = parseCidr("10.244.9.0/24")!;
    const ipv6 = parseCidr("fd00:10:244:9::/64")!;
    expect(parseDockerSubnetEnv(formatSubnetEnv({ config: v4, subnets: { ipv4 }, mtu: 1450, ipMasq: true }), "/f", true)).toEqual({
      subnet: "10.244.9.1/24",
      mtu: 1450,
      ipMasq: true,
    });
    expect(parseDockerSubnetEnv(formatSubnetEnv({ config: dual, subnets: { ipv4, ipv6 }, mtu: 1400, ipMasq: false }), "/f", true)).toEqual({
      subnet: "10.244.9.1/24",
      mtu: 1400,
      ipMasq: false,
    });
  });

  it("refuses a line that is not KEY=VALUE, with its number", () => {
    expect(thrown(() => parseDockerSubnetEnv(`${FILES.v4}garbage here\n`, "/run/s.env", true))).toBe(
      '/run/s.env: line 5: "garbage here" is not KEY=VALUE: is it the subnet.env flanneld wrote on this node?',
    );
    expect(thrown(() => parseDockerSubnetEnv(`FLANNEL-MTU=1\n${FILES.v4}`, "/f", true))).toMatch(/^\/f: line 1: "FLANNEL-MTU=1" is not KEY=VALUE/);
    expect(thrown(() => parseDockerSubnetEnv("\u0000\u0001binary", "/f", true))).toMatch(/line 1: .* is not KEY=VALUE/);
  });

  it("refuses a malformed value of a key it uses, with its line", () => {
    const bad = (key: string, value: string) => thrown(() => parseDockerSubnetEnv(`${FILES.v4}${key}=${value}\n`, "/f", true));
    expect(bad("FLANNEL_SUBNET", "10.244.1.1")).toMatch(/^\/f: line 5: FLANNEL_SUBNET="10.244.1.1" is not an IPv4 address with a prefix length/);
    expect(bad("FLANNEL_SUBNET", "fd00::1/64")).toMatch(/FLANNEL_SUBNET="fd00::1\/64" is not an IPv4 address/);
    expect(bad("FLANNEL_SUBNET", "10.244.1.1/24,10.245.1.1/24")).toMatch(/FLANNEL_SUBNET=.* is not an IPv4 address/);
    expect(bad("FLANNEL_MTU", "14x0")).toMatch(/^\/f: line 5: FLANNEL_MTU="14x0" is not an MTU \(68 to 65535\)/);
    expect(bad("FLANNEL_MTU", "0")).toMatch(/FLANNEL_MTU="0" is not an MTU/);
    expect(bad("FLANNEL_MTU", "65536")).toMatch(/FLANNEL_MTU="65536" is not an MTU/);
    expect(bad("FLANNEL_MTU", "")).toMatch(/FLANNEL_MTU="" is not an MTU/);
    expect(bad("FLANNEL_IPMASQ", "yes")).toMatch(/^\/f: line 5: FLANNEL_IPMASQ="yes" is not true or false/);
    // unused keys are not checked
    expect(parseDockerSubnetEnv(`${FILES.v4}FLANNEL_IPV6_SUBNET=nonsense\nOTHER=1\n`, "/f", true).subnet).toBe("10.244.1.1/24");
  });

  it("names the keys that are missing; FLANNEL_IPMASQ is needed only without -m", () => {
    expect(thrown(() => parseDockerSubnetEnv("", "/f", true))).toBe(
      "/f: FLANNEL_SUBNET, FLANNEL_MTU, FLANNEL_IPMASQ are missing: is it the subnet.env flanneld wrote on this node?",
    );
    expect(thrown(() => parseDockerSubnetEnv("FLANNEL_SUBNET=10.1.1.1/24\nFLANNEL_IPMASQ=true\n", "/f", true))).toMatch(
      /^\/f: FLANNEL_MTU is missing:/,
    );
    expect(thrown(() => parseDockerSubnetEnv("FLANNEL_SUBNET=10.1.1.1/24\nFLANNEL_MTU=1500\n", "/f", true))).toMatch(
      /^\/f: FLANNEL_IPMASQ is missing:/,
    );
    expect(parseDockerSubnetEnv("FLANNEL_SUBNET=10.1.1.1/24\nFLANNEL_MTU=1500\n", "/f", false)).toEqual({ subnet: "10.1.1.1/24", mtu: 1500 });
    expect(thrown(() => parseDockerSubnetEnv("FLANNEL_SUBNET=10.1.1.1/24\nFLANNEL_MTU=1500\nFLANNEL_IPMASQ=1\n", "/f", false))).toMatch(
      /FLANNEL_IPMASQ="1"/,
    );
  });

  it("says why an IPv6-only lease has no --bip", () => {
    const v6 = "FLANNEL_IPV6_NETWORK=fd00:10:244::/56\nFLANNEL_IPV6_SUBNET=fd00:10:244:1::1/64\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n";
    expect(thrown(() => parseDockerSubnetEnv(v6, "/f", true))).toBe(
      "/f: FLANNEL_SUBNET is missing (this node's lease is IPv6 only, FLANNEL_IPV6_SUBNET=fd00:10:244:1::1/64: Docker's --bip takes an IPv4 subnet): is it the subnet.env flanneld wrote on this node?",
    );
  });
});

describe("dockerOptsText", () => {
  it.each(SCRIPT_CASES)("writes what mk-docker-opts.sh wrote: $file $flags $env", ({ file, flags, env, output }) => {
    const all = { ...ENV, ...env };
    const parsed = parseDockerOptsFlags(flags, all);
    expect(dockerOptsText(parseDockerSubnetEnv(FILES[file], "/f", parsed.ipMasqOption), parsed, all)).toBe(output);
  });

  it("refuses a value of the environment that its double quotes cannot hold, naming the variable", () => {
    const subnet = parseDockerSubnetEnv(FILES.v4, "/f", true);
    const cases: Array<[string, string]> = [
      ["DOCKER_OPTS", 'a"b'],
      ["DOCKER_OPT_X", "a\\b"],
      ["DOCKER_OPT_Y", "$HOME"],
      ["DOCKER_OPT_Z", "a\nb"],
      ["DOCKER_OPT_W", "`id`"],
    ];
    for (const [name, value] of cases) {
      const env = { [name]: value };
      expect(thrown(() => dockerOptsText(subnet, parseDockerOptsFlags([], env), env))).toMatch(new RegExp(`^${name} in the environment holds`));
    }
    // the combined key's value is not read without -c
    const env = { DOCKER_OPTS: 'a"b' };
    expect(dockerOptsText(subnet, parseDockerOptsFlags(["-i"], env), env)).toBe(V4_SEPARATE);
  });
});

describe("runDockerOpts", () => {
  let ns: TestNetns;
  let netns: Netns;
  let dir: string;
  beforeAll(() => {
    // The routing table it reads is a namespace of this test's own.
    ns = createNetns("weft-dopts-");
    netns = Netns.open(ns.path);
  });
  afterAll(() => {
    netns?.close();
    if (ns) removeNetns(ns);
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  async function run(argv: string[], env: Environment = ENV) {
    const { out, io } = captured();
    const code = await runDockerOpts(argv, env, io(netns));
    return { code, ...out };
  }
  const setup = (subnetEnv?: string) => {
    dir = mkdtempSync(join(tmpdir(), "weft-docker-opts-"));
    const subnetFile = join(dir, "subnet.env");
    if (subnetEnv !== undefined) writeFileSync(subnetFile, subnetEnv);
    return { subnetFile, dockerEnv: join(dir, "docker_opts.env") };
  };

  it.each(SCRIPT_CASES)("writes the -d file as mk-docker-opts.sh did: $file $flags $env", async ({ file, flags, env, output }) => {
    const { subnetFile, dockerEnv } = setup(FILES[file]);
    const result = await run(["-f", subnetFile, "-d", dockerEnv, ...flags], { ...ENV, ...env });
    expect(result).toEqual({ code: 0, stdout: "", stderr: "" });
    expect(readFileSync(dockerEnv, "utf8")).toBe(output);
    expect(statSync(dockerEnv).mode & 0o777).toBe(0o644);
  });

  it("replaces the file atomically, keeping its mode, and leaves no temporary file", async () => {
    const { subnetFile, dockerEnv } = setup(FILES.v4);
    writeFileSync(dockerEnv, "OLD=1\n".repeat(100));
    chmodSync(dockerEnv, 0o600);
    expect((await run(["-f", subnetFile, "-d", dockerEnv, "-c"])).code).toBe(0);
    expect(readFileSync(dockerEnv, "utf8")).toBe(`DOCKER_OPTS="${V4_COMBINED}"\n`);
    expect(statSync(dockerEnv).mode & 0o777).toBe(0o600);
    expect(readdirSync(dir).sort()).toEqual(["docker_opts.env", "subnet.env"]);
  });

  it("prints its usage for -h and writes nothing", async () => {
    const { dockerEnv } = setup();
    expect(await run(["-h", "-d", dockerEnv])).toEqual({ code: 0, stdout: DOCKER_OPTS_USAGE, stderr: "" });
    expect(readdirSync(dir)).toEqual([]);
  });

  it("fails with 1 and a message naming the flag", async () => {
    const { subnetFile, dockerEnv } = setup(FILES.v4);
    const result = await run(["-f", subnetFile, "-d", dockerEnv, "-x"]);
    expect(result).toEqual({ code: 1, stdout: "", stderr: "flanneld docker-opts: unknown flag -x (flanneld docker-opts -h for usage)\n" });
    expect(readdirSync(dir)).toEqual(["subnet.env"]);
  });

  it("fails on a missing subnet.env, where the script wrote an empty DOCKER_OPTS, and leaves the old file", async () => {
    const { subnetFile, dockerEnv } = setup();
    writeFileSync(dockerEnv, "KEPT=1\n");
    const result = await run(["-f", subnetFile, "-d", dockerEnv]);
    expect(result).toEqual({
      code: 1,
      stdout: "",
      stderr: `flanneld docker-opts: ${subnetFile} does not exist: flanneld has not written this node's subnet yet (is it running on this node?)\n`,
    });
    expect(readFileSync(dockerEnv, "utf8")).toBe("KEPT=1\n");
  });

  it("fails on a subnet.env it cannot read, or that is malformed, and leaves the old file", async () => {
    const { subnetFile, dockerEnv } = setup("FLANNEL_SUBNET=10.244.1.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=maybe\n");
    writeFileSync(dockerEnv, "KEPT=1\n");
    expect(await run(["-f", subnetFile, "-d", dockerEnv])).toEqual({
      code: 1,
      stdout: "",
      stderr: `flanneld docker-opts: ${subnetFile}: line 3: FLANNEL_IPMASQ="maybe" is not true or false: is it the subnet.env flanneld wrote on this node?\n`,
    });
    expect((await run(["-f", dir, "-d", dockerEnv])).stderr).toMatch(new RegExp(`^flanneld docker-opts: cannot read ${dir}: EISDIR`));
    expect(readFileSync(dockerEnv, "utf8")).toBe("KEPT=1\n");
  });

  it("fails when the -d file's directory does not exist", async () => {
    const { subnetFile } = setup(FILES.v4);
    const result = await run(["-f", subnetFile, "-d", join(dir, "no", "opts.env")]);
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(new RegExp(`^flanneld docker-opts: cannot write ${dir}/no/opts.env: ENOENT`));
  });

  it("refuses when a route via a gateway already takes this node's subnet (the script's last check), and accepts docker0's own route", async () => {
    const { subnetFile, dockerEnv } = setup(FILES.v4);
    ns.exec("ip", ["link", "add", "u0", "type", "veth", "peer", "name", "u1"]);
    try {
      ns.exec("ip", ["addr", "add", "192.168.77.1/24", "dev", "u0"]);
      ns.exec("ip", ["link", "set", "u0", "up"]);
      ns.exec("ip", ["link", "set", "u1", "up"]);
      ns.exec("ip", ["route", "add", "10.244.1.0/24", "dev", "u0"]);
      ns.exec("ip", ["route", "add", "10.244.0.0/16", "via", "192.168.77.2"]);
      expect((await run(["-f", subnetFile, "-d", dockerEnv])).code).toBe(0);

      ns.exec("ip", ["route", "del", "10.244.1.0/24", "dev", "u0"]);
      ns.exec("ip", ["route", "add", "10.244.1.0/24", "via", "192.168.77.2"]);
      writeFileSync(dockerEnv, "KEPT=1\n");
      expect(await run(["-f", subnetFile, "-d", dockerEnv])).toEqual({
        code: 1,
        stdout: "",
        stderr:
          "flanneld docker-opts: the routing table already routes this node's subnet 10.244.1.0/24 via 192.168.77.2: " +
          `Docker's bridge (--bip=10.244.1.1/24) would clash with it; ${dockerEnv} is left as it was\n`,
      });
      expect(readFileSync(dockerEnv, "utf8")).toBe("KEPT=1\n");
    } finally {
      ns.exec("ip", ["link", "del", "u0"]);
    }
  });
});
