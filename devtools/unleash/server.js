// Starts a local Unleash server (npm package unleash-server, v8) for the test-suite.
//
// Configuration (environment variables):
//   UNLEASH_DATABASE_URL  PostgreSQL URL of a database Unleash owns (required),
//                         e.g. postgresql://postgres@127.0.0.1:5432/unleash_test
//   UNLEASH_PORT          HTTP port (default 4242), bound to 127.0.0.1
//   UNLEASH_HOST          listen address (default 127.0.0.1)
//   UNLEASH_ADMIN_TOKEN   admin API token to seed, format "*:*.<secret>"
//   UNLEASH_CLIENT_TOKEN  backend (client) API token to seed, format
//                         "*:development.<secret>" (all projects, environment development)
//   UNLEASH_LOG_LEVEL     default "warn"
//   UNLEASH_DATABASE_SSL  "true" to connect with SSL (default: no SSL)
//
// Seeded tokens are only inserted when the database has no API tokens yet
// (Unleash's own rule), so use a fresh database per run.

// unleash-server computes several defaults (version check, telemetry, DB SSL)
// from process.env at import time, so they are set *before* importing it.
process.env.CHECK_VERSION = 'false';
process.env.SEND_TELEMETRY = 'false';
process.env.SCARF_ANALYTICS = 'false';
process.env.DATABASE_SSL = process.env.UNLEASH_DATABASE_SSL === 'true' ? '{}' : 'false';
// The stock env-var token loaders must not add anything behind our back.
delete process.env.INIT_ADMIN_API_TOKENS;
delete process.env.INIT_BACKEND_API_TOKENS;
delete process.env.INIT_CLIENT_API_TOKENS;
delete process.env.INIT_FRONTEND_API_TOKENS;
delete process.env.DATABASE_URL;
delete process.env.BASE_URI_PATH;
if (!process.env.TZ) process.env.TZ = 'UTC';

const { start, ApiTokenType, LogLevel } = await import('unleash-server');

function requireEnv(name) {
    const value = process.env[name];
    if (!value) {
        console.error(`server.js: environment variable ${name} is required`);
        process.exit(2);
    }
    return value;
}

const databaseUrl = requireEnv('UNLEASH_DATABASE_URL');
const adminToken = requireEnv('UNLEASH_ADMIN_TOKEN');
const clientToken = requireEnv('UNLEASH_CLIENT_TOKEN');
const port = Number.parseInt(process.env.UNLEASH_PORT || '4242', 10);
const host = process.env.UNLEASH_HOST || '127.0.0.1';
const logLevel = LogLevel[process.env.UNLEASH_LOG_LEVEL || 'warn'] || LogLevel.warn;

const tokenEnvironment = (secret) => {
    // "<project>:<environment>.<random>" -> environment
    const [, rest = ''] = secret.split(':');
    return rest.split('.')[0];
};

const instance = await start({
    databaseUrl,
    logLevel,
    server: { host, port, enableRequestLogger: false },
    versionCheck: { enable: false, url: '' },
    telemetry: false,
    authentication: {
        type: 'open-source',
        enableApiToken: true,
        initApiTokens: [
            {
                environment: '*',
                projects: ['*'],
                secret: adminToken,
                type: ApiTokenType.ADMIN,
                tokenName: 'test-admin',
            },
            {
                environment: tokenEnvironment(clientToken) || 'development',
                projects: ['*'],
                secret: clientToken,
                type: ApiTokenType.BACKEND,
                tokenName: 'test-client',
            },
        ],
    },
});

const shutdown = async (signal) => {
    try {
        await instance.stop();
    } catch (err) {
        console.error(`server.js: error while stopping on ${signal}`, err);
    }
    process.exit(0);
};
process.once('SIGTERM', () => shutdown('SIGTERM'));
process.once('SIGINT', () => shutdown('SIGINT'));
