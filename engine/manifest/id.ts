// Compact keys for image ids in Sets and Maps: most ids are decimal integers, and a number key
// costs far less than a string.

const CANONICAL_INTEGER = /^(?:0|[1-9][0-9]{0,15})$/;

/** The id as a number when it is the canonical text of a non-negative safe integer, else the id itself. */
export function idKey(id: string): string | number {
  if (id.length > 16 || !CANONICAL_INTEGER.test(id)) return id;
  const n = Number(id);
  return Number.isSafeInteger(n) ? n : id;
}
