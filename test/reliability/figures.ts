import { appendFileSync } from "node:fs";

/**
 * The figures docs/reliability.md quotes (cases run, crash points, parallel pods, hostile ids,
 * leaks, crashes), one JSON line per test, appended to $WEFT_RELIABILITY_FIGURES when it is set.
 */
export function record(scenario: string, figures: Record<string, unknown>): void {
  const file = process.env.WEFT_RELIABILITY_FIGURES;
  if (file) appendFileSync(file, `${JSON.stringify({ scenario, ...figures })}\n`);
}
