import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { CniEnv } from "./env.js";
import { delegateFor, delegateSpeaks110, type DelegatingRequest } from "./invoke.js";

let dir: string;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "weft-delegate-request-"));
});

afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

function fakePlugin(name: string, body: string): void {
  writeFileSync(join(dir, name), `#!/bin/sh\n${body}\n`, { mode: 0o755 });
}

function request(environment: NodeJS.ProcessEnv): DelegatingRequest {
  const env: CniEnv = {
    command: "ADD",
    containerId: "c1",
    netns: "/run/netns/p",
    ifName: "eth0",
    args: "IgnoreUnknown=1",
    path: [dir],
    netnsOverride: false,
  };
  return { env, environment };
}

describe("delegateFor", () => {
  it("runs the delegate with the request's environment, not the process's, and its CNI_ variables", async () => {
    fakePlugin("fake-ipam", `env > "${dir}/env"; echo '{"cniVersion":"1.0.0","ips":[{"address":"10.22.0.5/16"}]}'`);
    const result = await delegateFor(request({ PATH: process.env.PATH, WEFT_INJECTED: "yes" }), "fake-ipam", "ADD", "{}");
    expect(result?.ips).toEqual([{ address: "10.22.0.5/16" }]);
    const env = readFileSync(join(dir, "env"), "utf8").split("\n");
    expect(env).toEqual(
      expect.arrayContaining([
        "WEFT_INJECTED=yes",
        "CNI_COMMAND=ADD",
        "CNI_CONTAINERID=c1",
        "CNI_NETNS=/run/netns/p",
        "CNI_IFNAME=eth0",
        "CNI_ARGS=IgnoreUnknown=1",
        `CNI_PATH=${dir}`,
      ]),
    );
    expect(env.filter((line) => line.startsWith("HOME="))).toEqual([]);
  });

  it("takes WEFT_DELEGATE_TIMEOUT_MS from the request's environment", async () => {
    fakePlugin("hanging", "exec sleep 600");
    await expect(delegateFor(request({ PATH: process.env.PATH, WEFT_DELEGATE_TIMEOUT_MS: "200" }), "hanging", "DEL", "{}")).rejects.toMatchObject({
      code: 11,
      message: expect.stringContaining("did not finish DEL within 200 ms"),
    });
  });
});

describe("delegateSpeaks110", () => {
  it.each([
    ['{"cniVersion":"1.1.0","supportedVersions":["1.0.0","1.1.0"]}', true],
    ['{"cniVersion":"1.0.0","supportedVersions":["0.4.0","1.0.0"]}', false],
    ["not json", false],
  ])("VERSION answering %s: %s", async (answer, speaks) => {
    fakePlugin("ipam", `[ "$CNI_COMMAND" = VERSION ] || exit 3; echo '${answer}'`);
    expect(await delegateSpeaks110(request({ PATH: process.env.PATH }), "ipam")).toBe(speaks);
  });
});
