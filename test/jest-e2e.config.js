/** End-to-end tests: the real app on the real addon and the demo model. */
const { pathsToModuleNameMapper } = require('ts-jest');
const { compilerOptions } = require('../tsconfig.json');

module.exports = {
  rootDir: '..',
  roots: ['<rootDir>/test'],
  testRegex: '\\.e2e-spec\\.ts$',
  // The image test builds on podman and runs from `make test-image` (test/jest-image.config.js).
  testPathIgnorePatterns: ['/node_modules/', 'image\\.e2e-spec\\.ts$'],
  transform: { '^.+\\.ts$': 'ts-jest' },
  moduleFileExtensions: ['ts', 'js', 'json'],
  moduleNameMapper: pathsToModuleNameMapper(compilerOptions.paths, { prefix: '<rootDir>/' }),
  testEnvironment: 'node',
  testTimeout: 120000,
};
