/** Test helpers; production code never imports this folder. */
export * from './event-loop-turns';
