// Builds the native addon with cmake-js during `npm install` (placeholder until native/ lands).
import { existsSync } from 'node:fs';
if (!existsSync(new URL('../native/CMakeLists.txt', import.meta.url))) {
  console.log('kvtier: native/CMakeLists.txt not present yet, skipping the native build');
}
