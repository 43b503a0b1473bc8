import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";

/**
 * What a test needs of the machine beyond the kernel: root, and what scripts/setup installs. A test
 * whose prerequisite is missing is skipped with the reason in its title, except under `make check`
 * (scripts/check sets WEFT_REQUIRE_PREREQUISITES=1, as CI does after scripts/setup): there the file
 * fails, since a skip would hide a setup that installed less than the tests need.
 */
export interface Prerequisite {
  /** Whether the tests that need it are skipped. */
  readonly skip: boolean;
  /** The test's title, with why it is skipped when it is. */
  title(text: string): string;
}

export function prerequisite(what: string, present: boolean): Prerequisite {
  if (!present && process.env.WEFT_REQUIRE_PREREQUISITES === "1") {
    throw new Error(`missing prerequisite: ${what} (run scripts/setup as root)`);
  }
  return { skip: !present, title: (text) => (present ? text : `${text} (skipped: no ${what})`) };
}

export const isRoot = process.getuid?.() === 0;
export const haveCommand = (name: string) => spawnSync("sh", ["-c", `command -v ${name}`], { stdio: "ignore" }).status === 0;

/** Debian's containernetworking-plugins, the Go reference. */
export const referencePlugins = (...names: string[]) =>
  prerequisite(
    `reference plugins ${names.join(", ")} in /usr/lib/cni (containernetworking-plugins)`,
    names.every((n) => existsSync(`/usr/lib/cni/${n}`)),
  );
export const rootUser = () => prerequisite("root", isRoot);
export const command = (name: string, pkg = name) => prerequisite(`${name} (Debian package ${pkg})`, haveCommand(name));

/** Several prerequisites at once. */
export function all(...needed: Prerequisite[]): Prerequisite {
  return { skip: needed.some((p) => p.skip), title: (text) => needed.reduce((t, p) => p.title(t), text) };
}
