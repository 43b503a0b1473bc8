import { describe, expect, it } from "vitest";
import { defaultFlags, envName, parseFlags } from "./flags.js";

const parse = (args: string[], env: Record<string, string> = {}) => parseFlags(args, env);
const message = (args: string[], env: Record<string, string> = {}) => {
  try {
    parseFlags(args, env);
  } catch (err) {
    return (err as Error).message;
  }
  throw new Error("no error");
};

describe("parseFlags", () => {
  it("gives flanneld's defaults", () => {
    expect(parse([])).toEqual({
      etcdEndpoints: ["http://127.0.0.1:4001", "http://127.0.0.1:2379"],
      etcdPrefix: "/coreos.com/network",
      etcdKeyfile: "",
      etcdCertfile: "",
      etcdCafile: "",
      etcdUsername: "",
      etcdPassword: "",
      iface: [],
      ifaceRegex: [],
      ifaceCanReach: "",
      publicIP: "",
      publicIPv6: "",
      ipMasq: false,
      subnetFile: "/run/flannel/subnet.env",
      subnetLeaseRenewMarginMinutes: 60,
      iptablesResyncSeconds: 5,
      iptablesForwardRules: true,
      healthzIP: "0.0.0.0",
      healthzPort: 0,
      routeResyncSeconds: 60,
      cleanup: false,
      verbosity: 0,
      version: false,
      help: false,
      ignored: [],
    });
  });

  it("reads every flag in Go's syntax: --flag=value, --flag value, -flag, bare booleans", () => {
    const flags = parse([
      "--etcd-endpoints=https://10.0.0.1:2379,https://10.0.0.2:2379",
      "-etcd-prefix",
      "/weft/network",
      "--etcd-keyfile=/k.pem",
      "--etcd-certfile",
      "/c.pem",
      "-etcd-cafile=/ca.pem",
      "--etcd-username=flannel",
      "--etcd-password=secret",
      "--iface=eth0",
      "--iface",
      "10.0.0.5",
      "--iface-regex=^en",
      "--iface-can-reach=10.0.0.1",
      "--public-ip=192.168.64.3",
      "--public-ipv6=fd00::3",
      "--ip-masq",
      "--subnet-file=/tmp/subnet.env",
      "--subnet-lease-renew-margin=30",
      "--iptables-resync",
      "10",
      "--iptables-forward-rules=false",
      "--healthz-ip=127.0.0.1",
      "--healthz-port=8081",
      "--route-resync=30",
      "--cleanup",
      "-v=2",
    ]);
    expect(flags).toEqual({
      ...defaultFlags(),
      etcdEndpoints: ["https://10.0.0.1:2379", "https://10.0.0.2:2379"],
      etcdPrefix: "/weft/network",
      etcdKeyfile: "/k.pem",
      etcdCertfile: "/c.pem",
      etcdCafile: "/ca.pem",
      etcdUsername: "flannel",
      etcdPassword: "secret",
      iface: ["eth0", "10.0.0.5"],
      ifaceRegex: ["^en"],
      ifaceCanReach: "10.0.0.1",
      publicIP: "192.168.64.3",
      publicIPv6: "fd00::3",
      ipMasq: true,
      subnetFile: "/tmp/subnet.env",
      subnetLeaseRenewMarginMinutes: 30,
      iptablesResyncSeconds: 10,
      iptablesForwardRules: false,
      healthzIP: "127.0.0.1",
      healthzPort: 8081,
      routeResyncSeconds: 30,
      cleanup: true,
      verbosity: 2,
    });
  });

  it("takes strconv.ParseBool's spellings, and a later flag wins", () => {
    for (const spelling of ["1", "t", "T", "TRUE", "true", "True"]) expect(parse([`--ip-masq=${spelling}`]).ipMasq).toBe(true);
    for (const spelling of ["0", "f", "F", "FALSE", "false", "False"]) {
      expect(parse([`--iptables-forward-rules=${spelling}`]).iptablesForwardRules).toBe(false);
    }
    for (const other of ["", "tRUE", "yes", "2"])
      expect(message([`--ip-masq=${other}`])).toBe(`--ip-masq: expected true or false, got ${JSON.stringify(other)}`);
    expect(parse(["--ip-masq=1"]).ipMasq).toBe(true);
    expect(parse(["--ip-masq=T"]).ipMasq).toBe(true);
    expect(parse(["--ip-masq", "--ip-masq=False"]).ipMasq).toBe(false);
    expect(parse(["--healthz-port=1", "--healthz-port=2"]).healthzPort).toBe(2);
  });

  it("takes the next argument as a value even when it starts with a dash, as Go does", () => {
    expect(parse(["--etcd-password", "-secret"]).etcdPassword).toBe("-secret");
  });

  it("reads FLANNELD_<FLAG> for each flag the command line did not set; the flag wins", () => {
    const env = {
      FLANNELD_ETCD_ENDPOINTS: "http://10.0.0.9:2379",
      FLANNELD_IP_MASQ: "true",
      FLANNELD_IFACE: "eth1",
      FLANNELD_SUBNET_LEASE_RENEW_MARGIN: "120",
      FLANNELD_HEALTHZ_PORT: "9000",
      FLANNELD_PUBLIC_IP: "",
    };
    const flags = parse(["--healthz-port=8081", "--iface=eth0"], env);
    expect(flags.etcdEndpoints).toEqual(["http://10.0.0.9:2379"]);
    expect(flags.ipMasq).toBe(true);
    expect(flags.iface).toEqual(["eth0"]);
    expect(flags.subnetLeaseRenewMarginMinutes).toBe(120);
    expect(flags.healthzPort).toBe(8081);
    expect(flags.publicIP).toBe("");
    expect(parse([], { FLANNELD_IFACE: "eth1" }).iface).toEqual(["eth1"]);
  });

  it("names the variable flanneld reads", () => {
    expect(envName("etcd-endpoints")).toBe("FLANNELD_ETCD_ENDPOINTS");
    expect(envName("subnet-lease-renew-margin")).toBe("FLANNELD_SUBNET_LEASE_RENEW_MARGIN");
  });

  it("stops at -- and reads --help and --version", () => {
    expect(parse(["--ip-masq", "--"]).ipMasq).toBe(true);
    expect(parse(["-h"]).help).toBe(true);
    expect(parse(["--help"]).help).toBe(true);
    expect(parse(["--version"]).version).toBe(true);
    expect(parse([], { FLANNELD_VERSION: "true" }).version).toBe(false);
  });

  it("accepts the Kubernetes-mode flags flanneld ignores in etcd mode, and lists them", () => {
    const flags = parse(["--kube-api-url=https://k:6443", "--net-config-path=/x.json", "--kube-subnet-mgr=false"]);
    expect(flags.ignored).toEqual(["kube-api-url", "net-config-path"]);
    const all = parse([
      "--kube-api-url=https://k:6443",
      "--kube-annotation-prefix=flannel.alpha.coreos.com",
      "--kubeconfig-file=/k.conf",
      "--net-config-path=/x.json",
      "--set-node-network-unavailable",
    ]);
    expect(all).toEqual({
      ...defaultFlags(),
      ignored: ["kube-api-url", "kube-annotation-prefix", "kubeconfig-file", "net-config-path", "set-node-network-unavailable"],
    });
  });

  it("refuses --kube-subnet-mgr, saying why", () => {
    expect(message(["--kube-subnet-mgr"])).toBe(
      "--kube-subnet-mgr: the Kubernetes subnet manager is not supported: weft's flanneld runs in etcd mode only " +
        "(the network config and the leases under --etcd-prefix in etcd); leave the flag out and give --etcd-endpoints",
    );
    expect(message([], { FLANNELD_KUBE_SUBNET_MGR: "true" })).toMatch(/^FLANNELD_KUBE_SUBNET_MGR: the Kubernetes subnet manager is not supported/);
  });

  it("refuses an unknown flag, naming it", () => {
    expect(message(["--etcd-endpoint=http://x:2379"])).toBe("--etcd-endpoint: unknown flag (see --help for flanneld's flags)");
    expect(message(["-kube"])).toBe("--kube: unknown flag (see --help for flanneld's flags)");
  });

  it("refuses arguments and bad syntax", () => {
    expect(message(["eth0"])).toBe('"eth0": flanneld takes no arguments, only flags');
    expect(message(["--ip-masq", "false"])).toBe('"false": flanneld takes no arguments, only flags');
    expect(message(["--", "x"])).toBe('"x": flanneld takes no arguments, only flags');
    expect(message(["---ip-masq"])).toBe('"---ip-masq": bad flag syntax');
    expect(message(["--=x"])).toBe('"--=x": bad flag syntax');
    expect(message(["-"])).toBe('"-": flanneld takes no arguments, only flags');
  });

  it("refuses a flag without its value", () => {
    expect(message(["--iface"])).toBe("--iface: needs a value: an interface name or address");
  });

  it("refuses bad values, naming the flag and what it expects", () => {
    const cases: [string[], string][] = [
      [["--ip-masq=yes"], '--ip-masq: expected true or false, got "yes"'],
      [["--iptables-resync=0"], '--iptables-resync: expected a whole number of seconds, 1 or more, got "0"'],
      [["--iptables-resync=5s"], '--iptables-resync: expected a whole number of seconds, 1 or more, got "5s"'],
      [["--subnet-lease-renew-margin=1440"], '--subnet-lease-renew-margin: expected a whole number of minutes from 1 to 1439, got "1440"'],
      [["--subnet-lease-renew-margin=0"], '--subnet-lease-renew-margin: expected a whole number of minutes from 1 to 1439, got "0"'],
      [["--healthz-port=65536"], '--healthz-port: expected a port number from 0 (no health server) to 65535, got "65536"'],
      [["--healthz-port=-1"], '--healthz-port: expected a port number from 0 (no health server) to 65535, got "-1"'],
      [["--healthz-ip=localhost"], '--healthz-ip: expected an IP address, got "localhost"'],
      [["--public-ip=fd00::1"], '--public-ip: expected an IPv4 address, got "fd00::1"'],
      [["--public-ip=node1"], '--public-ip: expected an IPv4 address, got "node1"'],
      [["--public-ipv6=node1"], '--public-ipv6: expected an IPv6 address, got "node1"'],
      [["--public-ipv6=10.0.0.1"], '--public-ipv6: expected an IPv6 address, got "10.0.0.1"'],
      [["--iface-can-reach=gateway"], '--iface-can-reach: expected an IP address, got "gateway"'],
      [["--iface-regex=(eth"], '--iface-regex: expected a regular expression, got "(eth"'],
      [["--iface="], '--iface: expected an interface name or address, got ""'],
      [["--subnet-file="], '--subnet-file: expected a file path, got ""'],
      [
        ["--etcd-prefix=coreos.com/network"],
        '--etcd-prefix: expected an etcd key prefix starting with / (e.g. /coreos.com/network), got "coreos.com/network"',
      ],
      [
        ["--etcd-endpoints=ftp://x:2379"],
        '--etcd-endpoints: expected a comma-separated list of etcd URLs (http://host:2379, https://host:2379), got "ftp://x:2379"',
      ],
      [
        ["--etcd-endpoints=http://a:2379,"],
        '--etcd-endpoints: expected a comma-separated list of etcd URLs (http://host:2379, https://host:2379), got "http://a:2379,"',
      ],
    ];
    for (const [args, expected] of cases) expect(message(args)).toBe(expected);
    expect(message([], { FLANNELD_IPTABLES_RESYNC: "often" })).toBe(
      'FLANNELD_IPTABLES_RESYNC: expected a whole number of seconds, 1 or more, got "often"',
    );
  });

  it("accepts bare host:port endpoints, as the etcd client does", () => {
    expect(parse(["--etcd-endpoints=10.0.0.1:2379,[fd00::1]:2379"]).etcdEndpoints).toEqual(["10.0.0.1:2379", "[fd00::1]:2379"]);
  });

  it("wants the etcd client key and certificate together", () => {
    expect(message(["--etcd-keyfile=/k.pem"])).toBe(
      "--etcd-keyfile: --etcd-keyfile and --etcd-certfile go together: give both for a client certificate, or neither",
    );
    expect(message([], { FLANNELD_ETCD_CERTFILE: "/c.pem" })).toBe(
      "--etcd-certfile: --etcd-keyfile and --etcd-certfile go together: give both for a client certificate, or neither",
    );
  });
  it("names what each flag expects when its value is missing", () => {
    const expected: Record<string, string> = {
      "etcd-endpoints": "a comma-separated list of etcd URLs (http://host:2379, https://host:2379)",
      "etcd-prefix": "an etcd key prefix starting with / (e.g. /coreos.com/network)",
      "etcd-keyfile": "the path of the client key file for etcd",
      "etcd-certfile": "the path of the client certificate file for etcd",
      "etcd-cafile": "the path of the CA certificate file for etcd",
      "etcd-username": "a user name for etcd",
      "etcd-password": "a password for etcd",
      iface: "an interface name or address",
      "iface-regex": "a regular expression",
      "iface-can-reach": "an IP address",
      "public-ip": "an IPv4 address",
      "public-ipv6": "an IPv6 address",
      "subnet-file": "a file path",
      "subnet-lease-renew-margin": "a whole number of minutes from 1 to 1439",
      "iptables-resync": "a whole number of seconds, 1 or more",
      "healthz-ip": "an IP address",
      "healthz-port": "a port number from 0 (no health server) to 65535",
      "route-resync": "a whole number of seconds from 1 to 3600 (weft: how often routes, neighbours and fdb entries are compared with the leases)",
      v: "a log level, 0 or more",
      vmodule: "a klog vmodule setting",
      log_backtrace_at: "a klog file:line",
      "kube-api-url": "a URL",
      "kube-annotation-prefix": "an annotation prefix",
      "kubeconfig-file": "a file path",
      "net-config-path": "a file path",
    };
    for (const [name, what] of Object.entries(expected)) expect(message([`--${name}`])).toBe(`--${name}: needs a value: ${what}`);
    for (const name of ["ip-masq", "iptables-forward-rules", "version", "help", "h", "set-node-network-unavailable"]) {
      expect(message([`--${name}=maybe`])).toBe(`--${name}: expected true or false, got "maybe"`);
    }
    expect(message(["--cleanup=maybe"])).toBe(`--cleanup: expected true or false (weft: remove the agent's netfilter rules and exit), got "maybe"`);
    expect(message(["--kube-subnet-mgr=maybe"])).toBe('--kube-subnet-mgr: expected false: weft\'s flanneld runs in etcd mode only, got "maybe"');
  });

  it("takes the bounds of each range, and signs", () => {
    expect(parse(["--subnet-lease-renew-margin=1"]).subnetLeaseRenewMarginMinutes).toBe(1);
    expect(parse(["--subnet-lease-renew-margin=+1439"]).subnetLeaseRenewMarginMinutes).toBe(1439);
    expect(parse(["--healthz-port=0"]).healthzPort).toBe(0);
    expect(parse(["--healthz-port=65535"]).healthzPort).toBe(65535);
    expect(parse(["--iptables-resync=2147483647"]).iptablesResyncSeconds).toBe(2147483647);
    expect(message(["--iptables-resync=2147483648"])).toBe('--iptables-resync: expected a whole number of seconds, 1 or more, got "2147483648"');
    expect(parse(["--route-resync=1"]).routeResyncSeconds).toBe(1);
    expect(parse(["--route-resync=3600"]).routeResyncSeconds).toBe(3600);
    for (const bad of ["0", "3601"])
      expect(message([`--route-resync=${bad}`])).toMatch(/^--route-resync: expected a whole number of seconds from 1 to 3600 /);
    expect(parse(["-v=2147483647"]).verbosity).toBe(2147483647);
    expect(message(["-v=2147483648"])).toBe('--v: expected a log level, 0 or more, got "2147483648"');
    for (const bad of ["x5", "5x", "", "1.5", "0x10"]) expect(message([`--healthz-port=${bad}`])).toMatch(/^--healthz-port: expected a port number/);
  });

  it("accepts empty addresses as not given, and every endpoint scheme the etcd client takes", () => {
    expect(parse(["--public-ip=", "--public-ipv6=", "--iface-can-reach="])).toEqual(defaultFlags());
    expect(parse(["--etcd-endpoints=http://a:2379,https://b:2379,unix:///run/etcd.sock,unixs://c:1"]).etcdEndpoints).toHaveLength(4);
    for (const bad of ["http://[bad", "a:2379/x", "x a:2379", "[fd00::1]:2379x", "x[fd00::1]:2379", "a:b"]) {
      expect(message([`--etcd-endpoints=${bad}`])).toMatch(/^--etcd-endpoints: expected/);
    }
    expect(message(["--iface-regex="])).toBe('--iface-regex: expected a regular expression, got ""');
  });

  it("lists an ignored flag once, keeps accepted-only flags out of the result, and skips empty variables", () => {
    expect(parse(["--kube-api-url=a", "--kube-api-url=b"]).ignored).toEqual(["kube-api-url"]);
    expect(parse(["--vmodule=x=2", "--log_backtrace_at=a.go:1"])).toEqual(defaultFlags());
    expect(parse([], { FLANNELD_HEALTHZ_PORT: "", FLANNELD_HELP: "true", FLANNELD_H: "true" })).toEqual(defaultFlags());
  });
});
