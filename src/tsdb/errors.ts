/**
 * The store's own errors. Callers (the RPC code) map them to their protocol: InvalidInput is
 * the caller's mistake, LimitExceeded a bound the caller may retry under, Overloaded a
 * transient refusal. Anything else that escapes the store is a fault (the database away, a bug).
 */
export class TsdbError extends Error {}

/** The request cannot be served as given: a bad matcher, a time out of range, … */
export class InvalidInput extends TsdbError {
  override name = "InvalidInput";
}

/** A limit of the store: too many series selected, a cardinality bound reached, … */
export class LimitExceeded extends TsdbError {
  override name = "LimitExceeded";
}

/** The store is writing behind; the same request may succeed a little later. */
export class Overloaded extends TsdbError {
  override name = "Overloaded";
}
