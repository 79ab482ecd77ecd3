/**
 * Annotation templates: `{{ $labels.<name> }}` and `{{ $value }}`, nothing else. Placeholders are
 * replaced as text, never run, so a rule's author cannot execute code in the daemon.
 */

const placeholder = /\{\{\s*([^{}]*?)\s*\}\}/g;
const labelRef = /^\$labels\.([a-zA-Z_][a-zA-Z0-9_]*)$/;

/** Why `template` is not a valid annotation template, or undefined when it is. */
export function templateError(template: string): string | undefined {
  for (const [whole, inner] of template.matchAll(placeholder)) {
    if (inner !== "$value" && !labelRef.test(inner!)) return `"${whole}" is not {{ $value }} or {{ $labels.<name> }}`;
  }
  const rest = template.replace(placeholder, "");
  if (rest.includes("{{") || rest.includes("}}")) return "has an unmatched {{ or }}";
  return undefined;
}

/** The value as people read it: at most 6 significant digits, no exponent for everyday sizes. */
export function formatValue(value: number): string {
  if (!Number.isFinite(value)) return String(value);
  return String(Number(value.toPrecision(6)));
}

/** Renders a valid template (see templateError); a label the alert lacks renders as "". */
export function render(template: string, labels: Readonly<Record<string, string>>, value: number): string {
  return template.replace(placeholder, (_, inner: string) => (inner === "$value" ? formatValue(value) : (labels[labelRef.exec(inner)![1]!] ?? "")));
}
