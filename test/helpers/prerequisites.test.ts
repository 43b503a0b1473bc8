import { afterEach, describe, expect, it } from "vitest";
import { all, prerequisite } from "./prerequisites.js";

describe("a test's prerequisites", () => {
  const saved = process.env.WEFT_REQUIRE_PREREQUISITES;
  afterEach(() => {
    if (saved === undefined) delete process.env.WEFT_REQUIRE_PREREQUISITES;
    else process.env.WEFT_REQUIRE_PREREQUISITES = saved;
  });

  it("a missing one skips, saying why in the title", () => {
    delete process.env.WEFT_REQUIRE_PREREQUISITES;
    const p = prerequisite("frobnicator (Debian package frob)", false);
    expect(p.skip).toBe(true);
    expect(p.title("runs the frobnicator")).toBe("runs the frobnicator (skipped: no frobnicator (Debian package frob))");
  });

  it("a present one runs, its title unchanged", () => {
    const p = all(prerequisite("a", true), prerequisite("b", true));
    expect(p.skip).toBe(false);
    expect(p.title("t")).toBe("t");
  });

  it("under make check a missing one fails instead of skipping", () => {
    process.env.WEFT_REQUIRE_PREREQUISITES = "1";
    expect(() => prerequisite("frobnicator", false)).toThrow("missing prerequisite: frobnicator (run scripts/setup as root)");
    expect(prerequisite("frobnicator", true).skip).toBe(false);
  });

  it("several: skipped when any is missing, each missing one named", () => {
    delete process.env.WEFT_REQUIRE_PREREQUISITES;
    const p = all(prerequisite("a", true), prerequisite("b", false), prerequisite("c", false));
    expect(p.skip).toBe(true);
    expect(p.title("t")).toBe("t (skipped: no b) (skipped: no c)");
  });
});
