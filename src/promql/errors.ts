/**
 * Errors of evaluation, in the kinds Prometheus' HTTP API tells apart (errorType): a query that
 * cannot be answered as asked ("execution"), one that ran out of time ("timeout") or was
 * abandoned by its client ("canceled"). Parse errors are ParseError (parse.ts: "bad_data").
 */

/** The query is valid but cannot be evaluated: many-to-many matching, duplicate label sets, a limit. */
export class EvaluationError extends Error {
  override name = "EvaluationError";
}

/** A bound of the query's reads (series, samples): the same query may succeed with narrower selectors. */
export class QueryLimitError extends EvaluationError {
  override name = "QueryLimitError";
}

export class QueryTimeout extends Error {
  override name = "QueryTimeout";
}

export class QueryCanceled extends Error {
  override name = "QueryCanceled";
}
