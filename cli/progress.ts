// Progress of a run: a bar on a terminal, plain periodic lines otherwise (logs, CI, pipes).

import cliProgress from 'cli-progress';
import type { Tally } from '../functions/core/summary.ts';
import { formatBytes, formatDuration } from '../functions/core/summary.ts';

export interface Progress {
  /** Call after each record; cheap. */
  tick(): void;
  stop(): void;
}

export function startProgress(total: number, tally: Tally, stream: NodeJS.WriteStream, intervalMs = 10_000): Progress {
  const started = Date.now();
  if (stream.isTTY) {
    const bar = new cliProgress.SingleBar(
      {
        stream,
        format: ' {bar} {percentage}% | {value}/{total} | fetched {fetched}  skipped {skipped}  failed {failed} | {rate}/s | {size} | ETA {eta_formatted}',
        barsize: 24,
        hideCursor: true,
        etaBuffer: 200,
        fps: 5,
      },
      cliProgress.Presets.shades_classic,
    );
    const payload = () => ({
      fetched: tally.fetched,
      skipped: tally.skipped,
      failed: tally.failed,
      size: formatBytes(tally.bytes),
      rate: (tally.done / Math.max(0.001, (Date.now() - started) / 1000)).toFixed(0),
    });
    bar.start(total, 0, payload());
    return {
      tick: () => bar.update(tally.done, payload()),
      stop: () => bar.stop(),
    };
  }
  const line = (): void => {
    const elapsed = (Date.now() - started) / 1000;
    const rate = tally.done / Math.max(0.001, elapsed);
    const left = total - tally.done;
    const eta = rate > 0 && left > 0 ? `, ETA ${formatDuration(left / rate)}` : '';
    const percent = total > 0 ? ((100 * tally.done) / total).toFixed(1) : '100.0';
    stream.write(
      `progress: ${tally.done}/${total} (${percent}%), fetched ${tally.fetched}, skipped ${tally.skipped}, failed ${tally.failed}, ` +
        `${formatBytes(tally.bytes)}, ${rate.toFixed(0)} images/s${eta}\n`,
    );
  };
  const timer = setInterval(line, intervalMs);
  timer.unref();
  return { tick: () => {}, stop: () => clearInterval(timer) };
}
