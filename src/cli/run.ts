import { ConfigError, loadConfig, type ResolvedConfig } from '../config/load';
import { createLogger, type Logger } from '../log';
import { Daemon } from '../daemon/daemon';

/** Exit status when the configuration is invalid (EX_CONFIG of sysexits.h). */
export const EXIT_CONFIG = 78;

/** Loads the configuration or prints every problem and returns null. */
export function loadConfigOrReport(configFile: string | undefined): ResolvedConfig | null {
  try {
    return loadConfig({ file: configFile });
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`bitnet-edge: ${err.message}\n`);
      return null;
    }
    throw err;
  }
}

/**
 * Runs the daemon until SIGTERM or SIGINT, then stops it within the configured deadline. A signal
 * received during the start stops the daemon as soon as the start completes.
 * Resolves with the process exit status.
 */
export async function runDaemon(options: { configFile?: string }): Promise<number> {
  const config = loadConfigOrReport(options.configFile);
  if (!config) return EXIT_CONFIG;

  // Without a handler, Node's default action ends the process on a signal received during the start
  // and skips the clean stop. So the handlers go in first, and such a signal acts once the start ends.
  const stopSignal = waitForStopSignal();
  const logger = createLogger(config.logLevel);
  if (config.envOverrides.length > 0) logger.info({ variables: config.envOverrides }, 'configuration overridden by environment');

  const daemon = new Daemon(config, logger);
  try {
    await daemon.start();
  } catch (err) {
    logger.fatal({ err }, 'daemon failed to start');
    return 1;
  }

  const signal = await stopSignal;
  return stopWithDeadline(daemon, signal, config.shutdownDeadlineMs, logger);
}

function waitForStopSignal(): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    const onSignal = (signal: NodeJS.Signals): void => {
      process.off('SIGTERM', onSignal);
      process.off('SIGINT', onSignal);
      resolve(signal);
    };
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
  });
}

async function stopWithDeadline(daemon: Daemon, signal: NodeJS.Signals, deadlineMs: number, logger: Logger): Promise<number> {
  logger.info({ signal, deadlineMs }, 'stopping');
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<'timeout'>((resolve) => {
    timer = setTimeout(() => resolve('timeout'), deadlineMs);
  });

  const outcome = await Promise.race([daemon.stop().then(() => 'stopped' as const), deadline]);
  clearTimeout(timer);
  if (outcome === 'timeout') {
    // Jobs still running stay marked running in SQLite and are requeued at the next start.
    logger.error({ deadlineMs }, 'stop deadline passed; exiting with work in flight');
    process.exit(1);
  }
  logger.info('stopped');
  return 0;
}
