// The pause between attempts of the user's side of the cloud (downloads, shard ranges, bodies that
// broke off), in a module of its own so that commands reading a few objects need not load undici.

/**
 * The pause before the attempt after `attempt` failed without bringing a byte: doubling from 1 s to
 * 16 s, half of it jittered; up to ~1 minute in all, as a link across the border drops for tens of
 * seconds at times.
 */
export const retryPauseMs = (attempt: number): number => Math.min(16_000, 500 * 2 ** attempt) * (0.5 + Math.random() / 2);
