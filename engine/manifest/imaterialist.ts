// iMaterialist-style JSON documents, {"images": [...], "annotations": [...]} or a bare array of
// images, read as a stream: one pass collects labels into a compact store and checks every image,
// the next pass hands out the images with their labels joined.

import { Tokenizer, TokenParser, TokenType, type ParsedElementInfo, type ParsedTokenInfo } from '@streamparser/json';
import type { ManifestEntry } from '../job.ts';
import { ManifestError, SUPPORTED_SHAPES } from './errors.ts';
import { isObject, ItemProblem, itemId, itemLabels, itemUrls, type ItemKeys } from './item.ts';
import { LabelStore } from './labels.ts';
import type { FormatReader } from './reader.ts';
import { contentChunks, type ManifestSource } from './source.ts';

/** Keeps integers beyond 2^53 as their text, so long numeric ids keep every digit. */
class ManifestTokenizer extends Tokenizer {
  protected override parseNumber(text: string): number {
    const n = Number(text);
    if (Number.isSafeInteger(n) || !/^-?[0-9]+$/.test(text)) return n;
    // The token parser passes values through untouched; item.ts accepts a string id.
    return text as unknown as number;
  }
}

type ItemHandler = (item: unknown, n: number, where: string) => void;

/**
 * Feeds bytes through the streaming tokenizer and calls back with each image (and annotation,
 * when asked), holding only the item being parsed. Checks the top-level shape on the way.
 */
class DocumentParser {
  images = 0;
  annotations = 0;
  /** The images list of a top-level object has been read to its end. */
  imagesDone = false;
  private readonly name: string;
  private readonly onImage: ItemHandler;
  private readonly onAnnotation: ItemHandler | undefined;
  private readonly tokenizer = new ManifestTokenizer();
  private parser: TokenParser | undefined;
  private root: 'object' | 'array' | undefined;
  private depth = 0;
  private expectKey = false;
  private expectValue = false;
  private key = '';
  private sawImages = false;
  private lastOffset = 0;
  private chunkStart = 0;
  private chunk: Buffer = Buffer.alloc(0);
  private linesBefore = 0;

  constructor(name: string, onImage: ItemHandler, onAnnotation?: ItemHandler) {
    this.name = name;
    this.onImage = onImage;
    this.onAnnotation = onAnnotation;
    this.tokenizer.onToken = (info) => this.token(info);
  }

  write(chunk: Buffer): void {
    this.chunk = chunk;
    try {
      this.tokenizer.write(chunk);
    } catch (error) {
      throw this.translate(error);
    }
    this.linesBefore += countNewlines(chunk, chunk.length);
    this.chunkStart += chunk.length;
  }

  end(): void {
    try {
      this.tokenizer.end();
    } catch (error) {
      throw this.translate(error);
    }
    const end = this.chunkStart;
    if (this.parser === undefined) throw new ManifestError(this.name, 'byte 0', `the manifest is empty: ${SUPPORTED_SHAPES}`);
    if (!this.parser.isEnded) {
      const where = this.where(end, this.linesBefore + 1);
      throw new ManifestError(this.name, where, `${where}: the JSON ends too early (is the file cut short?)`);
    }
    if (this.root === 'object' && !this.sawImages) {
      throw new ManifestError(this.name, 'top level', `unknown manifest shape: ${SUPPORTED_SHAPES}`);
    }
  }

  private token(info: ParsedTokenInfo): void {
    const { token } = info;
    this.lastOffset = info.offset;
    if (this.depth === 0 && this.parser === undefined) this.start(token);
    else if (this.depth === 1 && this.root === 'object') this.rootMember(info);
    if (token === TokenType.LEFT_BRACE || token === TokenType.LEFT_BRACKET) {
      if (++this.depth === 1) this.expectKey = true;
    } else if (token === TokenType.RIGHT_BRACE || token === TokenType.RIGHT_BRACKET) {
      if (--this.depth === 1 && this.root === 'object' && this.key === 'images') this.imagesDone = true;
    }
    this.parser!.write(info);
  }

  private start(token: TokenType): void {
    if (token === TokenType.LEFT_BRACE) {
      this.root = 'object';
      const paths = this.onAnnotation ? ['$.images.*', '$.annotations.*'] : ['$.images.*'];
      this.parser = new TokenParser({ paths, keepStack: false });
    } else if (token === TokenType.LEFT_BRACKET) {
      this.root = 'array';
      this.parser = new TokenParser({ paths: ['$.*'], keepStack: false });
    } else {
      throw new ManifestError(this.name, 'top level', `unknown manifest shape: ${SUPPORTED_SHAPES}`);
    }
    this.parser.onValue = (info) => this.value(info);
  }

  /** Follows the keys of the top-level object, to check that "images" and "annotations" are lists. */
  private rootMember(info: ParsedTokenInfo): void {
    const { token } = info;
    if (this.expectValue) {
      this.expectValue = false;
      if (this.key === 'images' || this.key === 'annotations') {
        if (token !== TokenType.LEFT_BRACKET) {
          const where = this.where(info.offset);
          throw new ManifestError(this.name, where, `${where}: "${this.key}" is not a list: ${SUPPORTED_SHAPES}`);
        }
        if (this.key === 'images') this.sawImages = true;
      }
    } else if (this.expectKey && token === TokenType.STRING) {
      this.key = String(info.value);
      this.expectKey = false;
    } else if (token === TokenType.COLON) {
      this.expectValue = true;
    } else if (token === TokenType.COMMA) {
      this.expectKey = true;
    }
  }

