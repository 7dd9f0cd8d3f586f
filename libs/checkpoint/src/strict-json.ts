import { visit } from 'jsonc-parser';

/**
 * A JSON document as the engine's loader reads one: RFC 8259 (JSON.parse's syntax), and no object
 * naming a key twice. JSON.parse silently keeps the last of a duplicated key, so jsonc-parser's
 * visitor walks the text for them; the first one found is thrown as `duplicate key "name"` (with its
 * path when nested), the engine's words.
 */
export function parseStrictJson(text: string): unknown {
  const value = JSON.parse(text) as unknown;
  const open: Set<string>[] = [];
  let duplicate: string | undefined;
  visit(text, {
    onObjectBegin: () => {
      open.push(new Set());
    },
    onObjectEnd: () => {
      open.pop();
    },
    onObjectProperty: (property, _offset, _length, _line, _character, path) => {
      const keys = open[open.length - 1];
      if (duplicate === undefined && keys.has(property)) {
        const at = path();
        duplicate = `duplicate key "${property}"${at.length > 0 ? ` in ${at.join('.')}` : ''}`;
      }
      keys.add(property);
    },
  });
  if (duplicate !== undefined) throw new SyntaxError(duplicate);
  return value;
}
