// Copies that survive a region file being truncated under them. fstat before
// a batch (RegionMapping::checkLive) catches a file that already shrank; this
// closes the remaining window (truncate between the check and the memcpy): a
// SIGBUS raised inside guardedCopy jumps back out and the batch fails with a
// coded error. A SIGBUS anywhere else is handed to the previous disposition,
// so a real bug still crashes loudly.
#pragma once

namespace kvtier {

void installSigbusGuard();
// Calls step(ctx) until it returns false. Returns false when a SIGBUS hit one
// of those calls (the step's copy is abandoned midway), true otherwise.
bool runGuarded(bool (*step)(void* ctx), void* ctx);

}  // namespace kvtier
