import { MAINS } from "weft-programs:mains";
import { isSingleExecutable } from "../lib/executable/single-executable.js";
import { PROGRAM_TYPES } from "../plugins/registry.js";
import { chooseProgram } from "./multicall.js";

/**
 * weft's multi-call entry: one executable serving every program of plugins/registry.ts. Each
 * program's main module runs it when evaluated, and only the chosen one is evaluated (MAINS, made by
 * scripts/standalone.mjs from the registry, imports each lazily), so start-up pays for one program.
 */
const choice = chooseProgram({ sea: isSingleExecutable(), argv: process.argv, argv0: process.argv0, execPath: process.execPath });
const main = choice && MAINS[choice.type];
if (choice && main) {
  // The program reads its arguments from process.argv when its main module is evaluated.
  process.argv.splice(0, process.argv.length, ...choice.argv);
  main().catch((err: unknown) => {
    process.stderr.write(`weft: failed to load ${choice.type}: ${(err as Error)?.stack ?? String(err)}\n`);
    process.exit(1);
  });
} else {
  process.stderr.write(
    `weft: invoked as ${JSON.stringify(process.argv0)}: install this executable under one of the names of weft's programs (${PROGRAM_TYPES.join(", ")}), or run "weft <name> [arguments]"\n`,
  );
  process.exitCode = 1;
}
