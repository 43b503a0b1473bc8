import { errnoName } from "./errno.js";

/**
 * A refusal from the kernel, with its errno name ("EEXIST", "ENODEV", ...) so callers can act on
 * it, and the operation that was refused ("add address 10.1.0.2/24 to eth0").
 */
export class KernelError extends Error {
  constructor(
    readonly code: string,
    readonly errno: number,
    readonly operation: string,
  ) {
    super(`${operation}: ${describeErrno(code)}`);
    this.name = "KernelError";
  }
}

const DESCRIPTIONS: Record<string, string> = {
  EEXIST: "file exists",
  ENOENT: "no such file or directory",
  ENODEV: "no such device",
  EINVAL: "invalid argument",
  EPERM: "operation not permitted",
  EOPNOTSUPP: "operation not supported",
  ENOTSUP: "operation not supported",
  EADDRNOTAVAIL: "cannot assign requested address",
  ENETUNREACH: "network is unreachable",
  EBUSY: "device or resource busy",
  ERANGE: "numerical result out of range",
};

function describeErrno(code: string): string {
  const text = DESCRIPTIONS[code];
  return text ? `${code} (${text})` : code;
}

/** errno (positive) -> KernelError for the operation. */
export function kernelError(errno: number, operation: string): KernelError {
  const positive = Math.abs(errno);
  return new KernelError(errnoName(positive), positive, operation);
}

/** True when err is a kernel refusal with one of the codes. */
export function isKernelError(err: unknown, ...codes: string[]): err is KernelError {
  return err instanceof KernelError && (codes.length === 0 || codes.includes(err.code));
}

/** "Not there" in the kernel's words for links (ENODEV), addresses (EADDRNOTAVAIL) and routes (ESRCH, ENOENT). */
export function isNotFound(err: unknown): boolean {
  return isKernelError(err, "ENODEV", "ENOENT", "ESRCH", "EADDRNOTAVAIL");
}
