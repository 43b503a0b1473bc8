import { getSystemErrorName } from "node:util";
import { describe, expect, it } from "vitest";
import { errnoName } from "./errno.js";

describe("errnoName", () => {
  it("names every errno Node.js names, as Node.js does", () => {
    let named = 0;
    // Linux errnos end at 133; libuv numbers its own (EAI_*, 3000 on) apart.
    for (let errno = 1; errno < 134; errno++) {
      const node = getSystemErrorName(-errno);
      if (node.startsWith("Unknown system error")) continue;
      named++;
      expect(errnoName(errno), `errno ${errno}`).toBe(node);
    }
    expect(named).toBeGreaterThan(60);
  });

  it("names Linux errnos libuv leaves unnamed, and says the number of one Linux does not define", () => {
    expect(errnoName(77)).toBe("EBADFD");
    expect(errnoName(132)).toBe("ERFKILL");
    expect(errnoName(41)).toBe("errno 41");
    expect(errnoName(4000)).toBe("errno 4000");
  });
});
