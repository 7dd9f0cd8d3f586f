/** Test helpers for unit tests; production code never imports this folder. */
export * from './family-checkpoint';
