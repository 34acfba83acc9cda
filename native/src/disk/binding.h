// N-API side of the disk tier's file I/O: class DiskIo, diskProbe, diskLock, diskUnlock.
#pragma once
#include <napi.h>

namespace kvtier {

void defineDiskIo(Napi::Env env, Napi::Object exports);

}  // namespace kvtier
