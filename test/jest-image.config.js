/** The container image test (make test-image): needs podman and a built image, so not in test:e2e. */
const e2e = require('./jest-e2e.config');

module.exports = {
  ...e2e,
  testRegex: 'image\\.e2e-spec\\.ts$',
  testPathIgnorePatterns: ['/node_modules/'],
  testTimeout: 300000,
};
