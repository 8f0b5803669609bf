// Vitest setup file (both tiers): after each test file's own afterAll hooks,
// kill the child processes it left running and remove its temp dirs.
import { afterAll } from 'vitest';
import { releaseAll } from './cleanup.js';

afterAll(releaseAll, 60_000);
