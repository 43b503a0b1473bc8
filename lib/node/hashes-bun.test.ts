import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { prerequisite } from "../../test/helpers/prerequisites.js";

const ROOT = join(import.meta.dirname, "../..");
const BUN = join(ROOT, ".bun/bun-linux-x64/bin/bun");
const needs = prerequisite("Bun in .bun/ (scripts/project-bun)", existsSync(BUN));

describe("lib/node/hashes-bun.ts, the Bun form's hashes", () => {
  it.skipIf(needs.skip)(needs.title("gives the digests of lib/node/hashes.ts, run by Bun itself"), () => {
    const script = `
      import * as noble from ${JSON.stringify(join(ROOT, "lib/node/hashes.ts"))};
      import * as native from ${JSON.stringify(join(ROOT, "lib/node/hashes-bun.ts"))};
      const texts = ["", "cbr0", "10.244.0.0/16", "dummy-ünïcødé", "x".repeat(4096), ...Array.from({ length: 100 }, (_, i) => "c" + i + "-" + Math.random())];
      const differ = texts.filter((t) => noble.sha256Hex(t) !== native.sha256Hex(t) || noble.sha512Hex(t) !== native.sha512Hex(t));
      console.log(JSON.stringify({ compared: texts.length, differ, sample: native.sha256Hex("cbr0") }));
    `;
    const run = spawnSync(BUN, ["-e", script], { cwd: ROOT, encoding: "utf8", env: { PATH: "/usr/bin:/bin" } });
    expect(run.status, run.stderr).toBe(0);
    const answer = JSON.parse(run.stdout) as { compared: number; differ: string[]; sample: string };
    // sha256sum of "cbr0", for a digest known apart from both modules.
    expect(answer).toEqual({ compared: 105, differ: [], sample: "54f8385aba3bee962d49fabf8fcf2ea7d5f19456b7a0012119b1314d85f304ce" });
  });
});
