import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import type { ManifestEntry } from '../engine/job.ts';
import {
  fileSource,
  idKey,
  ManifestError,
  openManifest,
  splitNameOf,
  type Manifest,
  type ManifestSource,
  type ReadOptions,
} from '../engine/manifest/index.ts';
import { LabelStore } from '../engine/manifest/labels.ts';

const competition = (name: string): string => fileURLToPath(new URL(`fixtures/manifests/competitions/${name}`, import.meta.url));
const fixture = (name: string): string => fileURLToPath(new URL(`./fixtures/manifests/${name}`, import.meta.url));

let dir = '';
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'cloudfetch-manifest-'));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** Writes a temporary manifest and returns its path. */
async function temp(name: string, content: string | Buffer): Promise<string> {
  const path = join(dir, name);
  await writeFile(path, content);
  return path;
}

/** A source held in memory, handed out in small chunks (as a slow S3 body might), counting opens. */
function memorySource(name: string, content: string | Buffer, chunkSize = 5): ManifestSource & { opens: number } {
  const bytes = typeof content === 'string' ? Buffer.from(content, 'utf8') : content;
  const source = {
    name,
    opens: 0,
    async open() {
      source.opens++;
      const chunks: Buffer[] = [];
      for (let i = 0; i < bytes.length; i += chunkSize) chunks.push(bytes.subarray(i, i + chunkSize));
      return Readable.from(chunks);
    },
  };
  return source;
}

async function read(path: string, options?: ReadOptions): Promise<{ manifest: Manifest; count: number; entries: ManifestEntry[] }> {
  const manifest = await openManifest(fileSource(path), options);
  const { entries: count } = await manifest.scan();
  return { manifest, count, entries: await collect(manifest) };
}

async function collect(manifest: Manifest): Promise<ManifestEntry[]> {
  const entries: ManifestEntry[] = [];
  for await (const entry of manifest.entries()) entries.push(entry);
  return entries;
}

/** Asserts that opening and scanning fails with a ManifestError at `position`, its message matching. */
async function rejectsAt(path: string | ManifestSource, position: string, message: RegExp, options?: ReadOptions): Promise<void> {
  await assert.rejects(
    async () => {
      const manifest = await openManifest(typeof path === 'string' ? fileSource(path) : path, options);
      await manifest.scan();
    },
    (error: unknown) => {
      assert.ok(error instanceof ManifestError, `expected a ManifestError, got ${String(error)}`);
      assert.equal(error.position, position);
      assert.match(error.message, message);
      assert.ok(!error.message.includes('\n'), 'one line');
      assert.doesNotMatch(error.message, /[\u0000-\u001f\u007f-\u009f]/, 'no raw control characters');
      return true;
    },
  );
}

