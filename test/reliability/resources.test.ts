import { execFileSync } from "node:child_process";
import { chmodSync, existsSync, mkdirSync, readdirSync, symlinkSync, writeFileSync } from "node:fs";
import { basename, join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { record } from "./figures.js";
import { BIN, createNode, flannelConf, invoke, invokeAsync, kernelLeftovers, SUBNET_ENV, type Node, type Outcome } from "./sandbox.js";

/**
 * Resource failures: a read-only or full data directory (small tmpfs mounted under the
 * test's temporary directory), a CNI_PATH without the delegate, a delegate that hangs, and the
 * pod's namespace deleted while ADD runs. Each ends in a clear error or a clean success, and with
 * nothing half-made once the runtime's DEL has run.
 */

let node: Node;
let scenarios = 0;
beforeAll(() => {
  node = createNode("res");
  writeFileSync(join(node.work, "subnet.env"), SUBNET_ENV);
});
afterAll(() => node?.remove());

const conf = (extra: Record<string, unknown> = {}, ipamDir = join(node.work, "networks")) =>
  flannelConf(node, { ipam: { dataDir: ipamDir }, ...extra });

const call = (verb: string, id: string, pod: string | undefined, config: unknown, extra: Record<string, unknown> = {}): Outcome =>
  invoke(node, { type: "flannel", verb, containerId: id, netns: pod ? `/run/netns/${pod}` : "", config, ...extra });

/** A tmpfs of `size` under the work directory (node.remove() unmounts it). */
function tmpfs(name: string, options: string): string {
  const dir = join(node.work, name);
  mkdirSync(dir);
  execFileSync("mount", ["-t", "tmpfs", "-o", options, `weft-test-${name}`, dir]);
  return dir;
}

function files(dir: string): string[] {
  if (!existsSync(dir)) return [];
  const out: string[] = [];
  for (const name of readdirSync(dir, { recursive: true }) as string[]) {
    if (!/(^|\/)(lock|last_reserved_ip\.\d+|cbr0|filler\d*)$/.test(name)) out.push(name);
  }
  return out;
}

function expectNothingHalfMade(...dirs: string[]): void {
  expect(kernelLeftovers(node)).toEqual([]);
  for (const dir of [join(node.work, "flannel"), join(node.work, "networks"), ...dirs]) expect(files(dir), dir).toEqual([]);
}

function expectError(o: Outcome, code: number | number[], text: string): void {
  expect(o.status, o.stdout).toBe(1);
  expect([code].flat()).toContain(o.json?.code);
  expect(o.json?.msg).toContain(text);
  expect(o.stdout).not.toMatch(/\n\s+at /);
}

describe("data directories that cannot be written", () => {
  it("flannel's dataDir read-only: code 5 naming it, nothing made", () => {
    const ro = tmpfs("ro-flannel", "size=64k,mode=0755");
    execFileSync("mount", ["-o", "remount,ro", ro]);
    const pod = node.addPod();
    const o = call("ADD", "ro1", pod, conf({ dataDir: ro }));
    expectError(o, 5, ro);
    expect(o.json.msg).toMatch(/read-only/i);
    expectNothingHalfMade();
    expect(call("DEL", "ro1", pod, conf({ dataDir: ro })).status).toBe(0);
    expectNothingHalfMade();
    scenarios++;
  });

  it("host-local's dataDir read-only: ADD fails naming it with code 5, and undoes the veth and the saved config itself", () => {
    const ro = tmpfs("ro-ipam", "size=64k,mode=0755");
    mkdirSync(join(ro, "cbr0"));
    execFileSync("mount", ["-o", "remount,ro", ro]);
    const pod = node.addPod();
    const o = call("ADD", "ro2", pod, conf({}, ro));
    expectError(o, 5, ro);
    // The failed ADD undid itself, before any DEL.
    expectNothingHalfMade(ro);
    expect(call("DEL", "ro2", pod, conf({}, ro)).status).toBe(0);
    expectNothingHalfMade(ro);
    scenarios++;
  });

  it.each([
    ["no space", "size=8k,mode=0755"],
    ["no inodes", "size=1m,nr_inodes=6,mode=0755"],
  ])("host-local's dataDir full (%s): ADD fails with code 5 and undoes what it made, and works once space is freed", (_, options) => {
    const full = tmpfs(`full-${options.length}`, options);
    mkdirSync(join(full, "cbr0"));
    writeFileSync(join(full, "cbr0", "lock"), "");
    // Fill it: one big file, or as many empty files as the inodes allow.
    for (let i = 0; ; i++) {
      try {
        writeFileSync(join(full, `filler${i}`), Buffer.alloc(options.startsWith("size=8k") ? 64 << 10 : 0));
      } catch {
        break;
      }
      if (i > 100) break;
    }
    const pod = node.addPod();
    const o = call("ADD", "full1", pod, conf({}, full));
    expectError(o, 5, full);
    expect(o.json.msg).toMatch(/ENOSPC|no space/i);
    // The failed ADD undid itself, before any DEL.
    expectNothingHalfMade(full);
    expect(call("DEL", "full1", pod, conf({}, full)).status).toBe(0);
    expectNothingHalfMade(full);
    for (const f of readdirSync(full)) if (f.startsWith("filler")) execFileSync("rm", ["-f", join(full, f)]);
    expect(call("ADD", "full2", pod, conf({}, full)).status).toBe(0);
    expect(call("DEL", "full2", pod, conf({}, full)).status).toBe(0);
    expectNothingHalfMade(full);
    scenarios++;
  });
});

describe("delegates", () => {
  it("a CNI_PATH without the delegate: code 4 naming the plugin and the path, nothing made", () => {
    const onlyFlannel = join(node.work, "only-flannel");
    mkdirSync(onlyFlannel);
    symlinkSync(join(BIN, "flannel"), join(onlyFlannel, "flannel"));
    const pod = node.addPod();
    for (const cniPath of [onlyFlannel, `${onlyFlannel}:/nonexistent`]) {
      const o = call("ADD", "nopath", pod, conf(), { cniPath });
      expectError(o, 4, 'failed to find plugin "bridge"');
      expect(o.json.msg).toContain(onlyFlannel);
      expect(call("DEL", "nopath", pod, conf(), { cniPath }).status).toBe(0);
    }
    expectNothingHalfMade();
    scenarios++;
  });

  it("an IPAM delegate that hangs is killed after WEFT_DELEGATE_TIMEOUT_MS: code 11, the veth undone, no process left", () => {
    const dir = join(node.work, "hanging");
    mkdirSync(dir);
    symlinkSync(join(BIN, "bridge"), join(dir, "bridge"));
    symlinkSync(join(BIN, "flannel"), join(dir, "flannel"));
    // The hanging delegate's process carries a name of this test's own, so that only it is looked for.
    const hangName = `weft-test-hang-${basename(node.work)}`;
    writeFileSync(join(dir, "host-local"), `#!/bin/bash\nexec -a ${hangName} sleep 600\n`);
    chmodSync(join(dir, "host-local"), 0o755);
    const pod = node.addPod();
    // A plugin that waited for the delegate instead of killing it is stopped by invoke's 60 s
    // timeout, and fails here.
    const o = call("ADD", "hang", pod, conf(), { cniPath: dir, env: { WEFT_DELEGATE_TIMEOUT_MS: "1500" } });
    expectError(o, 11, "did not finish ADD within 1500 ms and was killed");
    expect(
      execFileSync("ps", ["-eo", "args"], { encoding: "utf8" })
        .split("\n")
        .filter((args) => args.startsWith(hangName)),
    ).toEqual([]);
    expectNothingHalfMade();
    scenarios++;
  }, 90_000);

  it("the pod's namespace deleted while ADD runs: a clean result or a clear error, and DEL leaves nothing", async () => {
    const dir = join(node.work, "slow-ipam");
    mkdirSync(dir);
    symlinkSync(join(BIN, "bridge"), join(dir, "bridge"));
    symlinkSync(join(BIN, "flannel"), join(dir, "flannel"));
    const pod = node.addPod();
    const marker = join(node.work, "ipam-started");
    // IPAM (run while bridge makes the veth) waits until the test has deleted the namespace.
    writeFileSync(
      join(dir, "host-local"),
      `#!/bin/sh\ntouch ${marker}\nn=0\nwhile [ -e /run/netns/${pod} ] && [ $n -lt 200 ]; do sleep 0.05; n=$((n+1)); done\nexec ${join(BIN, "host-local")}\n`,
    );
    chmodSync(join(dir, "host-local"), 0o755);
    const running = invokeAsync(node, {
      type: "flannel",
      verb: "ADD",
      containerId: "gone",
      netns: `/run/netns/${pod}`,
      config: conf(),
      cniPath: dir,
    });
    for (let i = 0; i < 200 && !existsSync(marker); i++) await new Promise((r) => setTimeout(r, 25));
    expect(existsSync(marker)).toBe(true);
    execFileSync("ip", ["netns", "delete", pod]);
    node.pods.splice(node.pods.indexOf(pod), 1);
    const o = await running;
    if (o.status !== 0) {
      expect(o.status).toBe(1);
      expect(typeof o.json?.code).toBe("number");
      expect(o.stdout).not.toMatch(/\n\s+at /);
    }
    const del = call("DEL", "gone", pod, conf(), { cniPath: dir });
    expect(del.status, del.stdout).toBe(0);
    expectNothingHalfMade();
    scenarios++;
  }, 30_000);
});

describe("figures", () => {
  it("records the resource scenarios", () => {
    record("resources", { scenarios });
    expect(scenarios).toBe(7);
  });
});
