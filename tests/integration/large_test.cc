// Large messages (issue 11 item 4) against the real daemon: several multi-megabyte
// messages sent at once over STARTTLS stream through the spool's body files and reach a
// TLS fake MX byte for byte; the body files are gone once delivered; a large message
// acknowledged before kill -9 is delivered whole after the restart. Memory is measured by
// tools/bench-large, not here.
#include <gtest/gtest.h>

#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "support/harness.hh"
#include "support/peers.hh"
#include "support/world.hh"

namespace fs = std::filesystem;

namespace sr::integ {
namespace {

// A message of about `size` bytes: ASCII (the fake MX's record is JSON), lines that start
// with dots (stuffed on both hops), lines of 998 characters, a unique Subject.
std::string large_message(const std::string& subject, size_t size, int seed) {
  std::string m = "From: <big@sender.test>\r\nTo: <rcpt@far.test>\r\nSubject: " + subject + "\r\n\r\n";
  for (size_t i = 0; m.size() < size; ++i) {
    if (i % 5 == 0) m += ".";
    if (i % 97 == 0) m += std::string(997, char('a' + (i + size_t(seed)) % 26));
    else m += "line " + std::to_string(i) + " of message " + std::to_string(seed);
    m += "\r\n";
  }
  return m;
}

// Connect, EHLO, STARTTLS, handshake, EHLO again.
bool open_tls_session(raw_client& c, uint16_t port, std::string* why) {
  auto fail = [&](std::string w) {
    *why = std::move(w);
    return false;
  };
  if (!c.connect(port)) return fail("connect");
  auto g = c.read_reply();
  if (!g || reply_code(*g) != 220) return fail("greeting: " + g.value_or("none"));
  auto e = c.command("EHLO client.test");
  if (!e || reply_code(*e) != 250) return fail("EHLO: " + e.value_or("none"));
  auto s = c.command("STARTTLS");
  if (!s || reply_code(*s) != 220) return fail("STARTTLS: " + s.value_or("none"));
  if (!c.start_tls()) return fail("TLS handshake");
  e = c.command("EHLO client.test");
  if (!e || reply_code(*e) != 250) return fail("EHLO after TLS: " + e.value_or("none"));
  return true;
}

// One transaction announcing the message's size on MAIL (SIZE=, RFC 1870, as Postfix and
// swaks send it: the relay then streams from the header section on); the reply to the dot.
std::string send_with_size(raw_client& c, const std::string& rcpt, const std::string& stuffed) {
  auto m = c.command("MAIL FROM:<big@sender.test> SIZE=" + std::to_string(stuffed.size()));
  if (!m || reply_code(*m) != 250) return "MAIL: " + m.value_or("none");
  auto r = c.command("RCPT TO:<" + rcpt + ">");
  if (!r || reply_code(*r) != 250) return "RCPT: " + r.value_or("none");
  auto d = c.command("DATA");
  if (!d || reply_code(*d) != 354) return "DATA: " + d.value_or("none");
  if (!c.send(stuffed) || !c.send(".\r\n")) return "send failed";
  return c.read_reply(30s).value_or("no reply");
}

// Files in every partition's large/ directory of the relay's spool.
std::vector<std::string> body_files(const relay& r) {
  std::vector<std::string> v;
  std::error_code ec;
  for (const auto& part : fs::directory_iterator(r.state_dir() / "spool", ec))
    for (const auto& f : fs::directory_iterator(part.path() / "large", ec)) v.push_back(f.path().string());
  return v;
}

// The MX record whose data has Subject `subject`; null when none.
const mx_message* find_subject(const std::vector<mx_message>& got, const std::string& subject) {
  for (const auto& m : got)
    if (contains(m.data, "Subject: " + subject + "\r\n")) return &m;
  return nullptr;
}

// What the MX received is the relay's Received: field followed by exactly `sent`.
void expect_delivered_whole(const mx_message* m, const std::string& sent, const std::string& subject) {
  ASSERT_NE(m, nullptr) << subject << " not delivered";
  EXPECT_TRUE(m->accepted);
  EXPECT_TRUE(m->tls) << "delivered without TLS";
  EXPECT_TRUE(m->data.starts_with("Received: ")) << m->data.substr(0, 200);
  ASSERT_GE(m->data.size(), sent.size());
  const std::string tail = m->data.substr(m->data.size() - sent.size());
  EXPECT_EQ(std::hash<std::string>{}(tail), std::hash<std::string>{}(sent))
      << subject << ": the delivered bytes differ from those sent (" << m->data.size() << " bytes)";
  EXPECT_TRUE(tail == sent);
  // Nothing but one Received: field before the message.
  EXPECT_EQ(m->data.find("\r\nFrom: <big@sender.test>"), m->data.size() - sent.size() - 2);
}

TEST(LargeMessages, ConcurrentMultiMegabyteMessagesOverStartTlsArriveByteIdentical) {
  uint16_t port = mx_port();
  ASSERT_NE(port, 0);
  fake_mx mx({.hosts = {"127.0.0.2"}, .port = port});
  ASSERT_TRUE(mx.start()) << mx.error();
  relay_options o = delivery_options("127.0.0.1:9", port, {}, route_to("*", "127.0.0.2", port));
  o.listeners = {listener{.tls = "starttls"}};
  relay r(o);
  ASSERT_TRUE(r.start()) << r.error();

  constexpr int n = 4;
  std::vector<std::string> subjects(n), bodies(n), replies(n), errors(n);
  for (int i = 0; i < n; ++i) {
    subjects[i] = unique("large-" + std::to_string(i));
    bodies[i] = large_message(subjects[i], (3 + size_t(i)) * 1024 * 1024 + size_t(i) * 7919, i);
  }
  std::vector<std::thread> senders;
  for (int i = 0; i < n; ++i)
    senders.emplace_back([&, i] {
      raw_client c;
      if (!open_tls_session(c, r.port(), &errors[i])) return;
      const std::string rcpt = "rcpt" + std::to_string(i) + "@far.test";
      if (i % 2) {
        replies[i] = send_with_size(c, rcpt, dot_stuff(bodies[i]));  // announced: streams at once
      } else {
        auto rep = send_message(c, "big@sender.test", {rcpt}, dot_stuff(bodies[i]));
        replies[i] = rep.value_or("no reply");
      }
      c.command("QUIT");
    });
  for (auto& t : senders) t.join();
  for (int i = 0; i < n; ++i) {
    ASSERT_TRUE(errors[i].empty()) << errors[i];
    ASSERT_TRUE(queued_id(replies[i])) << replies[i] << "\n" << r.log();
  }

  ASSERT_TRUE(mx.wait_messages(n, 60s)) << r.log() << mx.log();
  std::string raw;
  EXPECT_TRUE(wait_queue_empty(r, 30s, &raw)) << raw;
  auto got = mx.messages();
  for (int i = 0; i < n; ++i) expect_delivered_whole(find_subject(got, subjects[i]), bodies[i], subjects[i]);
  EXPECT_EQ(r.stop(), 0) << r.log();
  // Every body file went with its message's last DONE.
  EXPECT_TRUE(body_files(r).empty()) << body_files(r).front();
}

TEST(LargeMessages, AcknowledgedLargeMessageSurvivesKill9AndIsDeliveredWhole) {
  uint16_t port = mx_port();
  ASSERT_NE(port, 0);
  // No MX yet: the first attempt fails to connect and the next is an hour away.
  relay_options o = parked_options(port, 1, route_to("*", "127.0.0.2", port));
  o.listeners = {listener{.tls = "starttls"}};
  relay r(o);
  ASSERT_TRUE(r.start()) << r.error();
  const std::string subject = unique("large-crash");
  const std::string body = large_message(subject, 5 * 1024 * 1024 + 13, 9);
  raw_client c;
  std::string why;
  ASSERT_TRUE(open_tls_session(c, r.port(), &why)) << why;
  auto rep = send_message(c, "big@sender.test", {"rcpt@far.test"}, dot_stuff(body));
  ASSERT_TRUE(rep);
  auto id = queued_id(*rep);
  ASSERT_TRUE(id) << *rep << r.log();

  // A second large message cut off mid-DATA: its body file must not come back.
  raw_client partial;
  ASSERT_TRUE(open_tls_session(partial, r.port(), &why)) << why;
  ASSERT_TRUE(partial.command("MAIL FROM:<cut@sender.test> SIZE=2200000"));
  ASSERT_TRUE(partial.command("RCPT TO:<cut@far.test>"));
  auto d = partial.command("DATA");
  ASSERT_TRUE(d && reply_code(*d) == 354) << d.value_or("none");
  ASSERT_TRUE(partial.send(dot_stuff(large_message("cut", 2 * 1024 * 1024, 3))));
  bool two_files = false;
  for (auto until = clock::now() + 10s; !two_files && clock::now() < until;) {
    two_files = body_files(r).size() >= 2;
    if (!two_files) std::this_thread::sleep_for(20ms);
  }
  EXPECT_TRUE(two_files) << "the partial message never reached a body file";

  r.kill9();
  auto files = body_files(r);
  bool named = false;
  for (const auto& f : files) named = named || f.ends_with("/" + *id);
  EXPECT_TRUE(named) << "no body file for " << *id;

  fake_mx mx({.hosts = {"127.0.0.2"}, .port = port});
  ASSERT_TRUE(mx.start()) << mx.error();
  ASSERT_TRUE(r.start()) << "restart after kill -9 failed: " << r.error();
  ASSERT_TRUE(mx.wait_messages(1, 60s)) << r.log();
  std::string raw;
  EXPECT_TRUE(wait_queue_empty(r, 30s, &raw)) << raw;
  EXPECT_EQ(r.stop(), 0) << r.log();
  auto got = mx.messages();
  EXPECT_EQ(got.size(), 1u);
  expect_delivered_whole(find_subject(got, subject), body, subject);
  EXPECT_TRUE(body_files(r).empty()) << body_files(r).front();  // the orphan went at start-up
}

}  // namespace
}  // namespace sr::integ