describe('real manifest shapes', () => {
  test('iMaterialist Furniture 2018 train: url lists, numeric ids, one label each', async () => {
    const { manifest, count, entries } = await read(competition('furniture-2018-train.json'));
    assert.equal(manifest.format, 'imaterialist');
    assert.equal(count, 3);
    assert.deepEqual(entries, [
      { position: 1, id: '1', urls: ['https://img13.360buyimg.com/imgzone/jfs/t2857/1/1234/56789/5a1b2c3dN12345678.jpg'], labels: ['5'] },
      { position: 2, id: '2', urls: ['https://www.example-furniture.com/images/products/2/large.jpg'], labels: ['38'] },
      { position: 3, id: '3', urls: ['http://img.example-mall.cn/upload/3.png', 'https://mirror.example.org/3.png'], labels: ['128'] },
    ]);
  });

  test('iMaterialist Furniture 2018 test: no annotations, no labels', async () => {
    const { count, entries } = await read(competition('furniture-2018-test.json'));
    assert.equal(count, 2);
    assert.deepEqual(entries, [
      { position: 1, id: '1', urls: ['https://img10.360buyimg.com/imgzone/jfs/t1/1/2/3/4/abcdef.jpg'], labels: [] },
      { position: 2, id: '2', urls: ['https://www.example-furniture.com/images/products/9/large.jpg'], labels: [] },
    ]);
  });

  test('iMaterialist Fashion 2018 (Kaggle): camelCase, string ids, url a string, multi-label', async () => {
    const { manifest, entries } = await read(competition('fashion-2018-train.json'));
    assert.equal(manifest.format, 'imaterialist');
    assert.deepEqual(entries, [
      { position: 1, id: '1', urls: ['https://contestimg.wish.com/api/webimage/570f35feb2f4b95d223aa9b1-large'], labels: ['95', '66', '137', '70', '20'] },
      { position: 2, id: '2', urls: ['https://contestimg.wish.com/api/webimage/5468f1c0d96b290ff8e5c805-large'], labels: ['36', '66', '44', '214', '105', '133'] },
    ]);
  });

  test('Google Landmarks 2018: CSV id,url,landmark_id; position is the line', async () => {
    const { manifest, count, entries } = await read(competition('landmarks-2018-train.csv'));
    assert.equal(manifest.format, 'csv');
    assert.equal(count, 2);
    assert.deepEqual(entries, [
      { position: 2, id: '97c0a12e07ae8dd5', urls: ['http://lh4.ggpht.com/-f8xYA5l4apw/RSziSQVaABI/AAAAAAAAB5c/SPx8lYjLqf0/s1600/IMG_1212.JPG'], labels: ['6347'] },
      { position: 3, id: '650c989dd3493748', urls: ['https://lh5.googleusercontent.com/-PUnMrX7oOyA/TBb5MZl4YFI/AAAAAAAAAc8/vwWrnh4TSz0/s1600/'], labels: ['12519'] },
    ]);
  });
});

