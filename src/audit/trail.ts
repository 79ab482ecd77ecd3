import { Counter, Gauge, type Registry } from "prom-client";
import type { Logger } from "../shared/log.js";
import type { Db } from "../storage/database.js";
import type { Handler } from "../worker/engine.js";
import type { AuditRule, ServiceAudit } from "./declare.js";
import { actorOf, outcomeOf, type AuditEvent } from "./event.js";
import type { Code } from "@connectrpc/connect";
import { SinkQueue, type SinkQueueOptions, type SinkWriter } from "./queue.js";
import { databaseSink, deleteOldEvents } from "./repository.js";
import { fileSink, urlSink, type FileSinkOptions } from "./sinks.js";

export interface AuditConfig {
  /** NDJSON file (--audit-file), rotated by size. */
  file?: FileSinkOptions;
  /** Batches POSTed here (--audit-url). */
  url?: string;
  /** Events waiting per sink at most; beyond, new ones are dropped (counted in /metrics). */
  queueCapacity: number;
  /** How long the database keeps events. */
  retentionMs: number;
}

/** Sink timings: a write waits up to 1 s for more events; retries back off from 0.2 s to 5 s. */
const queueTimings: Omit<SinkQueueOptions, "capacity"> = { batchSize: 500, lingerMs: 1_000, backoffMs: 200, maxBackoffMs: 5_000 };

/**
 * The audit trail: which procedures are audited (each service declares its own, declare.ts) and
 * the sinks every event goes to: the database always, the file and the URL when configured, each
 * behind its own bounded queue (queue.ts), so that none delays a call or another sink.
 */
export class AuditTrail {
  private readonly rules = new Map<string, AuditRule<never>>();
  private readonly queues: SinkQueue<AuditEvent>[];

  constructor(declared: readonly ServiceAudit[], db: Db, config: AuditConfig, registry: Registry, log: Logger) {
    for (const { service, methods } of declared) {
      for (const method of service.methods) {
        const rule = (methods as Partial<Record<string, AuditRule<never>>>)[method.localName];
        if (rule) this.rules.set(`${service.typeName}/${method.name}`, rule);
      }
    }
    const dropped = new Counter({
      name: "specta_audit_events_dropped_total",
      help: "Audit events dropped because the sink's queue was full (or the daemon stopped before the sink took them), by sink.",
      labelNames: ["sink"],
      registers: [registry],
    });
    const written = new Counter({
      name: "specta_audit_events_written_total",
      help: "Audit events written, by sink.",
      labelNames: ["sink"],
      registers: [registry],
    });
    const failures = new Counter({
      name: "specta_audit_sink_failures_total",
      help: "Failed writes of a batch of audit events (each retried), by sink.",
      labelNames: ["sink"],
      registers: [registry],
    });
    const writers: SinkWriter<AuditEvent>[] = [databaseSink(db)];
    if (config.file) writers.push(fileSink(config.file));
    if (config.url) writers.push(urlSink(config.url));
    const events = {
      dropped: (sink: string, n: number) => dropped.inc({ sink }, n),
      written: (sink: string, n: number) => written.inc({ sink }, n),
      failed: (sink: string) => failures.inc({ sink }),
    };
    const sinkLog = log.child({ component: "audit" });
    this.queues = writers.map((w) => new SinkQueue(w, { ...queueTimings, capacity: config.queueCapacity }, events, sinkLog));
    const queues = this.queues;
    new Gauge({
      name: "specta_audit_queue_events",
      help: "Audit events waiting for their sink, by sink.",
      labelNames: ["sink"],
      registers: [registry],
      collect() {
        writers.forEach((w, i) => this.set({ sink: w.name }, queues[i]!.length));
      },
    });
    for (const w of writers) {
      dropped.inc({ sink: w.name }, 0);
      written.inc({ sink: w.name }, 0);
    }
  }

  /** The audit rule of a procedure ("metrics.API/Push"), if it is audited. */
  ruleOf(procedure: string): AuditRule<never> | undefined {
    return this.rules.get(procedure);
  }

  /** Queues `event` for every sink; never waits. */
  record(event: AuditEvent): void {
    for (const queue of this.queues) queue.push(event);
  }

  /** Records a call of an audited procedure that was refused before it was read (no credential, rate limited, too large). */
  refused(procedure: string, code: Code, ip: string | undefined): void {
    if (!this.rules.has(procedure)) return;
    this.record({
      ts: new Date().toISOString(),
      action: procedure,
      outcome: outcomeOf(code),
      metrics: [],
      ip_address: ip ?? null,
      actor: actorOf(undefined),
    });
  }

  /** Writes what is queued, for up to `timeoutMs`; what is left then is dropped (counted). */
  async stop(timeoutMs: number): Promise<void> {
    const deadline = performance.now() + timeoutMs;
    await Promise.all(this.queues.map((q) => q.stop(deadline)));
  }
}

/** The advisory lock of the audit retention (other keys: src/worker/leader.ts). */
export const auditRetentionLock = 0x5e_c7_a0_a1;

/** Deletes events older than the retention, 10,000 at a time, every 10 minutes; one daemon at a time. */
export function auditRetention(db: Db, retentionMs: number): Handler {
  return {
    name: "audit-retention",
    coolerMs: 600_000,
    leaderLock: auditRetentionLock,
    async ensure(signal) {
      const before = new Date(Date.now() - retentionMs);
      while (!signal.aborted && (await deleteOldEvents(db, before, 10_000)) === 10_000);
    },
  };
}
