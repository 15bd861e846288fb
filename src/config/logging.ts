import { LEVELS, type Level } from '../log.js';
import type { Config } from './loader.js';

/** [logging] log_level, which rport.conf and rportd.conf share. */
export function logLevelOf(c: Config): Level {
  const level = c.get<string>('logging', 'log_level');
  if (!(LEVELS as readonly string[]).includes(level))
    c.fail('logging', 'log_level', `is not one of ${LEVELS.join(', ')}`);
  return level as Level;
}
