/** A series' labels: key → value. */
export type Labels = Record<string, string>;
