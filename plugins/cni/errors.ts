/** Error codes of the CNI spec (SPEC.md "Error"), plus the Go library's 8 and 999. */
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

/** Turns anything thrown into a CniError, adding context; a plain Error becomes code 999 as in Go's skel. */
export function asCniError(err: unknown, context?: string): CniError {
  let result: CniError;
  if (err instanceof CniError) result = err;
  else if (err instanceof Error) result = new CniError(ErrorCode.Internal, err.message);
  else result = new CniError(ErrorCode.Internal, String(err));
  return context ? result.withContext(context) : result;
}
