// TLS sessions on Node's OpenSSL (see tls.h).
#include "tls.h"

#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace kvtier {
namespace {

// The oldest error on this thread's OpenSSL queue, as text; the queue is cleared.
std::string opensslError(const char* what) {
  unsigned long e = ERR_get_error();
  std::string out = what;
  if (e != 0) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    out += ": ";
    out += buf;
  }
  ERR_clear_error();
  return out;
}

bool isIpLiteral(const std::string& host) {
  unsigned char buf[sizeof(struct in6_addr)];
  return inet_pton(AF_INET, host.c_str(), buf) == 1 || inet_pton(AF_INET6, host.c_str(), buf) == 1;
}

// Where Debian and most distributions keep the system's trusted roots; node's
// OpenSSL was built with its own OPENSSLDIR, which may hold none.
constexpr const char* kSystemBundle = "/etc/ssl/certs/ca-certificates.crt";
constexpr const char* kSystemDir = "/etc/ssl/certs";

// Small iovecs (RESP headers) are sent together in one TLS record rather
// than one record and one syscall each.
constexpr size_t kCoalesce = 16 * 1024;

}  // namespace

std::shared_ptr<TlsContext> TlsContext::create(const TlsOptions& options, std::string* error) {
  ERR_clear_error();
  SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
  if (ctx == nullptr) {
    *error = opensslError("SSL_CTX_new");
    return nullptr;
  }
  std::shared_ptr<TlsContext> out(new TlsContext(ctx, options.insecure));
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  // Writes resume from where a full socket stopped them, from a buffer that
  // may move between tries (the same bytes, coalesced again).
  SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  if (options.insecure) {
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, nullptr);
    return out;
  }
  SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
  if (!options.caPem.empty()) {
    BIO* bio = BIO_new_mem_buf(options.caPem.data(), static_cast<int>(options.caPem.size()));
    X509_STORE* store = SSL_CTX_get_cert_store(ctx);
    int added = 0;
    while (X509* cert = PEM_read_bio_X509(bio, nullptr, nullptr, nullptr)) {
      if (X509_STORE_add_cert(store, cert) == 1) ++added;
      X509_free(cert);
    }
    BIO_free(bio);
    ERR_clear_error();  // the reader's end-of-input
    if (added == 0) {
      *error = "the TLS CA holds no PEM certificate";
      return nullptr;
    }
    return out;
  }
  SSL_CTX_set_default_verify_paths(ctx);
  if (access(kSystemBundle, R_OK) == 0 || access(kSystemDir, R_OK) == 0) {
    SSL_CTX_load_verify_locations(ctx, access(kSystemBundle, R_OK) == 0 ? kSystemBundle : nullptr,
                                  access(kSystemDir, R_OK) == 0 ? kSystemDir : nullptr);
  }
  ERR_clear_error();
  return out;
}

TlsContext::~TlsContext() { SSL_CTX_free(ctx_); }

std::unique_ptr<TlsSession> TlsSession::create(const std::shared_ptr<TlsContext>& ctx, int fd, const std::string& host,
                                               std::string* error) {
  ERR_clear_error();
  SSL* ssl = SSL_new(ctx->ctx());
  if (ssl == nullptr) {
    *error = opensslError("SSL_new");
    return nullptr;
  }
  std::unique_ptr<TlsSession> s(new TlsSession(ssl, ctx));
  if (SSL_set_fd(ssl, fd) != 1) {
    *error = opensslError("SSL_set_fd");
    return nullptr;
  }
  if (!isIpLiteral(host)) SSL_set_tlsext_host_name(ssl, host.c_str());
  if (!ctx->insecure()) {
    // The certificate must name the host we dialled: an IP SAN for an
    // address, a DNS name otherwise (what glide's rustls checks too).
    int ok = isIpLiteral(host) ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), host.c_str())
                               : SSL_set1_host(ssl, host.c_str());
    if (ok != 1) {
      *error = opensslError("setting the name to verify");
      return nullptr;
    }
  }
  SSL_set_connect_state(ssl);
  return s;
}

TlsSession::~TlsSession() {
  // No close_notify: the socket is closed right after, and a hung server
  // must not hold this thread.
  SSL_free(ssl_);
}

ssize_t TlsSession::result(int rc, size_t done, TlsWant* want, std::string* error, const char* what) {
  int e = SSL_get_error(ssl_, rc);
  *want = TlsWant::None;
  switch (e) {
    case SSL_ERROR_WANT_READ:
      *want = TlsWant::Read;
      return -1;
    case SSL_ERROR_WANT_WRITE:
      *want = TlsWant::Write;
      return -1;
    case SSL_ERROR_ZERO_RETURN:
      return 0;
    case SSL_ERROR_SYSCALL:
      if (ERR_peek_error() == 0) {
        if (errno == 0 || errno == ECONNRESET || errno == EPIPE) return 0;  // the peer went away
        *error = std::string(what) + ": " + std::strerror(errno);
        return -1;
      }
      break;
    default:
      break;
  }
  (void)done;
  long verify = SSL_get_verify_result(ssl_);
  std::string msg = opensslError(what);
  if (verify != X509_V_OK) msg += std::string(" (certificate: ") + X509_verify_cert_error_string(verify) + ")";
  *error = msg;
  return -1;
}

int TlsSession::handshake(TlsWant* want, std::string* error) {
  ERR_clear_error();
  errno = 0;
  int rc = SSL_connect(ssl_);
  if (rc == 1) return 1;
  ssize_t r = result(rc, 0, want, error, "TLS handshake");
  if (r == 0) {
    *error = "TLS handshake: connection closed by the server";
    return -1;
  }
  return *want != TlsWant::None ? 0 : -1;
}

ssize_t TlsSession::read(void* dest, size_t n, TlsWant* want, std::string* error) {
  ERR_clear_error();
  errno = 0;
  size_t got = 0;
  if (SSL_read_ex(ssl_, dest, n, &got) == 1) return static_cast<ssize_t>(got);
  return result(0, 0, want, error, "TLS read");
}

ssize_t TlsSession::writev(const struct iovec* iov, int count, TlsWant* want, std::string* error) {
  size_t done = 0;
  uint8_t small[kCoalesce];
  for (int i = 0; i < count;) {
    const void* data = iov[i].iov_base;
    size_t len = iov[i].iov_len;
    int used = 1;
    if (len < kCoalesce / 4 && i + 1 < count && iov[i + 1].iov_len < kCoalesce / 4) {
      // Pack a run of small pieces; the same pieces pack the same way on a retry.
      size_t fill = 0;
      used = 0;
      while (i + used < count && iov[i + used].iov_len < kCoalesce / 4 && fill + iov[i + used].iov_len <= kCoalesce) {
        std::memcpy(small + fill, iov[i + used].iov_base, iov[i + used].iov_len);
        fill += iov[i + used].iov_len;
        ++used;
      }
      data = small;
      len = fill;
    }
    ERR_clear_error();
    errno = 0;
    size_t wrote = 0;
    if (SSL_write_ex(ssl_, data, len, &wrote) != 1) {
      if (done > 0) return static_cast<ssize_t>(done);  // report progress; the next call retries the rest
      ssize_t r = result(0, done, want, error, "TLS write");
      if (r == 0) *error = "TLS write: connection closed by the server";
      return -1;
    }
    done += wrote;
    if (wrote < len) return static_cast<ssize_t>(done);  // a partial write: the caller moves on from here
    i += used;
  }
  return static_cast<ssize_t>(done);
}

}  // namespace kvtier
