// The index table: one CSV row per distinct manifest entry, the file a user loads in pandas.

import type { Outcome } from './outcome.ts';

/** What the index says of one distinct manifest entry. */
export interface IndexRecord {
  position: number;
  id: string;
  labels: string[];
  urls: string[];
  /** Store key; null when the entry could not be planned (no usable URL). */
  key: string | null;
  outcome: Outcome;
}

export const INDEX_COLUMNS = [
  'image_id', 'label', 'url', 'path', 'status', 'bytes', 'format', 'reason', 'http_status', 'attempts', 'detail',
] as const;

export const INDEX_HEADER = INDEX_COLUMNS.join(',') + '\n';

/** RFC 4180 quoting; line breaks and other control characters inside a value become spaces. */
export function csvField(value: string | number | undefined): string {
  if (value === undefined) return '';
  const text = String(value).replace(/[\u0000-\u001f\u007f]+/g, ' ');
  return /[",]/.test(text) || text !== text.trim() ? `"${text.replace(/"/g, '""')}"` : text;
}

/** Multi-label entries join their labels with a space: `df.label.str.split()` gives the list back. */
export function indexRow(record: IndexRecord): string {
  const { outcome, key } = record;
  const stored = outcome.status !== 'failed' && key !== null;
  return [
    record.id,
    record.labels.join(' '),
    outcome.url || record.urls[0] || '',
    stored ? key : '',
    outcome.status,
    outcome.bytes,
    outcome.format,
    outcome.reason,
    outcome.httpStatus,
    outcome.attempts,
    outcome.detail,
  ].map(csvField).join(',') + '\n';
}
