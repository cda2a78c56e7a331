// Parsers for option values, each failing with a message that names the option.

import { InvalidArgumentError } from 'commander';

export function positiveInteger(name: string, max = 1_000_000): (value: string) => number {
  return (value) => {
    const n = Number(value);
    if (!/^\s*\d+\s*$/.test(value) || !Number.isSafeInteger(n) || n < 1 || n > max) {
      throw new InvalidArgumentError(`${name} takes a whole number from 1 to ${max}, not "${value}".`);
    }
    return n;
  };
}

export function nonNegativeInteger(name: string, max: number): (value: string) => number {
  return (value) => {
    const n = Number(value);
    if (!/^\s*\d+\s*$/.test(value) || n > max) throw new InvalidArgumentError(`${name} takes a whole number from 0 to ${max}, not "${value}".`);
    return n;
  };
}

/** 0 (off) or at least 2: one URL alone cannot share its bytes with another. */
export function placeholderThreshold(name: string): (value: string) => number {
  return (value) => {
    const n = Number(value);
    if (!/^\s*\d+\s*$/.test(value) || n === 1 || n > 1_000_000) throw new InvalidArgumentError(`${name} takes 0 (no check) or a whole number from 2 to 1000000, not "${value}".`);
    return n;
  };
}

export function seconds(name: string): (value: string) => number {
  return (value) => {
    const n = Number(value);
    if (value.trim() === '' || !Number.isFinite(n) || n <= 0 || n > 86_400) {
      throw new InvalidArgumentError(`${name} takes a number of seconds greater than 0, not "${value}".`);
    }
    return n;
  };
}

// 1024-based whatever the spelling: people write MB and mean what their tools call MB.
const SIZE_UNITS: Record<string, number> = {
  '': 1, b: 1,
  k: 1024, kb: 1024, kib: 1024,
  m: 1024 ** 2, mb: 1024 ** 2, mib: 1024 ** 2,
  g: 1024 ** 3, gb: 1024 ** 3, gib: 1024 ** 3,
};

/** A byte size such as 50MB (= 50MiB), 512k or 1048576. */
export function byteSize(name: string): (value: string) => number {
  return (value) => {
    const match = /^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$/i.exec(value);
    const unit = match ? SIZE_UNITS[match[2]!.toLowerCase()] : undefined;
    if (!match || unit === undefined || Number(match[1]) <= 0) {
      throw new InvalidArgumentError(`${name} takes a size such as 50MiB, 512KiB or 1048576, not "${value}".`);
    }
    return Math.floor(Number(match[1]) * unit);
  };
}

export function oneOf<T extends string>(name: string, choices: readonly T[]): (value: string) => T {
  return (value) => {
    if (!(choices as readonly string[]).includes(value)) {
      throw new InvalidArgumentError(`${name} takes one of ${choices.join(', ')}, not "${value}".`);
    }
    return value as T;
  };
}

/** A number above 0 and at most `max`, e.g. a link speed. */
export function positiveNumber(name: string, max = 1_000_000): (value: string) => number {
  return (value) => {
    const n = Number(value);
    if (value.trim() === '' || !Number.isFinite(n) || n <= 0 || n > max) throw new InvalidArgumentError(`${name} takes a number greater than 0 and at most ${max}, not "${value}".`);
    return n;
  };
}

/** A percentage above 0 and at most 100. */
export function percentage(name: string): (value: string) => number {
  return positiveNumber(name, 100);
}

/** A fraction above 0 and at most 1. */
export function ratio(name: string): (value: string) => number {
  return positiveNumber(name, 1);
}
