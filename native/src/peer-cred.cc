// SO_PEERCRED (see peer-cred.h).
#ifndef _GNU_SOURCE
#define _GNU_SOURCE  // struct ucred
#endif
#include "peer-cred.h"

#include <sys/socket.h>

#include <cerrno>
#include <cstring>

namespace kvtier {

bool peerCredentials(int fd, PeerCredentials* out, std::string* error) {
  struct ucred cred;
  socklen_t len = sizeof(cred);
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
    *error = std::string("getsockopt(SO_PEERCRED) on fd ") + std::to_string(fd) + " failed: " + std::strerror(errno);
    return false;
  }
  out->pid = cred.pid;
  out->uid = cred.uid;
  out->gid = cred.gid;
  return true;
}

}  // namespace kvtier
