// TLS for the native Valkey connections, on Node's own OpenSSL.
//
// Why not glide, or a second OpenSSL: the addon is loaded into node, and node
// exports the OpenSSL it is built with. The addon compiles against the copy
// of its headers that ships with node (include/node/openssl) and links no
// libssl of its own, so its symbols resolve to node's at load time: one
// OpenSSL in the process, no clash of two versions' globals.
//
// A TlsContext is built once per link from the tier's settings (CA PEM or
// the system store, or no verification) and shared by its connections; each
// connection owns a TlsSession over its non-blocking socket.
#pragma once
#include <sys/types.h>
#include <sys/uio.h>

#include <memory>
#include <string>

typedef struct ssl_ctx_st SSL_CTX;
typedef struct ssl_st SSL;

namespace kvtier {

struct TlsOptions {
  bool enabled = false;
  std::string caPem;       // trusted roots; empty: the system's store
  bool insecure = false;   // no certificate or name check
};

class TlsContext {
 public:
  // nullptr + *error when the options cannot be used (a CA with no certificate).
  static std::shared_ptr<TlsContext> create(const TlsOptions& options, std::string* error);
  ~TlsContext();
  SSL_CTX* ctx() const { return ctx_; }
  bool insecure() const { return insecure_; }

 private:
  TlsContext(SSL_CTX* ctx, bool insecure) : ctx_(ctx), insecure_(insecure) {}
  SSL_CTX* ctx_;
  bool insecure_;
};

// What an I/O call on a non-blocking TLS socket needs before it can go on.
enum class TlsWant { None, Read, Write };

class TlsSession {
 public:
  // A session for the connected socket fd, checking the server's certificate
  // against `host` (an IP literal or a name, also sent as SNI).
  static std::unique_ptr<TlsSession> create(const std::shared_ptr<TlsContext>& ctx, int fd, const std::string& host,
                                            std::string* error);
  ~TlsSession();
  // One step of the handshake: 1 done, 0 *want says what to wait for, -1 *error.
  int handshake(TlsWant* want, std::string* error);
  // Like read()/writev(): > 0 bytes, 0 the peer closed (read), -1 with *want
  // set (wait and retry with the same arguments) or with *error.
  ssize_t read(void* dest, size_t n, TlsWant* want, std::string* error);
  ssize_t writev(const struct iovec* iov, int count, TlsWant* want, std::string* error);

 private:
  explicit TlsSession(SSL* ssl, std::shared_ptr<TlsContext> ctx) : ssl_(ssl), ctx_(std::move(ctx)) {}
  ssize_t result(int rc, size_t done, TlsWant* want, std::string* error, const char* what);
  SSL* ssl_;
  std::shared_ptr<TlsContext> ctx_;  // outlives the session
};

}  // namespace kvtier
