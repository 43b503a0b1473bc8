import { execFile } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { CNI_TYPES, PROGRAMS } from "../../plugins/registry.js";

export const ROOT = process.cwd();

/** The CNI plugins: the `programs` file, what the installer puts into the CNI bin dir. */
export const TYPES = CNI_TYPES;
/** The node agent: the `agents` file, installed only into an --agent-dir. */
export const AGENTS: readonly string[] = PROGRAMS.filter((p) => p.kind === "agent").map((p) => p.type);
export const run = promisify(execFile);

/** A temp dir of this test file's own, removed by the returned function. */
export function tempDir(prefix: string): { dir: string; remove: () => void } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  return { dir, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

/** Builds the standalone executable and its five names into `out` (about 4 s: bundle, blob, postject). */
export async function buildStandalone(out: string, ...flags: string[]): Promise<void> {
  await run(process.execPath, [join(ROOT, "scripts/standalone.mjs"), "--out", out, ...flags], { cwd: ROOT, maxBuffer: 16 << 20 });
}

/** VERSION through `path` in a kubelet-like clean environment: the parsed answer, or the failure. */
export async function version(path: string, env: Record<string, string> = {}): Promise<{ ok: boolean; out: string }> {
  try {
    const running = run(path, [], { env: { PATH: "/usr/bin:/bin", CNI_COMMAND: "VERSION", ...env } });
    running.child.stdin?.end('{"cniVersion":"1.0.0"}');
    const { stdout } = await running;
    return { ok: Array.isArray(JSON.parse(stdout).supportedVersions), out: stdout };
  } catch (err) {
    return { ok: false, out: String((err as { stdout?: string }).stdout ?? err) };
  }
}
