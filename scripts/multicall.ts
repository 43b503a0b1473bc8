import { basename } from "node:path";
import { isProgramType, type ProgramType } from "../plugins/registry.js";

export interface Invocation {
  /** The node:sea form: the executable is the program, there is no script path. */
  sea: boolean;
  argv: readonly string[];
  /** The argv[0] the caller passed (process.argv0): a symlink's name survives here. */
  argv0: string;
  execPath: string;
}

/**
 * The plugin to run, from the name the executable was invoked by, as busybox does: the script's
 * path (node <dir>/bridge) or, for the standalone executable, argv[0] and then /proc/self/exe (a
 * hard link's own name). `weft <type>` names it explicitly, for running by hand.
 */
export function chooseType(inv: Invocation): ProgramType | undefined {
  const names = inv.sea ? [inv.argv0, inv.execPath] : [inv.argv[1] ?? ""];
  for (const name of names) {
    const base = basename(name);
    if (isProgramType(base)) return base;
  }
  // node:sea keeps argv[1] for argv[0] as given, so the first argument is argv[2] in both forms.
  const explicit = inv.argv[2];
  return explicit !== undefined && isProgramType(explicit) ? explicit : undefined;
}
