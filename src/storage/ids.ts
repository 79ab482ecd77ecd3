/** The text of a UUID, as the database makes them (gen_random_uuid) for agents, tokens and commands. */
export const uuidSource = "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}";

/** Whether `text` is a UUID: checked before it reaches a uuid column, where PostgreSQL would fail the query. */
export function isUuid(text: string): boolean {
  return uuidPattern.test(text);
}

const uuidPattern = new RegExp(`^${uuidSource}$`, "i");
