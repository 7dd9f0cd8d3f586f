export * from './checkpoint-file-filter';
export * from './hub-cache';
export * from './hub-download.error';
export * from './hub-model-downloader';
