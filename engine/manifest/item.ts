// The fields of one JSON manifest item (an iMaterialist image or annotation, a JSON Lines object),
// whichever of the usual spellings it uses.

export const ID_KEYS = ['image_id', 'imageId', 'id'] as const;
export const URL_KEYS = ['url', 'urls'] as const;
export const LABEL_KEYS = ['label_id', 'labelId', 'label', 'labels', 'landmark_id'] as const;

export interface ItemKeys {
  id: readonly string[];
  url: readonly string[];
  label: readonly string[];
}

/** The keys to look for, a user-given name first. */
export function itemKeys(options: { idColumn?: string; urlColumn?: string; labelColumn?: string }): ItemKeys {
  return {
    id: options.idColumn ? [options.idColumn] : ID_KEYS,
    url: options.urlColumn ? [options.urlColumn] : URL_KEYS,
    label: options.labelColumn ? [options.labelColumn] : LABEL_KEYS,
  };
}

/** What is wrong with an item, worded to follow its position: "entry 5 of images has no image_id". */
export class ItemProblem {
  readonly text: string;
  constructor(text: string) {
    this.text = text;
  }
}

export function isObject(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

function first(item: Record<string, unknown>, keys: readonly string[]): { key: string; value: unknown } | undefined {
  for (const key of keys) {
    const value = item[key];
    if (value !== undefined && value !== null) return { key, value };
  }
  return undefined;
}

/** The item's id as text (numbers become their decimal text), or a problem. */
export function itemId(item: Record<string, unknown>, keys: ItemKeys): string | ItemProblem {
  const found = first(item, keys.id);
  if (found === undefined) return new ItemProblem(`has no ${keys.id[0]}${keys.id.length > 1 ? ` (nor ${keys.id.slice(1).join(', ')})` : ''}`);
  const { key, value } = found;
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) return new ItemProblem(`has an invalid ${key}`);
    return String(value);
  }
  if (typeof value === 'string') {
    if (value.trim() === '') return new ItemProblem(`has an empty ${key}`);
    return value;
  }
  return new ItemProblem(`has a ${key} that is neither a string nor a number`);
}

/** The item's URLs, trimmed, empty ones dropped; a bad URL is data, a wrong type is a problem. */
export function itemUrls(item: Record<string, unknown>, keys: ItemKeys): string[] | ItemProblem {
  const found = first(item, keys.url);
  if (found === undefined) return [];
  const { key, value } = found;
  if (typeof value === 'string') {
    const url = value.trim();
    return url === '' ? [] : [url];
  }
  if (Array.isArray(value)) {
    const urls: string[] = [];
    for (const element of value) {
      if (element === null) continue;
      if (typeof element !== 'string') return new ItemProblem(`has a ${key} list holding something other than strings`);
      const url = element.trim();
      if (url !== '') urls.push(url);
    }
    return urls;
  }
  return new ItemProblem(`has a ${key} that is neither a string nor a list of strings`);
}

/** The item's labels as text (a scalar or a list of scalars), deduplicated, empty ones dropped. */
export function itemLabels(item: Record<string, unknown>, keys: ItemKeys): string[] | ItemProblem {
  const found = first(item, keys.label);
  if (found === undefined) return [];
  const { key, value } = found;
  if (Array.isArray(value)) {
    const labels: string[] = [];
    for (const element of value) {
      if (element === null) continue;
      const label = scalarText(element);
      if (label === undefined) return new ItemProblem(`has a ${key} list holding something other than strings or numbers`);
      if (label !== '' && !labels.includes(label)) labels.push(label);
    }
    return labels;
  }
  const label = scalarText(value);
  if (label === undefined) return new ItemProblem(`has a ${key} that is neither a string, a number nor a list of them`);
  return label === '' ? [] : [label];
}

function scalarText(value: unknown): string | undefined {
  if (typeof value === 'string') return value.trim();
  if (typeof value === 'number' && Number.isFinite(value)) return String(value);
  if (typeof value === 'boolean') return String(value);
  return undefined;
}