describe('iMaterialist JSON', () => {
  test('annotations before images, several per image (deduplicated), ids as numbers and strings, unknown keys ignored', async () => {
    const { count, entries } = await read(fixture('annotations-first.json'));
    assert.equal(count, 4);
    assert.deepEqual(entries, [
      { position: 1, id: '1', urls: ['https://a.example/1.jpg', 'https://b.example/1.jpg'], labels: ['3', '4', '9'] },
      { position: 2, id: '2', urls: ['https://a.example/2.jpg'], labels: ['7'] },
      { position: 3, id: '3', urls: [], labels: [] },
      // A bad URL is data: the run decides what to do with it.
      { position: 4, id: '4', urls: ['ftp://a.example/4.jpg'], labels: [] },
    ]);
  });

  test('annotations after images join the same way; labels on the image itself come first', async () => {
    const path = await temp(
      'after.json',
      JSON.stringify({
        images: [
          { url: 'https://a/1', image_id: 10, label_id: 'own' },
          { url: ['https://a/2'], image_id: '20' },
        ],
        annotations: [
          { image_id: '10', label_id: 1 },
          { image_id: 20, label_id: ['2', 3] },
          { image_id: 20, label_id: 2 },
          { image_id: 10, label_id: 'own' },
        ],
      }),
    );
    const { entries } = await read(path);
    assert.deepEqual(entries, [
      { position: 1, id: '10', urls: ['https://a/1'], labels: ['own', '1'] },
      { position: 2, id: '20', urls: ['https://a/2'], labels: ['2', '3'] },
    ]);
  });

  test('ids that are not small integers: long numbers keep every digit, "007" is not 7', async () => {
    const path = await temp(
      'ids.json',
      '{"images": [{"url": "https://a/1", "image_id": 12345678901234567890}, {"url": "https://a/2", "image_id": "007"}, {"url": "https://a/3", "image_id": 7}],' +
        ' "annotations": [{"image_id": 12345678901234567890, "label_id": "big"}, {"image_id": 7, "label_id": "seven"}, {"image_id": "007", "label_id": "bond"}]}',
    );
    const { entries } = await read(path);
    assert.deepEqual(
      entries.map((entry) => [entry.id, entry.labels]),
      [
        ['12345678901234567890', ['big']],
        ['007', ['bond']],
        ['7', ['seven']],
      ],
    );
  });

  test('the label store: dense and sparse ids, merging after the dense part grows over an id', () => {
    const store = new LabelStore();
    store.add('1500000', ['a']); // too far ahead of the few ids stored yet: kept in the Map
    store.add('x-1', ['p', 'q']);
    store.add('99999999999', ['big']);
    for (let id = 0; id < 300_000; id++) store.add(String(id), [`l${id % 130}`]);
    store.add('1500000', ['b', 'a']); // now within reach of the array: moves there, merged
    store.add('7', ['l7']); // already there: no change
    store.add('7', ['extra', 'l7']);
    store.add('8', []);
    assert.deepEqual(store.get('1500000'), ['a', 'b']);
    assert.deepEqual(store.get('x-1'), ['p', 'q']);
    assert.deepEqual(store.get('99999999999'), ['big']);
    assert.deepEqual(store.get('0'), ['l0']);
    assert.deepEqual(store.get('7'), ['l7', 'extra']);
    assert.deepEqual(store.get('8'), ['l8']);
    assert.deepEqual(store.get('299999'), [`l${299999 % 130}`]);
    assert.deepEqual(store.get('300000'), []);
    assert.deepEqual(store.get('unknown'), []);
    assert.equal(store.size, 300_003);
    assert.equal(store.distinctLabels, 130 + 6); // a p q big b extra
  });

  test('a top-level array of image objects', async () => {
    const path = await temp('array.json', '[{"url": "https://a/1", "id": "x"}, {"urls": ["https://a/2"], "imageId": 2, "labels": ["a", "b"]}]');
    const { manifest, entries } = await read(path);
    assert.equal(manifest.format, 'imaterialist');
    assert.deepEqual(entries, [
      { position: 1, id: 'x', urls: ['https://a/1'], labels: [] },
      { position: 2, id: '2', urls: ['https://a/2'], labels: ['a', 'b'] },
    ]);
  });

  test('pretty-printed, BOM, tiny chunks with multi-byte characters split across them', async () => {
    const text = '\uFEFF' + JSON.stringify({ images: [{ url: ['https://ü.example/é.jpg'], image_id: 1 }], annotations: [{ image_id: 1, label_id: 'fauteuil à oreilles' }] }, null, 2);
    const source = memorySource('pretty.json', text, 1);
    const manifest = await openManifest(source);
    assert.deepEqual(await manifest.scan(), { entries: 1 });
    assert.deepEqual(await collect(manifest), [{ position: 1, id: '1', urls: ['https://ü.example/é.jpg'], labels: ['fauteuil à oreilles'] }]);
  });

  test('entries() without scan() scans first, so labels after the images are still joined', async () => {
    const manifest = await openManifest(fileSource(competition('furniture-2018-train.json')));
    const entries = await collect(manifest);
    assert.deepEqual(
      entries.map((entry) => entry.labels),
      [['5'], ['38'], ['128']],
    );
  });

  test('each pass opens the source afresh (the cloud reads S3 once per pass)', async () => {
    const source = memorySource('manifests/train.json', await (await import('node:fs/promises')).readFile(competition('furniture-2018-train.json')));
    const manifest = await openManifest(source);
    assert.equal(source.opens, 1, 'one short read to detect the format');
    await manifest.scan();
    await manifest.scan();
    assert.equal(source.opens, 2, 'scan() runs once');
    assert.equal((await collect(manifest)).length, 3);
    assert.equal(source.opens, 3);
  });
});

describe('gzip', () => {
  test('.json.gz and .csv.gz are read gunzipped', async () => {
    const json = await temp('train.json.gz', gzipSync(JSON.stringify({ images: [{ url: ['https://a/1.jpg'], image_id: 1 }], annotations: [{ image_id: 1, label_id: 4 }] })));
    assert.deepEqual((await read(json)).entries, [{ position: 1, id: '1', urls: ['https://a/1.jpg'], labels: ['4'] }]);
    const csv = await temp('landmarks.csv.gz', gzipSync('id,url,landmark_id\nabc,https://a/abc.jpg,12\n'));
    const { manifest, entries } = await read(csv);
    assert.equal(manifest.format, 'csv');
    assert.deepEqual(entries, [{ position: 2, id: 'abc', urls: ['https://a/abc.jpg'], labels: ['12'] }]);
  });

  test('gzip is recognised by its magic bytes, whatever the name, even in 1-byte chunks', async () => {
    const content = gzipSync('{"id": "a", "url": "https://a/a.jpg"}\n{"id": "b", "url": "https://a/b.jpg"}\n');
    const manifest = await openManifest(memorySource('items.jsonl', content, 1));
    assert.equal(manifest.format, 'jsonl');
    assert.deepEqual(
      (await collect(manifest)).map((entry) => entry.id),
      ['a', 'b'],
    );
    const unnamed = await openManifest(memorySource('manifest-without-extension', content, 3));
    assert.equal(unnamed.format, 'jsonl');
  });

  test('damaged gzip data is a ManifestError', async () => {
    const whole = gzipSync(JSON.stringify({ images: [{ url: 'https://a/1', image_id: 1 }] }));
    const path = await temp('cut.json.gz', whole.subarray(0, whole.length - 12));
    await rejectsAt(path, 'gzip data', /cut\.json\.gz: the gzip data is damaged or cut short/);
  });
});

