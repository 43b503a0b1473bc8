import { basename } from "node:path";
import { isProgramType, type ProgramType } from "../plugins/registry.js";

export interface Invocation {
  /** A single executable (Node.js SEA or Bun-compiled): the executable is the program, there is no script path. */
  sea: boolean;
  argv: readonly string[];
  /** The argv[0] the caller passed (process.argv0): a symlink's name survives here. */
  argv0: string;
  execPath: string;
}

export interface Choice {
  type: ProgramType;
  /**
   * The argv the program is to see: its own arguments from argv[2], as when it is invoked by its
   * name (`weft flanneld --ip-masq` gives flanneld `--ip-masq`, not `flanneld --ip-masq`).
   */
  argv: string[];
}

/**
 * The program to run, from the name the executable was invoked by, as busybox does: the script's
 * path (node <dir>/bridge) or, for the standalone executable, argv[0] and then /proc/self/exe (a
 * hard link's own name). `weft <program> [arguments]` names it explicitly, for running by hand.
 */
export function chooseProgram(inv: Invocation): Choice | undefined {
  const names = inv.sea ? [inv.argv0, inv.execPath] : [inv.argv[1] ?? ""];
  for (const name of names) {
    const base = basename(name);
    if (isProgramType(base)) return { type: base, argv: [...inv.argv] };
  }
  // A single executable keeps argv[1] for argv[0] as given (node:sea) or for its embedded script (Bun),
  // so the first argument is argv[2] in every form.
  const explicit = inv.argv[2];
  if (explicit === undefined || !isProgramType(explicit)) return undefined;
  return { type: explicit, argv: [...inv.argv.slice(0, 2), ...inv.argv.slice(3)] };
}
