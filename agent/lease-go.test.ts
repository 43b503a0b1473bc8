import { execFileSync, spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { command } from "../test/helpers/prerequisites.js";
import { formatLeaseValue, parseLeaseValue, parseVxlanBackendData, vxlanBackendData, type LeaseAttrs } from "./lease.js";

// Go's encoding/json is the judge of the lease values: test/flanneld-lease decodes a value into a
// struct of flanneld's LeaseAttrs shape and prints what Go writes for it.
const go = command("go", "golang-go");

let work: string;
let judge: string;

beforeAll(() => {
  if (go.skip) return;
  work = mkdtempSync(join(tmpdir(), "weft-flanneld-lease-"));
  judge = join(work, "flanneld-lease");
  execFileSync("go", ["build", "-o", judge, join(process.cwd(), "test/flanneld-lease/main.go")], {
    env: { ...process.env, GO111MODULE: "off", GOCACHE: join(work, "gocache"), GOFLAGS: "" },
    stdio: "pipe",
  });
}, 120_000);

afterAll(() => {
  if (work) rmSync(work, { recursive: true, force: true });
});

function goMarshal(args: string[], input = ""): string {
  const out = spawnSync(judge, args, { input, encoding: "utf8", timeout: 10_000 });
  if (out.status !== 0) throw new Error(`flanneld-lease ${args.join(" ")}: ${out.stderr}`);
  return out.stdout;
}

const VALUES: Record<string, LeaseAttrs> = {
  vxlan: {
    publicIP: "192.168.64.3",
    publicIPv6: null,
    backendType: "vxlan",
    backendData: vxlanBackendData({ vni: 1, vtepMAC: "c6:d2:32:6f:8f:44" }),
  },
  "vxlan dual stack": {
    publicIP: "10.0.0.2",
    publicIPv6: "fd00::2",
    backendType: "vxlan",
    backendData: vxlanBackendData({ vni: 4096, vtepMAC: "aa:bb:cc:dd:ee:01" }),
    backendV6Data: vxlanBackendData({ vni: 4096, vtepMAC: "aa:bb:cc:dd:ee:02" }),
  },
  "host-gw": { publicIP: "10.0.0.2", publicIPv6: null, backendType: "host-gw" },
  "host-gw IPv6 only": { publicIP: "0.0.0.0", publicIPv6: "fd00:10::2", backendType: "host-gw" },
  udp: { publicIP: "10.0.0.2", publicIPv6: null },
};

// Values as other writers may leave them: Go reads keys ignoring case and addresses in any form.
const FOREIGN = [
  '{"publicip":"192.168.64.3","BACKENDTYPE":"vxlan","BackendData":{"VNI":1,"VtepMAC":"c6:d2:32:6f:8f:44"}}',
  '{"PublicIP":"10.0.0.2","PublicIPv6":"FD00:0:0::2","BackendType":"host-gw","BackendData":null}',
  '{"PublicIP":"10.0.0.2","PublicIPv6":null,"BackendType":"","Extra":true}',
];

describe.skipIf(go.skip)(go.title("lease values are byte for byte what Go's encoding/json writes"), () => {
  for (const [name, attrs] of Object.entries(VALUES)) {
    it(name, () => {
      const ours = formatLeaseValue(attrs);
      expect(goMarshal(["value"], ours)).toBe(ours);
    });
  }

  for (const value of FOREIGN) {
    it(`read and written again as Go does: ${value}`, () => {
      expect(formatLeaseValue(parseLeaseValue(value, "k"))).toBe(goMarshal(["value"], value));
    });
  }

  it("vxlan BackendData as flanneld's vxlanLeaseAttrs", () => {
    for (const [vni, mac] of [
      [1, "c6:d2:32:6f:8f:44"],
      [65535, "C6-D2-32-6F-8F-45"],
    ] as const) {
      const ours = JSON.stringify(vxlanBackendData(parseVxlanBackendData({ VNI: vni, VtepMAC: mac }, "k")));
      expect(ours).toBe(goMarshal(["vxlan", String(vni), mac]));
    }
  });
});