describe('JSON Lines', () => {
  test('one object a line: key spellings, url string or list, scalar or list labels, blank lines skipped', async () => {
    const { manifest, count, entries } = await read(fixture('items.jsonl'));
    assert.equal(manifest.format, 'jsonl');
    assert.equal(count, 3);
    assert.deepEqual(entries, [
      { position: 1, id: 'x1', urls: ['https://j.example/x1.jpg'], labels: ['cat'] },
      { position: 3, id: '12345678901234567890', urls: ['https://j.example/big.jpg', 'https://m.example/big.jpg'], labels: ['cat', 'dog'] },
      { position: 4, id: '7', urls: [], labels: ['42'] },
    ]);
  });

  test('a .json file holding JSON Lines, CRLF line ends, is read as JSON Lines', async () => {
    const path = await temp('lines.json', '{"id": 1, "url": "https://a/1"}\r\n{"id": 2, "url": "https://a/2", "label": "x"}\r\n');
    const { manifest, entries } = await read(path);
    assert.equal(manifest.format, 'jsonl');
    assert.deepEqual(entries, [
      { position: 1, id: '1', urls: ['https://a/1'], labels: [] },
      { position: 2, id: '2', urls: ['https://a/2'], labels: ['x'] },
    ]);
  });

  test('custom key names through the column options', async () => {
    const path = await temp('custom.jsonl', '{"photo": "p1", "src": "https://a/p1", "tag": "t"}\n');
    const { entries } = await read(path, { idColumn: 'photo', urlColumn: 'src', labelColumn: 'tag' });
    assert.deepEqual(entries, [{ position: 1, id: 'p1', urls: ['https://a/p1'], labels: ['t'] }]);
  });
});

describe('CSV and TSV', () => {
  test('RFC 4180 quoting: commas, doubled quotes, a field over two lines; header names in any case', async () => {
    const { manifest, count, entries } = await read(fixture('quoted.csv'));
    assert.equal(manifest.format, 'csv');
    assert.equal(count, 4);
    assert.deepEqual(entries, [
      { position: 2, id: 'a1', urls: ['https://h.example/a1.jpg'], labels: ['chair'] },
      { position: 3, id: 'a2', urls: ['https://h.example/a2.jpg'], labels: ['sofa, large'] },
      { position: 4, id: 'a3', urls: ['https://h.example/a3.jpg'], labels: ['table'] },
      { position: 6, id: 'a4', urls: ['https://h.example/a4.jpg'], labels: [] },
    ]);
  });

  test('TSV with columns given by option; an empty URL cell is an entry without URL', async () => {
    const { manifest, entries } = await read(fixture('custom.tsv'), { urlColumn: 'src' });
    assert.equal(manifest.format, 'tsv');
    assert.deepEqual(entries, [
      { position: 2, id: 'k1', urls: ['https://t.example/1.png'], labels: ['lamp'] },
      { position: 3, id: 'k2', urls: [], labels: ['bed'] },
    ]);
  });

  test('a .csv whose header has tabs is TSV; no id column: the id is the line number', async () => {
    const path = await temp('tabs.csv', 'URL\tLabel\nhttps://a/1.jpg\tx,y\n\nhttps://a/2.jpg\t\n');
    const { manifest, entries } = await read(path);
    assert.equal(manifest.format, 'tsv');
    assert.deepEqual(entries, [
      { position: 2, id: '2', urls: ['https://a/1.jpg'], labels: ['x,y'] },
      { position: 4, id: '4', urls: ['https://a/2.jpg'], labels: [] },
    ]);
  });

  test('column options override the usual names', async () => {
    const path = await temp('two-urls.csv', 'id,url,thumb,label,class\n1,https://a/big.jpg,https://a/small.jpg,x,y\n');
    const { entries } = await read(path, { urlColumn: 'THUMB', labelColumn: 'class' });
    assert.deepEqual(entries, [{ position: 2, id: '1', urls: ['https://a/small.jpg'], labels: ['y'] }]);
  });
});

