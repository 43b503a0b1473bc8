/**
 * Error codes of the CNI spec (SPEC.md "Error"), the Go library's 8 and 999, and weft's own from 100
 * (the spec leaves 100 and up to plugins). The Go plugins print every failure that is not the
 * protocol's as 999; weft keeps 999 for what it did not expect (a bug) and names the expected ones.
 */
export const ErrorCode = {
  Unknown: 0,
  IncompatibleVersion: 1,
  UnsupportedField: 2,
  UnknownContainer: 3,
  InvalidEnvironment: 4,
  IOFailure: 5,
  DecodingFailure: 6,
  InvalidNetworkConfig: 7,
  InvalidNetns: 8,
  TryAgainLater: 11,
  NotAvailable: 50,
  LimitedConnectivity: 51,
  NotImplemented: 100,
  /** CHECK found the attachment other than ADD left it (an address, a link, a rule). */
  CheckFailed: 101,
  /** IPAM has no address to give: the ranges are full, or the requested one is taken or outside them. */
  NoAddress: 102,
  /** The kernel refused a request (the operation and its errno are in the message). */
  KernelRefused: 103,
  /** The node holds something the config conflicts with: the bridge's address, an interface name, an address in use. */
  NodeConflict: 104,
  Internal: 999,
} as const;

export type ErrorCodeValue = (typeof ErrorCode)[keyof typeof ErrorCode] | number;

/** The one error type of weft: everything that fails becomes one of these on stdout. */
export class CniError extends Error {
  constructor(
    readonly code: ErrorCodeValue,
    msg: string,
    readonly details?: string,
  ) {
    super(msg);
    this.name = "CniError";
  }

  /** The same error with context in front of the message ("failed to set bridge addr: ..."). */
  withContext(context: string): CniError {
    return new CniError(this.code, `${context}: ${this.message}`, this.details);
  }
}

/**
 * Turns anything thrown into a CniError, adding context. A refusal from the system is an expected
 * failure with its own code: a CNI_NETNS that is no network namespace 4, a file or process
 * operation 5, an xtables lock that stayed busy 11, the kernel 103. Anything else is a bug: 999.
 * The errors are told apart by name, so that the protocol core does not load the kernel's modules.
 */
export function asCniError(err: unknown, context?: string): CniError {
  let result: CniError;
  if (err instanceof CniError) result = err;
  else if (err instanceof Error) result = systemRefusal(err) ?? new CniError(ErrorCode.Internal, err.message);
  else result = new CniError(ErrorCode.Internal, String(err));
  return context ? result.withContext(context) : result;
}

function systemRefusal(err: Error): CniError | undefined {
  if (err.name === "NetnsPathError") return new CniError(ErrorCode.InvalidEnvironment, err.message, "CNI_NETNS does not name a network namespace");
  if (err.name === "KernelError") return new CniError(ErrorCode.KernelRefused, err.message);
  // iptables gave up waiting for the xtables lock: the runtime should retry rather than give up.
  if (err.name === "NetfilterBusyError") return new CniError(ErrorCode.TryAgainLater, err.message, "the xtables lock stayed busy; retry");
  const { syscall, errno } = err as NodeJS.ErrnoException;
  if (typeof syscall === "string" && typeof errno === "number") return new CniError(ErrorCode.IOFailure, err.message);
  return undefined;
}

/** One error for several failures of one verb (GC's parts): the first one's code, every message. */
export function combinedError(context: string, errors: readonly unknown[]): CniError {
  const all = errors.map((err) => asCniError(err));
  return new CniError(all[0]?.code ?? ErrorCode.Internal, `${context}: ${all.map((e) => e.message).join("; ")}`);
}
