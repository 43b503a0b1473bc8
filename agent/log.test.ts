import { describe, expect, it } from "vitest";
import { formatLogLine, stderrLogger } from "./log.js";

describe("klog line format", () => {
  it("writes severity, MMDD hh:mm:ss.uuuuuu in UTC, the pid right-aligned in 7, flanneld] and the message", () => {
    const at = new Date(Date.UTC(2026, 0, 5, 3, 4, 5, 67));
    expect(formatLogLine("I", "acquired lease", at, 42)).toBe("I0105 03:04:05.067000      42 flanneld] acquired lease\n");
    expect(formatLogLine("W", "x", new Date(Date.UTC(2026, 11, 31, 23, 59, 59, 999)), 1234567)).toBe("W1231 23:59:59.999000 1234567 flanneld] x\n");
    expect(formatLogLine("E", "", new Date(Date.UTC(2026, 9, 10, 10, 10, 10, 0)), 7)).toBe("E1010 10:10:10.000000       7 flanneld] \n");
  });

  it("logs one line per call with this process's pid and the severity of the call", () => {
    const lines: string[] = [];
    const log = stderrLogger((line) => lines.push(line));
    const before = Date.now();
    log.info("one");
    log.warn("two");
    log.error("three");
    const pid = String(process.pid).padStart(7);
    expect(lines).toHaveLength(3);
    expect(lines.map((l) => [l[0], l.slice(l.indexOf(" flanneld]") - 7)])).toEqual([
      ["I", `${pid} flanneld] one\n`],
      ["W", `${pid} flanneld] two\n`],
      ["E", `${pid} flanneld] three\n`],
    ]);
    const line = lines[0]!;
    expect(line).toMatch(/^I\d{4} \d\d:\d\d:\d\d\.\d{3}000 /);
    const stamped = Date.UTC(
      new Date(before).getUTCFullYear(),
      Number(line.slice(1, 3)) - 1,
      Number(line.slice(3, 5)),
      Number(line.slice(6, 8)),
      Number(line.slice(9, 11)),
      Number(line.slice(12, 14)),
      Number(line.slice(15, 18)),
    );
    expect(Math.abs(stamped - before)).toBeLessThan(5000);
  });
});