describe('URL lists', () => {
  test('one URL a line, comments and blank lines skipped, id = line number, bad lines are data', async () => {
    const { manifest, count, entries } = await read(fixture('list.txt'));
    assert.equal(manifest.format, 'urls');
    assert.equal(count, 4);
    assert.deepEqual(entries, [
      { position: 2, id: '2', urls: ['https://u.example/one.jpg'], labels: [] },
      { position: 4, id: '4', urls: ['https://u.example/two.jpg'], labels: [] },
      { position: 6, id: '6', urls: ['not a url'], labels: [] },
      { position: 7, id: '7', urls: ['https://u.example/three.jpg'], labels: [] },
    ]);
  });

  test('a last line without a newline is read too', async () => {
    const { entries } = await read(await temp('urls.txt', 'https://a/1\nhttps://a/2'));
    assert.deepEqual(
      entries.map((entry) => [entry.position, entry.urls[0]]),
      [
        [1, 'https://a/1'],
        [2, 'https://a/2'],
      ],
    );
  });
});

describe('format detection', () => {
  test('by content when the name says nothing', async () => {
    const cases: Array<[string, string]> = [
      ['{"images": [{"url": "https://a/1", "image_id": 1}]}', 'imaterialist'],
      ['[{"url": "https://a/1", "image_id": 1}]', 'imaterialist'],
      ['{"id": 1, "url": "https://a/1"}\n{"id": 2, "url": "https://a/2"}\n', 'jsonl'],
      ['# my list\nhttps://a/1\n', 'urls'],
      ['id,url\n1,https://a/1\n', 'csv'],
      ['id\turl\n1\thttps://a/1\n', 'tsv'],
      ['', 'urls'],
    ];
    for (const [content, format] of cases) {
      const manifest = await openManifest(memorySource('manifests/upload-0001', content));
      assert.equal(manifest.format, format, content);
    }
  });

  test('options.format wins over the name', async () => {
    const path = await temp('really-csv.txt', 'id,url\n1,https://a/1\n');
    const { manifest, entries } = await read(path, { format: 'csv' });
    assert.equal(manifest.format, 'csv');
    assert.deepEqual(entries, [{ position: 2, id: '1', urls: ['https://a/1'], labels: [] }]);
  });

  test('unrecognisable content is an unknown shape', async () => {
    await rejectsAt(memorySource('data.bin', 'hello world\nsecond line\n'), 'top level', /data\.bin: unknown manifest shape: expected \{"images": \[\.\.\.\]\} \(iMaterialist\), JSON Lines, CSV\/TSV with a header, or a list of URLs/);
  });
});

