import { visit } from 'jsonc-parser';

/** A PROMPT_ALIASES entry: a model name that embeds its texts as queries with a custom instruction. */
export interface PromptAlias {
  name: string;
  instruction: string;
}

/**
 * Suffixes every name of the served model takes for OpenAI-only clients: `<name>:query` embeds as
 * input_type query, `<name>:document` as document. PROMPT_ALIASES names may not end with them.
 */
export const PROMPT_SUFFIXES = [':query', ':document'] as const;

/** As SERVED_MODEL_NAME's names. */
const NAME = /^[\w.\-/:@]+$/;
/** As a request's `instruction` (EmbeddingsRequestDto). */
const MAX_INSTRUCTION_LENGTH = 4096;
const EXAMPLE = '{"docs-search": "Given a question, retrieve passages that answer it"}';

/**
 * PROMPT_ALIASES, a JSON object `{"alias": "instruction", ...}`, checked against the served names.
 * Returns the aliases, or the reason the value is refused (one line naming the alias, never its
 * instruction).
 */
export function parsePromptAliases(
  value: string | undefined,
  servedNames: readonly string[],
): { aliases: PromptAlias[]; problem?: string } {
  if (value === undefined) return { aliases: [] };
  let parsed: unknown;
  try {
    parsed = JSON.parse(value);
  } catch {
    return { aliases: [], problem: `must be a JSON object such as ${EXAMPLE}` };
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    return { aliases: [], problem: `must be a JSON object such as ${EXAMPLE}` };
  }
  // JSON.parse keeps the last of a repeated key; a repeated alias is a mistake worth a word.
  const seen = new Set<string>();
  let repeated: string | undefined;
  visit(value, {
    onObjectProperty: (property, _offset, _length, _line, _character, path) => {
      if (path().length > 0) return;
      const key = property.toLowerCase();
      if (seen.has(key)) repeated ??= property;
      seen.add(key);
    },
  });
  if (repeated !== undefined) {
    return { aliases: [], problem: `names "${repeated}" twice (names match case-insensitively)` };
  }
  const taken = new Set(
    servedNames.flatMap((name) => [name, ...PROMPT_SUFFIXES.map((suffix) => name + suffix)]).map(lower),
  );
  const aliases: PromptAlias[] = [];
  for (const [name, instruction] of Object.entries(parsed as Record<string, unknown>)) {
    if (!NAME.test(name)) {
      return { aliases: [], problem: `"${name}" is not a model name: use letters, digits and . _ - / : @` };
    }
    if (PROMPT_SUFFIXES.some((suffix) => lower(name).endsWith(suffix))) {
      return {
        aliases: [],
        problem: `"${name}" ends with ${PROMPT_SUFFIXES.join(' or ')}, the suffixes every model name already takes`,
      };
    }
    if (taken.has(lower(name))) {
      return { aliases: [], problem: `"${name}" is already a name of the served model (SERVED_MODEL_NAME)` };
    }
    if (typeof instruction !== 'string' || instruction.trim() === '') {
      return { aliases: [], problem: `the instruction of "${name}" must be a non-empty string` };
    }
    if (instruction.length > MAX_INSTRUCTION_LENGTH) {
      return {
        aliases: [],
        problem: `the instruction of "${name}" must be at most ${MAX_INSTRUCTION_LENGTH} characters`,
      };
    }
    aliases.push({ name, instruction });
  }
  return { aliases };
}

function lower(name: string): string {
  return name.toLowerCase();
}
