// SIGBUS guard (see sigbus-guard.h). One process-wide handler, a thread-local
// jump target set only while a guarded loop runs on that thread.
#include "sigbus-guard.h"

#include <csetjmp>
#include <csignal>
#include <mutex>

namespace kvtier {

static thread_local sigjmp_buf* tJump = nullptr;
static struct sigaction gPrevious;
static std::once_flag gInstalled;

static void onSigbus(int, siginfo_t*, void*) {
  sigjmp_buf* target = tJump;
  if (target != nullptr) {
    tJump = nullptr;
    siglongjmp(*target, 1);
  }
  // Not a guarded copy: restore what was there; the faulting instruction
  // runs again and the previous disposition (normally a core dump) applies.
  sigaction(SIGBUS, &gPrevious, nullptr);
}

void installSigbusGuard() {
  std::call_once(gInstalled, [] {
    struct sigaction sa = {};
    sa.sa_sigaction = onSigbus;
    sa.sa_flags = SA_SIGINFO | SA_NODEFER;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGBUS, &sa, &gPrevious);
  });
}

bool runGuarded(bool (*step)(void* ctx), void* ctx) {
  sigjmp_buf jump;
  if (sigsetjmp(jump, 1) != 0) return false;
  tJump = &jump;
  while (step(ctx)) {
  }
  tJump = nullptr;
  return true;
}

}  // namespace kvtier
