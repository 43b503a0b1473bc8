import { closeSync, openSync, readSync } from "node:fs";
import { dirname, isAbsolute, join, normalize, resolve } from "node:path";
import { fileURLToPath } from "node:url";

/**
 * Which weft executables the integration, reliability and scale tests run: by default the script
 * form the build writes into <repo>/bin; any installed set instead, chosen by the environment (as
 * `make check-installed` runs the suite against the standalone executables scripts/install installs):
 *
 *   WEFT_BIN       the directory of the CNI plugins (absolute; default <repo>/bin). conformance/run
 *                  takes the same variable.
 *   WEFT_FLANNELD  the node agent (absolute; default $WEFT_BIN/flanneld)
 *
 * Tests execute these files themselves, as a runtime or a service manager does, never through
 * `node <file>`: a standalone executable is no script. A script-form file starts with
 * `#!/usr/bin/env node`, so the PATH a test gives it has the test's own Node.js first
 * (pathWithTestNode). Tests about the script form itself (its banners, its loader's cache, copies of
 * bin/) use SCRIPT_BIN, which the build always writes.
 */

export const ROOT = resolve(fileURLToPath(new URL("../..", import.meta.url)));

/** The script form as `node scripts/build.mjs` writes it. */
export const SCRIPT_BIN = join(ROOT, "bin");

function absoluteFromEnv(name: string, fallback: string): string {
  const value = process.env[name];
  if (!value) return fallback;
  if (!isAbsolute(value)) throw new Error(`${name}=${value}: give an absolute path (tests and conformance/run run in different directories)`);
  return normalize(value).replace(/(.)\/+$/, "$1");
}

/** The CNI plugins under test: $WEFT_BIN, default SCRIPT_BIN. */
export const WEFT_BIN = absoluteFromEnv("WEFT_BIN", SCRIPT_BIN);

/** The node agent under test: $WEFT_FLANNELD, default $WEFT_BIN/flanneld. */
export const WEFT_FLANNELD = absoluteFromEnv("WEFT_FLANNELD", join(WEFT_BIN, "flanneld"));

/** The path of a CNI program (`flannel`, `bridge`, ...) of the set under test. */
export function weftProgram(name: string): string {
  return join(WEFT_BIN, name);
}

/** The path of a program of the script form (bin/), for the tests about that form alone. */
export function scriptProgram(name: string): string {
  return join(SCRIPT_BIN, name);
}

export type WeftForm = "script" | "standalone";

/** A script starts with "#!"; a standalone executable (Node.js's single executable, Bun's) is ELF. */
function formOf(dir: string): WeftForm {
  const head = Buffer.alloc(2);
  let fd: number | undefined;
  try {
    fd = openSync(join(dir, "loopback"), "r");
    readSync(fd, head, 0, 2, 0);
    return head.toString("latin1") === "#!" ? "script" : "standalone";
  } catch {
    return dir === SCRIPT_BIN ? "script" : "standalone";
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

/**
 * The form under test: "script" (bin/ or an installed copy of it) or "standalone" (a single
 * executable under every program's name), for the few tests whose expectations differ by form.
 */
export const WEFT_FORM: WeftForm = formOf(WEFT_BIN);

export type WeftRuntime = "node" | "bun";

/**
 * WEFT_STANDALONE_RUNTIME: the runtime of a standalone set, `node` (default) or `bun`. The runtime
 * the distribution tests build their standalone executable on (scripts/standalone.mjs reads it too),
 * and that of WEFT_BIN when it is a standalone set (`make check-installed RUNTIME=bun` sets both).
 */
export const STANDALONE_RUNTIME: WeftRuntime = process.env.WEFT_STANDALONE_RUNTIME === "bun" ? "bun" : "node";

/**
 * The runtime the executables under test run on: the script form runs on Node.js, a standalone set
 * on STANDALONE_RUNTIME. Only the cache's expectations differ: the Bun form carries its bytecode and
 * has no loader.
 */
export const WEFT_RUNTIME: WeftRuntime = WEFT_FORM === "standalone" ? STANDALONE_RUNTIME : "node";

/** The directory of the Node.js running the tests. */
export const TEST_NODE_DIR = dirname(process.execPath);

/**
 * `path` with the test's own Node.js first: what `#!/usr/bin/env node` of a script-form executable
 * finds, instead of whatever Node.js the system has (Debian 12's 18 cannot run weft). Harmless for
 * a standalone executable, which needs none.
 */
export function pathWithTestNode(path = process.env.PATH ?? "/usr/sbin:/usr/bin:/sbin:/bin"): string {
  return `${TEST_NODE_DIR}:${path}`;
}
