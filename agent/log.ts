/** klog's line format, as flanneld logs: severity letter, MMDD hh:mm:ss.uuuuuu, pid, then the message. */
export type Severity = "I" | "W" | "E";

export interface Logger {
  info(message: string): void;
  warn(message: string): void;
  error(message: string): void;
}

function stamp(now: Date): string {
  const pad = (n: number, w = 2) => String(n).padStart(w, "0");
  return (
    `${pad(now.getUTCMonth() + 1)}${pad(now.getUTCDate())} ` +
    `${pad(now.getUTCHours())}:${pad(now.getUTCMinutes())}:${pad(now.getUTCSeconds())}.${pad(now.getUTCMilliseconds() * 1000, 6)}`
  );
}

export function formatLogLine(severity: Severity, message: string, now: Date, pid: number): string {
  return `${severity}${stamp(now)} ${String(pid).padStart(7)} flanneld] ${message}\n`;
}

export function stderrLogger(write: (line: string) => void = (line) => process.stderr.write(line)): Logger {
  const log = (severity: Severity) => (message: string) => write(formatLogLine(severity, message, new Date(), process.pid));
  return { info: log("I"), warn: log("W"), error: log("E") };
}
