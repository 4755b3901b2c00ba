import { ConfigError, loadConfig } from './config.js';
import { persistDevelopmentKeys } from './dev-keys.js';
import { createLogger } from './logger.js';
import { createPostbox } from './postbox.js';
import { RedisSetupError } from './queue/redis-checks.js';
import { chooseRedis } from './redis-choice.js';

/* Wiring only: config → Redis → node → listen; SIGTERM/SIGINT close everything. */

async function main(): Promise<void> {
  let loaded;
  try {
    loaded = loadConfig(process.env);
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`postbox: ${err.message}\n`);
      process.exit(1);
    }
    throw err;
  }
  const { generated } = loaded;
  // Production refuses to start without the keys; in development they live in DATA_DIR.
  const { config, created } = persistDevelopmentKeys(loaded.config, generated);
  // A developer's terminal gets readable lines; anything else (a pipe, a collector) JSON.
  const logger = await createLogger({ level: config.LOG_LEVEL, pretty: config.NODE_ENV === 'development' && process.stdout.isTTY });
  process.on('unhandledRejection', (err) => logger.error({ err }, 'unhandled rejection'));

  if (generated.length > 0) {
    // Printed at every start, so a developer can call the API without looking for the file.
    const keys = Object.fromEntries(generated.map((name) => [name, config[name]]));
    const where = `${config.DATA_DIR}/dev-keys.json`;
    logger.warn(
      { ...keys },
      created ? `development keys generated and kept in ${where}` : `development keys from ${where}`,
    );
  }

  if (config.REDIS_CLUSTER_NODES !== undefined) {
    logger.info({ seeds: config.REDIS_CLUSTER_NODES }, 'using the Redis Cluster of REDIS_CLUSTER_NODES');
  }
  const { url: redisUrl, embedded, report: redisReport } = await chooseRedis(config, logger);

  let node;
  let url;
  try {
    node = await createPostbox(config, { redisUrl, logger, defaultMetrics: true, redisReport });
    url = await node.listen(config.PORT, config.HOST);
  } catch (err) {
    // Leave no private redis-server behind when start-up fails (port taken, ...).
    await node?.close();
    await embedded?.stop();
    throw err;
  }
  const everywhere = /^(0\.0\.0\.0|\[::\]):/.test(node.boundAddress);
  const pages = [...(config.DEMO ? [`demo ${url}/demo`] : []), `admin ${url}/admin`];
  logger.info(
    { listen: { url, bound: node.boundAddress, demo: config.DEMO ? `${url}/demo` : undefined, admin: `${url}/admin` } },
    `postbox listening on ${node.boundAddress}${everywhere ? ' (every interface)' : ''}: ${url} (${pages.join(', ')})`,
  );

  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'shutting down');
    // Unref'd: it never keeps the process alive, it only cuts a close that hangs.
    const force = setTimeout(() => {
      logger.error(
        { signal, shutdownTimeoutMs: config.SHUTDOWN_TIMEOUT_MS },
        `shutdown took longer than SHUTDOWN_TIMEOUT_MS (${config.SHUTDOWN_TIMEOUT_MS} ms); exiting`,
      );
      // Its SIGTERM goes now (not waited for): no private redis-server is left serving DATA_DIR.
      void embedded?.stop();
      logger.flush();
      process.exit(1);
    }, config.SHUTDOWN_TIMEOUT_MS);
    force.unref();
    await node.close();
    await embedded?.stop();
    logger.info('stopped');
    logger.flush();
    process.exit(0);
  };
  process.on('SIGTERM', () => void stop('SIGTERM'));
  process.on('SIGINT', () => void stop('SIGINT'));
}

main().catch((err: unknown) => {
  if (err instanceof ConfigError || err instanceof RedisSetupError) {
    // E.g. a TLS file that cannot be read: one line, like the configuration's own errors.
    process.stderr.write(`postbox: ${err.message}\n`);
    process.exit(1);
  }
  process.stderr.write(`postbox: failed to start: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
});
