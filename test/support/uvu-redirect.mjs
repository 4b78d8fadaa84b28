// `node --import ./test/support/uvu-redirect.mjs`: route test files' 'uvu'
// imports through the tracking wrapper (see uvu-resolve.mjs).
import { register } from 'node:module';

register('./uvu-resolve.mjs', import.meta.url);