describe('malformed manifests: one ManifestError naming the position', () => {
  test('terminal escape sequences in the manifest and its name are shown escaped, not sent to the terminal', async () => {
    const header = 'id,\u001b]0;owned\u0007title\u001b[2J';
    await rejectsAt(
      memorySource('evil\u001b[31m.csv', `${header}\n1,https://a/1\n`),
      'line 1',
      /^evil\\x1b\[31m\.csv: line 1: no URL column in the header "id,\\x1b\]0;owned\\x07title\\x1b\[2J": expected one of /,
    );
  });

  test('truncated JSON', async () => {
    const path = await temp('trunc.json', '{"images": [{"url": ["https://a/1.jpg"], "image_id": 1}, {"url": ["https://a/2.jpg"], "image_');
    await rejectsAt(path, 'byte 93', /trunc\.json: byte 93: the JSON ends too early \(is the file cut short\?\)/);
  });

  test('invalid JSON in a pretty-printed document names the line and byte', async () => {
    const path = await temp('badchar.json', '{\n  "images": [\n    {"url": "x", "image_id": 1},\n    {"url": "y", image_id: 2}\n  ]\n}\n');
    await rejectsAt(path, 'line 4 (byte 66)', /badchar\.json: line 4 \(byte 66\): invalid JSON \(unexpected "i"\)/);
  });

  test('JSON Lines written to a .json file too long to sniff: data after the document', async () => {
    const path = await temp('two.json', '{"images": []} {"images": []}');
    await rejectsAt(path, 'byte 15', /byte 15: more data after the end of the JSON document/);
  });

  test('a JSON Lines line that is not JSON', async () => {
    const path = await temp('bad.jsonl', '{"id":1,"url":"https://a/1"}\n{"id":2,"url":"https://a/2"}\nnot json\n');
    await rejectsAt(path, 'line 3', /bad\.jsonl: line 3 is not valid JSON/);
  });

  test('a JSON Lines line that is not an object, or has no id', async () => {
    await rejectsAt(await temp('array-line.jsonl', '{"id":1}\n[1, 2]\n'), 'line 2', /line 2 is not a JSON object/);
    await rejectsAt(await temp('no-id.jsonl', '{"id":1}\n\n{"url":"https://a/3"}\n'), 'line 3', /line 3 has no id/);
  });

  test('unknown shapes: an object without images, images not a list, a bare string', async () => {
    const shape = /unknown manifest shape: expected \{"images": \[\.\.\.\]\} \(iMaterialist\), JSON Lines, CSV\/TSV with a header, or a list of URLs/;
    await rejectsAt(await temp('foo.json', '{"foo": 1}'), 'top level', shape);
    await rejectsAt(await temp('annotations-only.json', '{"annotations": [{"image_id": 1, "label_id": 2}]}'), 'top level', shape);
    await rejectsAt(await temp('string.json', '"hello"'), 'top level', shape);
    await rejectsAt(await temp('images-object.json', '{"images": {"1": "https://a/1"}}'), 'byte 11', /byte 11: "images" is not a list/);
    await rejectsAt(await temp('empty.json', ''), 'byte 0', /empty\.json: the manifest is empty/);
  });

  test('a JSON entry without id, an annotation without id, an entry that is not an object, a url of the wrong type', async () => {
    await rejectsAt(
      await temp('no-id.json', '{"images": [{"url": "https://a/1", "image_id": 1}, {"url": "https://a/2"}]}'),
      'entry 2 of images',
      /no-id\.json: entry 2 of images has no image_id/,
    );
    await rejectsAt(
      await temp('ann-no-id.json', '{"images": [{"url": "https://a/1", "image_id": 1}], "annotations": [{"image_id": 1, "label_id": 3}, {"label_id": 3}]}'),
      'entry 2 of annotations',
      /entry 2 of annotations has no image_id/,
    );
    await rejectsAt(await temp('not-object.json', '[{"url": "https://a/1", "id": "x"}, 5]'), 'entry 2', /entry 2 is not an object/);
    await rejectsAt(await temp('url-number.json', '{"images": [{"url": 5, "image_id": 1}]}'), 'entry 1 of images', /entry 1 of images has a url that is neither a string nor a list of strings/);
  });

  test('CSV without a URL column names the header and the option', async () => {
    const path = await temp('nourl.csv', 'id,link2,class\n1,https://a/1,x\n');
    await rejectsAt(path, 'line 1', /nourl\.csv: line 1: no URL column in the header "id,link2,class": expected one of url, urls, image_url, link, or name it with --url-column/);
    await rejectsAt(path, 'line 1', /no column "picture" \(the URL column given with --url-column\) in the header "id,link2,class"/, { urlColumn: 'picture' });
  });

  test('a CSV row with the wrong number of fields', async () => {
    const path = await temp('fields.csv', 'id,url,label\n1,https://a/1,x\n2,https://a/2\n');
    await rejectsAt(path, 'line 3', /fields\.csv: line 3 has 2 fields where the header has 3/);
    await rejectsAt(await temp('field.csv', 'id,url,label\n1,https://a/1,x\n2\n'), 'line 3', /field\.csv: line 3 has 1 field where the header has 3$/);
  });

  test('a CSV quote never closed, an empty id', async () => {
    await rejectsAt(await temp('open-quote.csv', 'id,url\n1,https://a/1\n2,"https://a/2\n3,https://a/3\n'), 'line 3', /line 3: a quoted field is never closed/);
    await rejectsAt(await temp('empty-id.csv', 'id,url\n1,https://a/1\n ,https://a/2\n'), 'line 3', /line 3 has an empty id/);
  });

  test('entries() without scan() reports malformed input too', async () => {
    // Small chunks: the entries before the bad line are handed out before the error.
    const manifest = await openManifest(memorySource('late.jsonl', '{"id":1,"url":"https://a/1"}\n{oops}\n', 8));
    const seen: string[] = [];
    await assert.rejects(
      async () => {
        for await (const entry of manifest.entries()) seen.push(entry.id);
      },
      (error: unknown) => error instanceof ManifestError && error.position === 'line 2',
    );
    assert.deepEqual(seen, ['1']);
  });

  test('binary content (an image, an archive, another encoding) is refused at its first bad byte, gunzipped first', async () => {
    const png = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 0x0d]);
    const notText = async (name: string, content: Buffer, offset: number, options?: ReadOptions): Promise<void> => {
      const path = await temp(name, content);
      await assert.rejects(openManifest(fileSource(path), options), (error: unknown) => {
        assert.ok(error instanceof ManifestError);
        assert.equal(error.message, `${path} is not a text manifest (binary data at byte ${offset})`);
        assert.equal(error.position, `byte ${offset}`);
        return true;
      });
    };
    await notText('photo.png', png, 0);
    await notText('forced.csv', png, 0, { format: 'csv' });
    await notText('nul.csv.gz', gzipSync('id,url\n1,https://a/1\0\n'), 20);
    // Latin-1 "é" (0xE9) without its continuation bytes; an overlong "/" (0xC0 0xAF) is never valid.
    await notText('latin1.csv', Buffer.from('id,url,label\n1,https://a/1,caf\xe9\n', 'latin1'), 30);
    await notText('overlong.txt', Buffer.from([0x68, 0xc0, 0xaf]), 1);
    // Valid UTF-8 of every length passes, also when a character is cut off by the 64 KiB head.
    const cut = Buffer.concat([Buffer.from('url\n'), Buffer.alloc((1 << 16) - 5, 'a'), Buffer.from('€\n')]);
    assert.equal((await openManifest(fileSource(await temp('cut.txt', cut)), { format: 'csv' })).format, 'csv');
    assert.equal((await openManifest(memorySource('utf8.txt', 'https://ü.example/€/𝄞.jpg\n'))).format, 'urls');
  });

  test('a missing file is an ordinary error from open(), not a ManifestError', async () => {
    await assert.rejects(openManifest(fileSource(join(dir, 'missing.json'))), (error: unknown) => (error as NodeJS.ErrnoException).code === 'ENOENT');
  });
});

