// The credentials of the process at the other end of a connected Unix
// socket (SO_PEERCRED): the kernel records them at connect(), so a client
// cannot claim another uid. RegisterKv checks a region file's owner against
// this uid; the daemon reads it once per connection, at accept.
#pragma once
#include <cstdint>
#include <string>

namespace kvtier {

struct PeerCredentials {
  int32_t pid = 0;
  uint32_t uid = 0;
  uint32_t gid = 0;
};

// False (and `error` filled) when fd is not a connected Unix socket.
bool peerCredentials(int fd, PeerCredentials* out, std::string* error);

}  // namespace kvtier
