// Public surface of the chunk cache (docs/chunk-cache.md).
export { ChunkCache, type ChunkCacheOptions, type ChunkCacheStats, type Fetcher } from './chunk-cache.js';
export { ReadAhead, type ReadAheadOptions, type BlockResolver, type PrefetchSource } from './read-ahead.js';
export { CACHE_FORMAT_VERSION } from './format.js';
