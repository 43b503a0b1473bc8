import { errnoName } from "./errno.js";
import { describe, expect, it } from "vitest";
import { isKernelError, kernelError } from "./kernel.js";

describe("kernelError", () => {
  it("names every errno from lib/errors/errno.ts and keeps its number", () => {
    for (let errno = 1; errno <= 133; errno++) {
      const err = kernelError(errno, "an operation");
      expect(err.code, `errno ${errno}`).toBe(errnoName(errno));
      expect(err.errno).toBe(errno);
    }
    expect(kernelError(19, "x").code).toBe("ENODEV");
  });

  it("takes the errno with either sign and keeps the operation in the message", () => {
    const err = kernelError(-17, "add link eth0");
    expect(isKernelError(err, "EEXIST")).toBe(true);
    expect(err.message).toBe("add link eth0: EEXIST (file exists)");
  });
});
