import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { all, command, prerequisite } from "../../test/helpers/prerequisites.js";
import { formatResult, parseResult } from "./result.js";

// The CNI project's Go library, as Debian packages it, is the judge of how results print.
const GOPATH = "/usr/share/gocode";
const libcniPresent = all(
  prerequisite(
    "libcni sources in /usr/share/gocode (golang-github-appc-cni-dev)",
    existsSync(join(GOPATH, "src/github.com/containernetworking/cni/pkg/types/100")),
  ),
  command("go", "golang-go"),
);

let work: string;
let convert: string;

beforeAll(() => {
  if (libcniPresent.skip) return;
  work = mkdtempSync(join(tmpdir(), "weft-libcni-"));
  convert = join(work, "convert");
  execFileSync("go", ["build", "-o", convert, join(process.cwd(), "test/libcni-convert/main.go")], {
    env: { ...process.env, GO111MODULE: "off", GOPATH, GOCACHE: join(work, "gocache"), GOFLAGS: "" },
    stdio: "pipe",
  });
}, 120_000);

afterAll(() => {
  if (work) rmSync(work, { recursive: true, force: true });
});

function libcni(from: string, to: string, result: object): { status: number | null; stdout: string } {
  const out = spawnSync(convert, [from, to], { input: JSON.stringify(result), encoding: "utf8" });
  return { status: out.status, stdout: out.stdout };
}

const SAMPLES: Record<string, object> = {
  "dual-stack pod": {
    cniVersion: "1.0.0",
    interfaces: [
      { name: "cni0", mac: "6e:38:00:00:00:01" },
      { name: "veth1", mac: "9e:7c:00:00:00:02" },
      { name: "eth0", mac: "f6:e7:00:00:00:03", sandbox: "/run/netns/a" },
    ],
    ips: [
      { interface: 2, address: "10.244.1.2/24", gateway: "10.244.1.1" },
      { interface: 2, address: "fd00:10:244:1::2/64", gateway: "fd00:10:244:1::1" },
    ],
    routes: [{ dst: "10.244.0.0/16" }, { dst: "fd00:10:244::/56" }, { dst: "0.0.0.0/0", gw: "10.244.1.1" }, { dst: "::/0", gw: "fd00:10:244:1::1" }],
    dns: { nameservers: ["10.96.0.10"], domain: "cluster.local", search: ["svc.cluster.local"], options: ["ndots:5"] },
  },
  "IPv6 only, addresses written loosely": {
    cniVersion: "1.0.0",
    ips: [{ address: "FD00:0:0::0a/64" }, { address: "fd00::b/64", gateway: "fd00::1" }],
    routes: [{ dst: "::/0", gw: "FD00::1" }],
  },
  "IPAM result (no interfaces)": {
    cniVersion: "1.0.0",
    ips: [{ address: "10.22.0.5/16", gateway: "10.22.0.1" }, { address: "10.22.0.6/16" }],
    routes: [{ dst: "0.0.0.0/0" }],
    dns: { nameservers: ["8.8.8.8"] },
  },
  "no addresses (L2 only)": { cniVersion: "1.0.0", interfaces: [{ name: "eth0", sandbox: "/x" }] },
  "special characters in dns": { cniVersion: "1.0.0", ips: [{ address: "10.0.0.2/8" }], dns: { domain: "a<b>&c" } },
};

describe.skipIf(libcniPresent.skip)(libcniPresent.title("results print as libcni prints them"), () => {
  for (const [name, sample] of Object.entries(SAMPLES)) {
    for (const version of ["0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0"]) {
      it(`${name} as ${version}: byte for byte`, () => {
        const go = libcni("1.0.0", version, sample);
        let ours: string | undefined;
        let oursFailed = false;
        try {
          ours = formatResult(parseResult(sample), version);
        } catch {
          oursFailed = true;
        }
        // Both refuse a result without addresses for 0.x (no valid IP addresses), or both print the same bytes.
        expect(oursFailed).toBe(go.status !== 0);
        if (!oursFailed) expect(ours).toBe(go.stdout);
      });
    }

    it(`${name} as 1.0.0: the same JSON (Debian's libcni 1.1.2 prints struct order; current libcni sorts keys, as weft does)`, () => {
      const go = libcni("1.0.0", "1.0.0", sample);
      const goJson = JSON.parse(go.stdout);
      if (goJson.dns && Object.keys(goJson.dns).length === 0) delete goJson.dns;
      expect(JSON.parse(formatResult(parseResult(sample), "1.0.0"))).toEqual(goJson);
    });
  }

  it.each(["0.2.0", "0.3.1", "0.4.0"])("a %s result up-converts to 1.0.0 as libcni does", (from) => {
    const old = libcni("1.0.0", from, SAMPLES["dual-stack pod"]!);
    const go = JSON.parse(libcni(from, "1.0.0", JSON.parse(old.stdout)).stdout);
    if (go.dns && Object.keys(go.dns).length === 0) delete go.dns;
    expect(JSON.parse(formatResult(parseResult(JSON.parse(old.stdout)), "1.0.0"))).toEqual(go);
  });
});
