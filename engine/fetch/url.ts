// Which manifest URLs are worth a request at all.

/** The URL as a WHATWG URL when it is absolute http(s) with a host, else null. */
export function parseFetchUrl(text: string): URL | null {
  // URL.parse: one parse, and null rather than a thrown error for a malformed URL.
  const url = URL.parse(text.trim());
  if (url === null) return null;
  if ((url.protocol !== 'http:' && url.protocol !== 'https:') || url.hostname === '') return null;
  return url;
}

/** The host a URL names, for grouping failures: `(no URL)`, `(no host)` or `(invalid URL)` when it names none. */
export function hostOf(url: string): string {
  if (!url) return '(no URL)';
  try {
    return new URL(url).host || '(no host)';
  } catch {
    return '(invalid URL)';
  }
}
