/** Test doubles for unit tests; production code never imports this folder. */
export * from './fake-engine';
