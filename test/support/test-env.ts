/* eslint-disable no-restricted-properties -- the tests' own knobs, set by make or by hand; the service itself is configured through @app/config */

/** Log level of the apps the e2e tests start: E2E_LOG_LEVEL=info shows their logs. */
export const E2E_LOG_LEVEL = process.env.E2E_LOG_LEVEL ?? 'silent';

/** PATH for servers the tests spawn with an environment of their own. */
export const CHILD_PATH = process.env.PATH ?? '/usr/bin:/bin';

/** The image under test and the CA marker in its build secret, set by `make test-image`. */
export const IMAGE = process.env.IMAGE ?? 'localhost/qwen3-embed:cpu-test';
export const IMAGE_CA_MARKER = process.env.IMAGE_CA_MARKER;
