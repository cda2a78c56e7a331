// Progress of a run: a bar on a terminal, plain periodic lines otherwise (logs, CI, pipes).

import cliProgress from 'cli-progress';
import type { Tally } from '../engine/summary.ts';
import { formatBytes, formatDuration } from '../engine/summary.ts';

// Nothing is done per image: the bar and the lines read the tally on a timer (a bar update per
// image meant a clock read and ETA bookkeeping a million times over).
export interface Progress {
  /** Ends the bar on a line of its own; anything written after it starts on a clean line. Idempotent. */
  stop(): void;
}

export interface ProgressState {
  done: number;
  total: number;
  fetched: number;
  skipped: number;
  failed: number;
  bytes: number;
  /** Images per second. */
  rate: number;
  /** Seconds left; not finite when unknown. */
  eta: number;
}

const BAR = 24;
const MIN_BAR = 10;

/**
 * The bar's line for a terminal `columns` wide. Rate and ETA always show: when room runs out the
 * bar shrinks, then goes, then the size, then the per-status counts (the bar may come back in the
 * room they leave), then the done/total count.
 */
export function progressLine(s: ProgressState, columns: number): string {
  const room = columns - 1; // writing the last column makes some terminals wrap
  const percent = `${s.total > 0 ? Math.floor((100 * s.done) / s.total) : 100}%`;
  const done = `${s.done}/${s.total}`;
  const counts = `fetched ${s.fetched}  skipped ${s.skipped}  failed ${s.failed}`;
  const rate = `${s.rate.toFixed(0)}/s`;
  const eta = `ETA ${Number.isFinite(s.eta) ? formatDuration(s.eta) : '-'}`;
  const layouts = [
    [done, counts, formatBytes(s.bytes), rate, eta],
    [done, counts, rate, eta],
    [done, rate, eta],
    [rate, eta],
  ];
  let line = '';
  for (const parts of layouts) {
    line = ` ${percent} ${parts.join(' | ')}`;
    const bar = Math.min(BAR, room - line.length - 1);
    if (bar >= MIN_BAR) {
      const full = Math.round((bar * Math.min(s.done, s.total)) / Math.max(1, s.total));
      line = ` ${'\u2588'.repeat(full)}${'\u2591'.repeat(bar - full)}${line}`;
    }
    if (line.length <= room) return line;
  }
  return line;
}

export function startProgress(total: number, tally: Tally, stream: NodeJS.WriteStream, intervalMs = 10_000): Progress {
  const started = Date.now();
  const state = (): ProgressState => {
    const rate = tally.done / Math.max(0.001, (Date.now() - started) / 1000);
    const { done, fetched, skipped, failed, bytes } = tally;
    return { done, total, fetched, skipped, failed, bytes, rate, eta: (total - done) / rate };
  };
  if (stream.isTTY) {
    const bar = new cliProgress.SingleBar({
      stream,
      // maxWidth is the terminal's width at each redraw, so a resized window is followed.
      format: (_options, params) => progressLine(state(), params.maxWidth),
      hideCursor: true,
      fps: 5,
    });
    // The bar's own timer redraws at `fps`, and each line is formatted from the tally: its value
    // is never needed.
    bar.start(total, 0);
    return { stop: () => bar.stop() };
  }
  const line = (): void => {
    const s = state();
    const eta = Number.isFinite(s.eta) && s.eta > 0 ? `, ETA ${formatDuration(s.eta)}` : '';
    const percent = total > 0 ? ((100 * s.done) / total).toFixed(1) : '100.0';
    stream.write(
      `progress: ${s.done}/${total} (${percent}%), fetched ${s.fetched}, skipped ${s.skipped}, failed ${s.failed}, ` +
        `${formatBytes(s.bytes)}, ${s.rate.toFixed(0)} images/s${eta}\n`,
    );
  };
  const timer = setInterval(line, intervalMs);
  timer.unref();
  return { stop: () => clearInterval(timer) };
}
