import { execFileSync } from "node:child_process";
import { randomInt } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createNetns, removeNetns, type TestNetns, uniqueName } from "./netns.js";
import { startInNetns, type NetnsProcess } from "./netns-process.js";
import { waitUntil } from "./wait.js";

/**
 * One etcd member in a namespace of its own, reached from the test process over a veth pair on a
 * random 169.254.x.y/30 (the test process stays in the host namespace; etcd's address is the
 * namespace end). With `tls`, a second listener on :2378 requires client certificates from a CA
 * made for the member (ca.pem, server.*, client.* in `dir`).
 */
export interface EtcdMember {
  ns: TestNetns;
  /** The member's data, its log (etcd.log) and, with tls, the certificates. */
  dir: string;
  process: NetnsProcess;
  endpoint: string;
  /** https://…:2378, with `tls` only. */
  tlsEndpoint: string;
  /** etcdctl (API v3) against `endpoint`, run in the member's namespace; its stdout. */
  etcdctl(...args: string[]): string;
  /** Stops etcd and removes the namespace, the veth pair and `dir`. */
  stop(): Promise<void>;
}

export async function startEtcdMember(options: { tls?: boolean; etcdArgs?: string[] } = {}): Promise<EtcdMember> {
  const ns = createNetns("weft-etcd-");
  const dir = mkdtempSync(join(tmpdir(), "weft-etcd-"));
  const hostLink = uniqueName("we", 15);
  let etcd: NetnsProcess | undefined;
  const stop = async () => {
    // A test may have stopped it (SIGSTOP) to make it unreachable.
    etcd?.signal("SIGCONT");
    await etcd?.stop(5000);
    // The host end of the veth pair goes with the namespace's end.
    removeNetns(ns);
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    const block = randomInt(1, 16_000) * 4;
    const address = (n: number) => `169.254.${Math.floor((block + n) / 256)}.${(block + n) % 256}`;
    execFileSync("ip", ["link", "add", hostLink, "type", "veth", "peer", "name", "eth0", "netns", ns.name]);
    execFileSync("ip", ["address", "add", `${address(1)}/30`, "dev", hostLink]);
    execFileSync("ip", ["link", "set", hostLink, "up"]);
    ns.exec("ip", ["address", "add", `${address(2)}/30`, "dev", "eth0"]);
    ns.exec("ip", ["link", "set", "eth0", "up"]);
    const endpoint = `http://${address(2)}:2379`;
    const tlsEndpoint = options.tls ? `https://${address(2)}:2378` : "";
    const urls = options.tls ? `${endpoint},${tlsEndpoint}` : endpoint;
    const tlsArgs: string[] = [];
    if (options.tls) {
      makeCertificates(dir, address(2));
      tlsArgs.push(...["--cert-file", join(dir, "server.pem"), "--key-file", join(dir, "server.key")]);
      tlsArgs.push(...["--client-cert-auth", "--trusted-ca-file", join(dir, "ca.pem")]);
    }
    etcd = startInNetns({
      netns: ns.name,
      name: "etcd member m1",
      logPath: join(dir, "etcd.log"),
      argv: [
        ...["etcd", "--name", "m1", "--data-dir", join(dir, "data")],
        ...["--listen-client-urls", urls, "--advertise-client-urls", urls],
        ...tlsArgs,
        ...["--listen-peer-urls", "http://127.0.0.1:2380", "--initial-advertise-peer-urls", "http://127.0.0.1:2380"],
        ...["--initial-cluster", "m1=http://127.0.0.1:2380"],
        ...(options.etcdArgs ?? []),
      ],
    });
    const etcdctl = (...args: string[]) =>
      ns.exec("etcdctl", ["--endpoints", endpoint, ...args], { env: { ...process.env, ETCDCTL_API: "3" }, timeout: 10_000 });
    await waitUntil("etcd to answer", 30_000, () => (etcdctl("endpoint", "health"), true), 50);
    return { ns, dir, process: etcd, endpoint, tlsEndpoint, etcdctl, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}

/** A CA, a server certificate for `address` and a client certificate, as PEM files in `dir`. */
function makeCertificates(dir: string, address: string): void {
  const openssl = (...args: string[]) => execFileSync("openssl", args, { cwd: dir, stdio: "pipe" });
  const newKey = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
  openssl("req", "-x509", ...newKey, "-days", "1", "-subj", "/CN=test CA", "-keyout", "ca.key", "-out", "ca.pem");
  for (const [name, extra] of [
    ["server", `subjectAltName=IP:${address}`],
    ["client", "extendedKeyUsage=clientAuth"],
  ] as const) {
    openssl("req", ...newKey, "-subj", `/CN=${name}`, "-keyout", `${name}.key`, "-out", `${name}.csr`);
    writeFileSync(join(dir, `${name}.ext`), `${extra}\n`);
    openssl(
      "x509",
      "-req",
      "-in",
      `${name}.csr`,
      "-CA",
      "ca.pem",
      "-CAkey",
      "ca.key",
      "-CAcreateserial",
      "-days",
      "1",
      "-out",
      `${name}.pem`,
      "-extfile",
      `${name}.ext`,
    );
  }
}
