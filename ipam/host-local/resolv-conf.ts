import { readFileSync } from "node:fs";
import { CniError, ErrorCode } from "../../lib/errors/cni.js";
import type { DNS } from "../../lib/cni/result.js";

/**
 * resolv.conf as the reference reads it (host-local dns.go): nameserver lines add one server each,
 * search and options lines add all their words, the last domain line wins; comments (# or ;),
 * blank lines and lines with a keyword alone are skipped.
 */
export function parseResolvConf(text: string): DNS {
  const dns: DNS = {};
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#") || line.startsWith(";")) continue;
    const [keyword, ...words] = line.split(/\s+/);
    if (words.length === 0) continue;
    switch (keyword) {
      case "nameserver":
        (dns.nameservers ??= []).push(words[0]!);
        break;
      case "domain":
        dns.domain = words[0]!;
        break;
      case "search":
        (dns.search ??= []).push(...words);
        break;
      case "options":
        (dns.options ??= []).push(...words);
        break;
    }
  }
  return dns;
}

export function readResolvConf(path: string): DNS {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (err) {
    throw new CniError(ErrorCode.InvalidNetworkConfig, `invalid network config: ipam.resolvConf ${path} cannot be read: ${(err as Error).message}`);
  }
  return parseResolvConf(text);
}