describe('names and keys', () => {
  test('splitNameOf: the file name without extension and .gz', () => {
    assert.equal(splitNameOf('train.json'), 'train');
    assert.equal(splitNameOf('x/train.json.gz'), 'train');
    assert.equal(splitNameOf('urls.txt'), 'urls');
    assert.equal(splitNameOf('manifests/validation.jsonl'), 'validation');
    assert.equal(splitNameOf('C:\\data\\test.csv'), 'test');
    assert.equal(splitNameOf('list'), 'list');
    assert.equal(splitNameOf('dump.GZ'), 'dump');
  });

  test('idKey: canonical non-negative safe integers become numbers, everything else stays text', () => {
    assert.equal(idKey('0'), 0);
    assert.equal(idKey('194828'), 194828);
    assert.equal(idKey('9007199254740991'), 9007199254740991);
    assert.equal(idKey('9007199254740993'), '9007199254740993');
    assert.equal(idKey('007'), '007');
    assert.equal(idKey('-1'), '-1');
    assert.equal(idKey('1.5'), '1.5');
    assert.equal(idKey('1e3'), '1e3');
    assert.equal(idKey(' 1'), ' 1');
    assert.equal(idKey('97c0a12e07ae8dd5'), '97c0a12e07ae8dd5');
    assert.equal(idKey(''), '');
  });
});
