import { getSystemErrorName } from "node:util";
import { describe, expect, it } from "vitest";
import { isKernelError, kernelError } from "./kernel.js";

describe("kernelError", () => {
  it("names every errno as Node.js does, from its own table or util's", () => {
    for (let errno = 1; errno <= 133; errno++) {
      let expected: string;
      try {
        expected = getSystemErrorName(-errno);
      } catch {
        expected = `errno ${errno}`;
      }
      const err = kernelError(errno, "an operation");
      expect(err.code, `errno ${errno}`).toBe(expected);
      expect(err.errno).toBe(errno);
    }
  });

  it("takes the errno with either sign and keeps the operation in the message", () => {
    const err = kernelError(-17, "add link eth0");
    expect(isKernelError(err, "EEXIST")).toBe(true);
    expect(err.message).toBe("add link eth0: EEXIST (file exists)");
  });
});
