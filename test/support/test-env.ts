/* eslint-disable no-restricted-properties -- the tests' own knobs, set by make or by hand; the service itself is configured through @app/config */

/** Log level of the apps the e2e tests start: E2E_LOG_LEVEL=info shows their logs. */
export const E2E_LOG_LEVEL = process.env.E2E_LOG_LEVEL ?? 'silent';

/** PATH for servers the tests spawn with an environment of their own. */
export const CHILD_PATH = process.env.PATH ?? '/usr/bin:/bin';

/** The image under test and the CA marker in its build secret, set by `make test-image`. */
export const IMAGE = process.env.IMAGE ?? 'localhost/qwen3-embed:cpu-test';
export const IMAGE_CA_MARKER = process.env.IMAGE_CA_MARKER;

/** The user's home, for children that run as a fresh login shell would. */
export const CHILD_HOME = process.env.HOME;

/**
 * The fuzz suite's stream: FUZZ_SEED picks another one (a failure prints the seed that reproduces it),
 * FUZZ_REQUESTS its length, FUZZ_ONLY=i,j replays those cases of it alone.
 */
export const FUZZ_SEED = Number(process.env.FUZZ_SEED ?? 20261202);
export const FUZZ_REQUESTS = Number(process.env.FUZZ_REQUESTS ?? 10_000);
export const FUZZ_ONLY = (process.env.FUZZ_ONLY ?? '').split(',').filter(Boolean).map(Number);
