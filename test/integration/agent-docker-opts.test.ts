import { spawnSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { pathWithTestNode, WEFT_FLANNELD } from "../helpers/executables.js";
import { netnsPool } from "../helpers/netns.js";
import { all, command, rootUser } from "../helpers/prerequisites.js";

// `flanneld docker-opts` as a node's Docker unit runs it (mk-docker-opts.sh's place): the executable,
// a clean environment, files on disk, the routing table of the namespace it runs in.

const FLANNELD = WEFT_FLANNELD;
const SUBNET_ENV = "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.1.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n";
// What mk-docker-opts.sh writes for SUBNET_ENV by default.
const DOCKER_ENV =
  'DOCKER_OPT_BIP="--bip=10.244.1.1/24"\nDOCKER_OPT_IPMASQ="--ip-masq=false"\nDOCKER_OPT_MTU="--mtu=1450"\n' +
  'DOCKER_OPTS=" --bip=10.244.1.1/24 --ip-masq=false --mtu=1450"\n';
const ENV = { PATH: pathWithTestNode("/usr/local/bin:/usr/bin:/bin") };

const needed = all(rootUser(), command("unshare", "util-linux"), command("ip", "iproute2"));

describe.skipIf(needed.skip)(needed.title("flanneld docker-opts"), () => {
  const pool = netnsPool();
  let dir = "";
  afterEach(() => {
    pool.cleanup();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const run = (args: string[], env: Record<string, string> = ENV) => {
    const out = spawnSync(FLANNELD, ["docker-opts", ...args], { env, encoding: "utf8", timeout: 20_000 });
    return { status: out.status, stdout: out.stdout, stderr: out.stderr };
  };

  it("writes the -d file from the -f file, both forms by default, and -c alone with -k", () => {
    dir = mkdtempSync(join(tmpdir(), "weft-docker-opts-"));
    writeFileSync(join(dir, "subnet.env"), SUBNET_ENV);
    const out = join(dir, "docker.env");
    expect(run(["-f", join(dir, "subnet.env"), "-d", out])).toEqual({ status: 0, stdout: "", stderr: "" });
    expect(readFileSync(out, "utf8")).toBe(DOCKER_ENV);

    expect(run(["--subnet-file", join(dir, "subnet.env"), "-d", out, "-c", "-k", "DOCKER_NETWORK_OPTIONS"]).status).toBe(0);
    expect(readFileSync(out, "utf8")).toBe('DOCKER_NETWORK_OPTIONS=" --bip=10.244.1.1/24 --ip-masq=false --mtu=1450"\n');
    expect(readdirSync(dir).sort()).toEqual(["docker.env", "subnet.env"]);
  });

  it("reads /run/flannel/subnet.env and writes /run/docker_opts.env by default (a /run of its own)", () => {
    const ns = pool.create("weft-dopts-");
    // ip netns exec gives the command a mount namespace of its own; unshare makes another, so the tmpfs
    // on /run is seen by nothing else.
    const script =
      `mount -t tmpfs weft-test /run && mkdir /run/flannel && printf '${SUBNET_ENV.replace(/\n/g, "\\n")}' > /run/flannel/subnet.env && ` +
      `"$0" docker-opts && cat /run/docker_opts.env`;
    const out = spawnSync("ip", ["netns", "exec", ns.name, "unshare", "--mount", "--propagation", "private", "sh", "-c", script, FLANNELD], {
      env: ENV,
      encoding: "utf8",
      timeout: 20_000,
    });
    expect(out.stderr).toBe("");
    expect(out.status).toBe(0);
    expect(out.stdout).toBe(DOCKER_ENV);
  });

  it("fails with 1 on a missing subnet.env, an unknown flag and a route via a gateway to the subnet, and prints its usage for -h", () => {
    dir = mkdtempSync(join(tmpdir(), "weft-docker-opts-"));
    const missing = run(["-f", join(dir, "subnet.env"), "-d", join(dir, "docker.env")]);
    expect(missing.status).toBe(1);
    expect(missing.stderr).toBe(
      `flanneld docker-opts: ${join(dir, "subnet.env")} does not exist: flanneld has not written this node's subnet yet (is it running on this node?)\n`,
    );
    expect(run(["-q"])).toEqual({ status: 1, stdout: "", stderr: "flanneld docker-opts: unknown flag -q (flanneld docker-opts -h for usage)\n" });
    const help = run(["-h"]);
    expect(help.status).toBe(0);
    expect(help.stdout).toMatch(
      /^Usage: flanneld docker-opts \[-f FLANNEL-ENV-FILE\] \[-d DOCKER-ENV-FILE\] \[-i\] \[-c\] \[-m\] \[-k COMBINED-KEY\]\n/,
    );

    writeFileSync(join(dir, "subnet.env"), SUBNET_ENV);
    const ns = pool.create("weft-dopts-");
    ns.exec("ip", ["link", "add", "u0", "type", "veth", "peer", "name", "u1"]);
    ns.exec("ip", ["addr", "add", "192.168.77.1/24", "dev", "u0"]);
    ns.exec("ip", ["link", "set", "u0", "up"]);
    ns.exec("ip", ["link", "set", "u1", "up"]);
    ns.exec("ip", ["route", "add", "10.244.1.0/24", "via", "192.168.77.2"]);
    const out = spawnSync("ip", ["netns", "exec", ns.name, FLANNELD, "docker-opts", "-f", join(dir, "subnet.env"), "-d", join(dir, "docker.env")], {
      env: ENV,
      encoding: "utf8",
      timeout: 20_000,
    });
    expect(out.status).toBe(1);
    expect(out.stderr).toMatch(/^flanneld docker-opts: the routing table already routes this node's subnet 10\.244\.1\.0\/24 via 192\.168\.77\.2:/);
    expect(readdirSync(dir)).toEqual(["subnet.env"]);
  });
});