  private value(info: ParsedElementInfo): void {
    if (this.root === 'array') {
      const n = ++this.images;
      this.onImage(info.value, n, `entry ${n}`);
    } else if (info.stack[1]?.key === 'images') {
      const n = ++this.images;
      this.onImage(info.value, n, `entry ${n} of images`);
    } else if (this.onAnnotation) {
      const n = ++this.annotations;
      this.onAnnotation(info.value, n, `entry ${n} of annotations`);
    }
  }

  /** "byte 1234", or "line 3 (byte 1234)" in a document spread over several lines. */
  private where(offset: number, line?: number): string {
    let lineNumber = line;
    if (lineNumber === undefined) {
      const inChunk = Math.max(0, Math.min(offset - this.chunkStart, this.chunk.length));
      lineNumber = this.linesBefore + 1 + countNewlines(this.chunk, inChunk);
    }
    return lineNumber > 1 ? `line ${lineNumber} (byte ${offset})` : `byte ${offset}`;
  }

  private translate(error: unknown): Error {
    if (error instanceof ManifestError || !(error instanceof Error)) return error as Error;
    const message = error.message;
    const bad = /^Unexpected "(.*)" at chunk position "\d+" \(absolute position "(\d+)"\)/s.exec(message);
    if (bad) {
      const where = this.where(Number(bad[2]));
      return new ManifestError(this.name, where, `${where}: invalid JSON (unexpected ${JSON.stringify(bad[1])})`);
    }
    if (/in state ENDED/.test(message)) {
      const where = this.where(this.lastOffset);
      return new ManifestError(this.name, where, `${where}: more data after the end of the JSON document (JSON Lines? name the file .jsonl)`);
    }
    if (/^Unexpected /.test(message)) {
      const where = this.where(this.lastOffset);
      const token = /\((.*)\) in state/s.exec(message)?.[1] ?? 'token';
      return new ManifestError(this.name, where, `${where}: invalid JSON (unexpected ${token})`);
    }
    if (/ended in the middle of a token|ended in mid-parsing/.test(message)) {
      const where = this.where(this.chunkStart, this.linesBefore + 1);
      return new ManifestError(this.name, where, `${where}: the JSON ends too early (is the file cut short?)`);
    }
    return error;
  }
}

function countNewlines(chunk: Buffer, end: number): number {
  let count = 0;
  for (let i = chunk.indexOf(10); i >= 0 && i < end; i = chunk.indexOf(10, i + 1)) count++;
  return count;
}

function problem(name: string, where: string, result: ItemProblem): ManifestError {
  return new ManifestError(name, where, `${where} ${result.text}`);
}

function objectItem(name: string, item: unknown, where: string): Record<string, unknown> {
  if (!isObject(item)) throw new ManifestError(name, where, `${where} is not an object`);
  return item;
}

/** A reader for an iMaterialist JSON document (or a top-level array of image objects). */
export function imaterialistReader(source: ManifestSource, keys: ItemKeys): FormatReader {
  const { name } = source;
  const store = new LabelStore();

  const readImage = (item: unknown, n: number, where: string): ManifestEntry => {
    const image = objectItem(name, item, where);
    const id = itemId(image, keys);
    if (id instanceof ItemProblem) throw problem(name, where, id);
    const urls = itemUrls(image, keys);
    if (urls instanceof ItemProblem) throw problem(name, where, urls);
    const labels = itemLabels(image, keys);
    if (labels instanceof ItemProblem) throw problem(name, where, labels);
    return { position: n, id, urls, labels };
  };

  /** The image with the labels its annotations gave it (after any it carries itself). */
  const joinLabels = (entry: ManifestEntry): ManifestEntry => {
    const joined = store.get(entry.id);
    if (entry.labels.length === 0) entry.labels = joined;
    else for (const label of joined) if (!entry.labels.includes(label)) entry.labels.push(label);
    return entry;
  };

  return {
    needsScan: true,
    async scan() {
      const parser = new DocumentParser(name, (item, n, where) => void readImage(item, n, where), (item, _n, where) => {
        const annotation = objectItem(name, item, where);
        const id = itemId(annotation, keys);
        if (id instanceof ItemProblem) throw problem(name, where, id);
        const labels = itemLabels(annotation, keys);
        if (labels instanceof ItemProblem) throw problem(name, where, labels);
        store.add(id, labels);
      });
      for await (const chunk of contentChunks(source)) parser.write(chunk);
      parser.end();
      return parser.images;
    },
    async *entries() {
      const batch: ManifestEntry[] = [];
      const parser = new DocumentParser(name, (item, n, where) => void batch.push(joinLabels(readImage(item, n, where))));
      for await (const chunk of contentChunks(source)) {
        parser.write(chunk);
        for (const entry of batch) yield entry;
        batch.length = 0;
        // scan() has checked the whole document already: what follows the images (the
        // annotations, in the real files) need not be parsed again.
        if (parser.imagesDone) return;
      }
      parser.end();
    },
  };
}
