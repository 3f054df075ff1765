/**
 * The complete lines of a JSON-lines file that a live process may be appending to. A reader can
 * see an append half done (a write crossing a page boundary shows the first part first), so the
 * text after the last newline is not a line yet and is left out. A torn line anywhere else is
 * still a parse error: that is a real defect.
 */
export function completeJsonLines<T = Record<string, unknown>>(text: string): T[] {
  const end = text.lastIndexOf('\n') + 1;
  return text.slice(0, end).split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as T);
}
