// A terminal in memory: a TTY stream to hand a command as its stderr, and the screen it leaves.
// It follows what a progress bar sends (carriage returns, column moves, line clears, cursor
// save and restore), so a test can read the lines a user would see.

export class FakeTerminal {
  readonly isTTY = true;
  readonly columns: number;
  readonly rows: string[][] = [[]];
  #row = 0;
  #col = 0;
  #saved = { row: 0, col: 0 };

  constructor(columns: number) {
    this.columns = columns;
  }

  /** The screen's lines, trailing blanks trimmed. */
  screen(): string[] {
    return this.rows.map((cells) => cells.join('').trimEnd());
  }

  write(chunk: string | Uint8Array, ...rest: unknown[]): boolean {
    const text = typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString('utf8');
    for (let i = 0; i < text.length; i++) {
      const c = text[i]!;
      if (c === '\x1b') {
        i = this.#escape(text, i);
      } else if (c === '\r') {
        this.#col = 0;
      } else if (c === '\n') {
        this.#moveTo(this.#row + 1, 0);
      } else {
        // Wrapping is off while a bar is shown; past the edge the last column is overwritten.
        this.#line()[Math.min(this.#col, this.columns - 1)] = c;
        this.#col++;
      }
    }
    const callback = rest.find((arg) => typeof arg === 'function') as (() => void) | undefined;
    callback?.();
    return true;
  }

  /** Handles the escape sequence at `start`; returns the index of its last character. */
  #escape(text: string, start: number): number {
    const next = text[start + 1];
    if (next === '7') this.#saved = { row: this.#row, col: this.#col };
    if (next === '8') this.#moveTo(this.#saved.row, this.#saved.col);
    if (next !== '[') return start + 1;
    const match = /^\[(\??)(\d*)([A-Za-z])/.exec(text.slice(start + 1))!;
    const n = match[2] === '' ? undefined : Number(match[2]);
    const line = this.#line();
    switch (match[1] === '?' ? '' : match[3]) {
      case 'G':
        this.#col = (n ?? 1) - 1;
        break;
      case 'A':
        this.#moveTo(Math.max(0, this.#row - (n ?? 1)), this.#col);
        break;
      case 'B':
        this.#moveTo(this.#row + (n ?? 1), this.#col);
        break;
      case 'K':
        if ((n ?? 0) === 0) line.splice(this.#col);
        else if (n === 1) line.fill(' ', 0, this.#col + 1);
        else line.length = 0;
        break;
    }
    return start + match[0].length;
  }

  #moveTo(row: number, col: number): void {
    this.#row = row;
    this.#col = col;
    while (this.rows.length <= row) this.rows.push([]);
  }

  #line(): string[] {
    const line = this.rows[this.#row]!;
    while (line.length < this.#col) line.push(' ');
    return line;
  }
}
