// The signing intake (intake.hh). A message to sign keeps its iovecs in a `pending`, with
// slot 0 reserved for the DKIM-Signature field, until the spool answers: the intake
// contract wants the pieces valid until on_stored(), and the field lives here.
#include "sealrelay/dkim/intake.hh"

#include <ctime>

#include "sealrelay/util/log.hh"

namespace sr::dkim {

struct signing_intake::pending final : spool::intake_client {
  signing_intake* self = nullptr;
  pending_list::iterator me;
  spool::message_meta meta;
  std::vector<iovec> iov;  // [field, the producer's pieces...]
  std::string field;
  spool::intake_client* client = nullptr;

  void on_stored(bool ok) override {
    spool::intake_client* c = client;
    self->_pending.erase(me);  // `this` is gone from here on
    c->on_stored(ok);
  }
};

signing_intake::signing_intake(core::shard& sh, spool::intake& inner, signers s, sign_pool* pool)
    : _shard(sh), _inner(inner), _signers(std::move(s)), _pool(pool) {}

signing_intake::~signing_intake() { *_alive = false; }

void signing_intake::sign(size_t entry, std::span<const std::span<const std::byte>> chunks,
                          std::function<void(std::string)> then) {
  sign(entry, _signers.at(entry).prepare(chunks, int64_t(::time(nullptr))), std::move(then));
}

void signing_intake::sign(size_t entry, result<signer::prepared> p, std::function<void(std::string)> then) {
  signer& s = _signers.at(entry);
  if (!p) {
    ++_stats.failed;
    SR_WARN("dkim: d=%s: stored unsigned: %s", s.config().domain.c_str(), p.err().c_str());
    then({});
    return;
  }
  if (_pool && _pool->handles(entry)) {
    // The digest is copied into the job before sign() returns; the prepared field waits here.
    auto prepared = std::make_shared<signer::prepared>(std::move(*p));
    const tls::sha256_digest digest = prepared->digest;
    std::weak_ptr<bool> alive = _alive;
    const bool queued = _pool->sign(_shard, entry, digest,
                                    [this, alive, prepared, then, entry](std::optional<std::vector<uint8_t>> sig) {
                                      if (alive.expired() || !*alive.lock()) return;
                                      --_signing;
                                      if (!sig) {
                                        ++_stats.failed;
                                        SR_WARN("dkim: d=%s: RSA signature failed: stored unsigned",
                                                _signers.at(entry).config().domain.c_str());
                                        then({});
                                        return;
                                      }
                                      ++_stats.signed_pool;
                                      then(signer::complete(std::move(*prepared), *sig));
                                    });
    if (queued) {
      ++_signing;
      return;
    }
    *p = std::move(*prepared);  // the pool is full: sign here rather than not at all
  }
  auto f = s.finish(std::move(*p));
  if (!f) {
    ++_stats.failed;
    SR_WARN("dkim: d=%s: stored unsigned: %s", s.config().domain.c_str(), f.err().c_str());
    then({});
    return;
  }
  ++_stats.signed_inline;
  then(std::move(*f));
}

// One streamed message: its bytes hashed as they go to the body file.
struct signing_intake::streamed final : spool::stream_signer {
  signing_intake* self = nullptr;
  size_t entry = 0;
  std::shared_ptr<bool> alive;  // the intake's: a signer outliving it does nothing
  message_hash hash;

  void feed(std::span<const std::byte> bytes) override { hash.feed(bytes); }
  void finish(std::function<void(std::string)> done) override {
    if (!*alive) return done({});
    self->sign(entry, self->_signers.at(entry).prepare(hash, int64_t(::time(nullptr))), std::move(done));
  }
};

std::unique_ptr<spool::stream_signer> signing_intake::signer_for(std::string_view header_section) {
  if (_signers.empty()) return nullptr;
  const std::span<const std::byte> one{reinterpret_cast<const std::byte*>(header_section.data()),
                                       header_section.size()};
  const size_t entry = _signers.find(from_domain({&one, 1}));
  if (entry == signers::npos) return nullptr;
  auto s = std::make_unique<streamed>();
  s->self = this;
  s->entry = entry;
  s->alive = _alive;
  return s;
}

void signing_intake::submit(spool::message_meta meta, std::span<const iovec> data, spool::intake_client* client) {
  if (_signers.empty() || meta.external_body) return _inner.submit(std::move(meta), data, client);
  _spans.clear();
  for (const iovec& v : data) _spans.emplace_back(static_cast<const std::byte*>(v.iov_base), v.iov_len);
  const size_t entry = _signers.find(from_domain(_spans));
  if (entry == signers::npos) return _inner.submit(std::move(meta), data, client);

  auto it = _pending.emplace(_pending.end());
  it->self = this;
  it->me = it;
  it->meta = std::move(meta);
  it->client = client;
  it->iov.reserve(data.size() + 1);
  it->iov.push_back({nullptr, 0});
  it->iov.insert(it->iov.end(), data.begin(), data.end());
  sign(entry, _spans, [this, it](std::string field) { forward(it, std::move(field)); });
}

void signing_intake::forward(pending_list::iterator it, std::string field) {
  it->field = std::move(field);
  std::span<const iovec> pieces = it->iov;
  if (it->field.empty())
    pieces = pieces.subspan(1);
  else
    it->iov[0] = {it->field.data(), it->field.size()};
  _inner.submit(std::move(it->meta), pieces, &*it);
}

void signing_intake::submit_owned(spool::message_meta meta, std::string text, std::function<void(bool)> stored) {
  if (_signers.empty()) return _inner.submit_owned(std::move(meta), std::move(text), std::move(stored));
  const std::span<const std::byte> one{reinterpret_cast<const std::byte*>(text.data()), text.size()};
  const std::span<const std::span<const std::byte>> chunks{&one, 1};
  const size_t entry = _signers.find(from_domain(chunks));
  if (entry == signers::npos) return _inner.submit_owned(std::move(meta), std::move(text), std::move(stored));
  // The text moves into the continuation only after prepare() has read it.
  auto held = std::make_shared<std::tuple<spool::message_meta, std::string, std::function<void(bool)>>>(
      std::move(meta), std::string(), std::move(stored));
  std::string* body = &std::get<1>(*held);
  body->swap(text);
  const std::span<const std::byte> again{reinterpret_cast<const std::byte*>(body->data()), body->size()};
  sign(entry, {&again, 1}, [this, held](std::string field) {
    auto& [m, t, s] = *held;
    if (!field.empty()) t.insert(0, field);
    _inner.submit_owned(std::move(m), std::move(t), std::move(s));
  });
}

}  // namespace sr::dkim
