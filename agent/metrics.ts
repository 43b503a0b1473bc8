import { readdirSync } from "node:fs";

/**
 * What the agent counts, for /metrics (Prometheus text format): what it asked of etcd, what it was
 * told, what it changed in the kernel, so an operator (and the scale benchmark) can see the cost per
 * event.
 */
export class AgentMetrics {
  etcdRequests = 0;
  leaseEvents = 0;
  peers = 0;
  kernelChanges = 0;
  resyncs = 0;
  resyncRepairs = 0;
  lastEventAppliedSeconds = 0;
  watchRevision = 0;
  etcdReachable = 1;
  /** Further metrics, each a function giving Prometheus text: the udp backend's carrier counters. */
  readonly sections: (() => string)[] = [];

  /** The process's own figures are read when asked, from /proc. */
  format(): string {
    const lines: string[] = [];
    const metric = (name: string, type: "counter" | "gauge", help: string, value: number) => {
      lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`, `${name} ${value}`);
    };
    metric("weft_agent_etcd_requests_total", "counter", "etcd requests made (unary calls and lease renewals).", this.etcdRequests);
    metric("weft_agent_lease_events_total", "counter", "Watch events about other nodes' leases handled.", this.leaseEvents);
    metric("weft_agent_peers", "gauge", "Other nodes' leases programmed into the kernel.", this.peers);
    metric(
      "weft_agent_kernel_changes_total",
      "counter",
      "Requests to add, replace or delete a route, neighbour or fdb entry (a replace may change nothing).",
      this.kernelChanges,
    );
    metric("weft_agent_resyncs_total", "counter", "Full passes comparing the kernel with the leases.", this.resyncs);
    metric("weft_agent_resync_repairs_total", "counter", "Kernel entries a full pass found missing, changed or stale.", this.resyncRepairs);
    metric(
      "weft_agent_last_event_applied_seconds",
      "gauge",
      "Unix time the last lease event was applied to the kernel.",
      this.lastEventAppliedSeconds,
    );
    metric("weft_agent_watch_revision", "gauge", "etcd revision of the last lease event applied.", this.watchRevision);
    metric("weft_agent_etcd_reachable", "gauge", "1 while etcd answers, 0 while the agent is retrying.", this.etcdReachable);
    metric("process_resident_memory_bytes", "gauge", "Resident memory size in bytes.", process.memoryUsage.rss());
    const usage = process.cpuUsage();
    metric("process_cpu_seconds_total", "counter", "User and system CPU time spent in seconds.", (usage.user + usage.system) / 1e6);
    metric("process_open_fds", "gauge", "Number of open file descriptors.", openFds());
    return `${lines.join("\n")}\n${this.sections.map((section) => section()).join("")}`;
  }
}

function openFds(): number {
  try {
    return readdirSync("/proc/self/fd").length;
  } catch {
    return 0;
  }
}
