import type { DescMessage, DescService, MessageShape } from "@bufbuild/protobuf";
import { createContextKey } from "@connectrpc/connect";

/** What is recorded of an audited method's calls. */
export interface AuditRule<I> {
  /** The metric names a call writes (repeats are dropped); absent: it writes no metric (tokens, agents, commands). */
  metrics?: (req: I) => Iterable<string>;
  /** Also appends each accepted call's request to the raw archive (--archive-dir). */
  archive?: boolean;
}

type InputOf<M> = M extends { input: infer I extends DescMessage } ? MessageShape<I> : never;

/** The audited methods of a service, keyed by the generated descriptor's local names. */
export type AuditedMethods<S extends DescService> = { readonly [M in keyof S["method"]]?: AuditRule<InputOf<S["method"][M]>> };

/** One service's audited methods, declared next to its implementation and access rules. */
export interface ServiceAudit<S extends DescService = DescService> {
  readonly service: S;
  readonly methods: AuditedMethods<S>;
}

/**
 * Declares which methods of `service` write, so that each call of them becomes an audit event:
 * e.g. `audited(TokensAPI, { create: {}, revoke: {} })`. The daemon serves the declarations in
 * server/routes.ts (servedAudits); one interceptor records the calls of them all.
 */
export function audited<S extends DescService>(service: S, methods: AuditedMethods<S>): ServiceAudit<S> {
  return { service, methods };
}

/** The address a call came from (the socket's peer), for the audit trail. */
export const clientAddressKey = createContextKey<string | undefined>(undefined, { description: "the client's address" });
