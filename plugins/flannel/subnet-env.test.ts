import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { parseSubnetEnv, readSubnetEnv } from "./subnet-env.js";

const PATH = "/run/flannel/subnet.env";

/** What flanneld writes (subnet/config.go WriteSubnetFile): KEY=VALUE lines, the subnet with its gateway address. */
const FLANNELD_V4 = "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.1.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n";
const FLANNELD_DUAL =
  "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.1.1/24\nFLANNEL_IPV6_NETWORK=fd00:10:244::/56\n" +
  "FLANNEL_IPV6_SUBNET=fd00:10:244:1::1/64\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n";

describe("parseSubnetEnv", () => {
  it("reads flanneld's IPv4 file, subnets in their network form", () => {
    expect(parseSubnetEnv(FLANNELD_V4, PATH)).toEqual({
      networks: ["10.244.0.0/16"],
      subnets: ["10.244.1.0/24"],
      ipv6Networks: [],
      ipv6Subnets: [],
      mtu: 1450,
      ipMasq: true,
    });
  });

  it("reads a dual-stack file", () => {
    expect(parseSubnetEnv(FLANNELD_DUAL, PATH)).toEqual({
      networks: ["10.244.0.0/16"],
      subnets: ["10.244.1.0/24"],
      ipv6Networks: ["fd00:10:244::/56"],
      ipv6Subnets: ["fd00:10:244:1::/64"],
      mtu: 1450,
      ipMasq: true,
    });
  });

  it("reads an IPv6-only file", () => {
    const env = parseSubnetEnv(
      "FLANNEL_IPV6_NETWORK=fd00::/48\nFLANNEL_IPV6_SUBNET=fd00:0:0:7::1/64\nFLANNEL_MTU=1280\nFLANNEL_IPMASQ=false\n",
      PATH,
    );
    expect(env).toMatchObject({ networks: [], subnets: [], ipv6Networks: ["fd00::/48"], ipv6Subnets: ["fd00:0:0:7::/64"], mtu: 1280, ipMasq: false });
  });

  it("reads comma lists, masked and deduplicated in file order (multi-network, e541b70)", () => {
    const env = parseSubnetEnv(
      "FLANNEL_NETWORK=10.244.0.0/16,10.245.0.1/16,10.244.0.0/16\nFLANNEL_SUBNET=10.244.1.1/24,10.245.1.1/24\n" +
        "FLANNEL_IPV6_NETWORK=fd00:10:244::/56,fd00:10:245::/56\nFLANNEL_IPV6_SUBNET=2001:cafe:42::1/64,2001:cafd:42::1/64\n" +
        "FLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n",
      PATH,
    );
    expect(env.networks).toEqual(["10.244.0.0/16", "10.245.0.0/16"]);
    expect(env.subnets).toEqual(["10.244.1.0/24", "10.245.1.0/24"]);
    expect(env.ipv6Networks).toEqual(["fd00:10:244::/56", "fd00:10:245::/56"]);
    expect(env.ipv6Subnets).toEqual(["2001:cafe:42::/64", "2001:cafd:42::/64"]);
  });

  it("splits at the first '=', ignores unknown keys and blank lines, lets a later line win, drops a trailing CR, needs no final newline", () => {
    const env = parseSubnetEnv(
      "# written by hand\r\nFLANNEL_NETWORK=10.1.0.0/16\r\n\r\nOTHER=a=b\r\nFLANNEL_SUBNET=10.1.2.1/24\r\nFLANNEL_MTU=1400\r\nFLANNEL_MTU=1450\r\nFLANNEL_IPMASQ=false",
      PATH,
    );
    expect(env).toEqual({ networks: ["10.1.0.0/16"], subnets: ["10.1.2.0/24"], ipv6Networks: [], ipv6Subnets: [], mtu: 1450, ipMasq: false });
  });

  it("takes any MTU Go's strconv.ParseUint(v, 10, 32) takes: the largest 32-bit value, leading zeros", () => {
    const env = (mtu: string) =>
      parseSubnetEnv(`FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.1.1/24\nFLANNEL_MTU=${mtu}\nFLANNEL_IPMASQ=true\n`, PATH);
    expect(env("4294967295").mtu).toBe(4294967295);
    expect(env("01450").mtu).toBe(1450);
  });

  it.each([
    ["", "FLANNEL_NETWORK, FLANNEL_IPV6_NETWORK, FLANNEL_SUBNET, FLANNEL_IPV6_SUBNET, FLANNEL_MTU, FLANNEL_IPMASQ"],
    ["FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.1.1/24\n", "FLANNEL_MTU, FLANNEL_IPMASQ"],
    ["FLANNEL_SUBNET=10.244.1.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n", "FLANNEL_NETWORK, FLANNEL_IPV6_NETWORK"],
    ["FLANNEL_IPV6_NETWORK=fd00::/48\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n", "FLANNEL_SUBNET, FLANNEL_IPV6_SUBNET"],
  ])("names what is missing, in the Go plugin's words: %j", (text, missing) => {
    expect(() => parseSubnetEnv(text, PATH)).toThrow(
      expect.objectContaining({
        code: 7,
        message: `failed to load flannel 'subnet.env' file: ${PATH} is missing ${missing}. Check the flannel pod log for this node.`,
      }),
    );
  });

  it.each([
    ["FLANNEL_MTU=abc", 'line 3: FLANNEL_MTU="abc" is not an unsigned integer'],
    ["FLANNEL_MTU=-1", 'line 3: FLANNEL_MTU="-1" is not an unsigned integer'],
    ["FLANNEL_MTU=4294967296", 'line 3: FLANNEL_MTU="4294967296" is not an unsigned integer'],
    ['FLANNEL_MTU="1450"', 'line 3: FLANNEL_MTU="\\"1450\\"" is not an unsigned integer'],
    ["FLANNEL_MTU", 'line 3: FLANNEL_MTU="" is not an unsigned integer'],
    ["FLANNEL_MTU= 1450", 'line 3: FLANNEL_MTU=" 1450" is not an unsigned integer'],
    ["FLANNEL_MTU=1450 ", 'line 3: FLANNEL_MTU="1450 " is not an unsigned integer'],
    ["FLANNEL_IPMASQ=yes", 'line 3: FLANNEL_IPMASQ="yes" is neither true nor false'],
    ["FLANNEL_NETWORK=10.244.0.0", 'line 3: FLANNEL_NETWORK="10.244.0.0": "10.244.0.0" is not a CIDR'],
    ["FLANNEL_NETWORK=10.244.0.0/16,", 'line 3: FLANNEL_NETWORK="10.244.0.0/16,": "" is not a CIDR'],
    ["FLANNEL_NETWORK=", 'line 3: FLANNEL_NETWORK="": "" is not a CIDR'],
    ["FLANNEL_SUBNET=10.244.1.1/33", 'line 3: FLANNEL_SUBNET="10.244.1.1/33": "10.244.1.1/33" is not a CIDR'],
    ["FLANNEL_SUBNET=fd00::1/64", 'line 3: FLANNEL_SUBNET="fd00::1/64": "fd00::1/64" is not an IPv4 CIDR'],
    ["FLANNEL_IPV6_SUBNET=10.1.1.1/24", 'line 3: FLANNEL_IPV6_SUBNET="10.1.1.1/24": "10.1.1.1/24" is not an IPv6 CIDR'],
  ])("quotes a malformed value back with its line: %s", (line, problem) => {
    const text = `FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.1.1/24\n${line}\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n`;
    expect(() => parseSubnetEnv(text, PATH)).toThrow(
      expect.objectContaining({
        code: 7,
        message: `failed to load flannel 'subnet.env' file: ${PATH} ${problem}. Check the flannel pod log for this node.`,
      }),
    );
  });
});

describe("readSubnetEnv", () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), "weft-subnet-env-"));
  });
  afterEach(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  it("reads the file", () => {
    writeFileSync(join(dir, "subnet.env"), FLANNELD_DUAL);
    expect(readSubnetEnv(join(dir, "subnet.env")).ipv6Subnets).toEqual(["fd00:10:244:1::/64"]);
  });

  it("a missing file is code 11 (try again): flanneld is not running or not ready", () => {
    const path = join(dir, "subnet.env");
    expect(() => readSubnetEnv(path)).toThrow(
      expect.objectContaining({
        code: 11,
        message: `failed to load flannel 'subnet.env' file: ${path} does not exist: flanneld is not running or not ready on this node. Check the flannel pod log for this node.`,
      }),
    );
  });

  it("an unreadable path is an I/O failure naming it", () => {
    expect(() => readSubnetEnv(dir)).toThrow(expect.objectContaining({ code: 5, message: expect.stringContaining(`cannot read ${dir}: EISDIR`) }));
  });
});
