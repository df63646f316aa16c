#include "downloader/robots_cache.hpp"

#include <algorithm>
#include <array>
#include <cstring>

#include "downloader/outcome.hpp"

namespace trawl::downloader {

namespace {

std::string lower_ascii(std::string s) {
  for (char& c : s)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return s;
}

// One part of a parsed URL, or "" when it has none.
std::string url_part(CURLU* u, CURLUPart part, unsigned flags = 0) {
  char* v = nullptr;
  if (curl_url_get(u, part, &v, flags) != CURLUE_OK || v == nullptr) return {};
  std::string s(v);
  curl_free(v);
  return s;
}

} // namespace

struct RobotsCache::Fetch {
  CurlEasy easy;
  std::string origin;
  std::string body;
  bool capped = false; // more than kMaxRobotsBytes came: the rest was not read
  SocketGate gate;
  std::array<char, CURL_ERROR_SIZE> errbuf{};

  static std::size_t on_body(char* data, std::size_t size, std::size_t n, void* self) {
    auto* f = static_cast<Fetch*>(self);
    const std::size_t bytes = size * n;
    const std::size_t room = kMaxRobotsBytes - f->body.size();
    f->body.append(data, std::min(bytes, room));
    if (bytes > room) {
      f->capped = true;
      return 0; // ends the transfer (CURLE_WRITE_ERROR); what came is parsed
    }
    return bytes;
  }
};

RobotsCache::RobotsCache(CurlMulti& multi, RobotsSettings s)
    : multi_(multi), settings_(std::move(s)), token_(robots_token(settings_.user_agent)) {}

RobotsCache::~RobotsCache() = default; // each CurlEasy leaves the multi as it is freed

bool RobotsCache::split_url(const std::string& url, std::string& origin, std::string& path) {
  std::unique_ptr<CURLU, decltype(&curl_url_cleanup)> u(curl_url(), &curl_url_cleanup);
  if (!u || curl_url_set(u.get(), CURLUPART_URL, url.c_str(), 0) != CURLUE_OK) return false;
  const std::string scheme = lower_ascii(url_part(u.get(), CURLUPART_SCHEME));
  if (scheme != "http" && scheme != "https") return false;
  const std::string host = lower_ascii(url_part(u.get(), CURLUPART_HOST));
  const std::string port = url_part(u.get(), CURLUPART_PORT, CURLU_DEFAULT_PORT);
  if (host.empty() || port.empty()) return false;
  origin = scheme + "://" + host + ":" + port;
  path = url_part(u.get(), CURLUPART_PATH);
  if (path.empty()) path = "/";
  if (const std::string query = url_part(u.get(), CURLUPART_QUERY); !query.empty())
    path += "?" + query;
  return true;
}

RobotsVerdict RobotsCache::check(const proto::Task& task, Clock::time_point now) {
  std::string origin, path;
  if (!split_url(task.url, origin, path)) return {};
  if (auto it = known_.find(origin); it != known_.end()) {
    if (now - it->second.at < kKeep) {
      const Known& k = it->second;
      const auto v = k.rules.check(path);
      if (v.allowed) return {};
      if (!k.why.empty())
        return {RobotsVerdict::State::refused,
                bounded(origin + "/robots.txt could not be read (" + k.why +
                            "): every path is disallowed (RFC 9309 unreachable)",
                        proto::kMaxDetailBytes)};
      return {RobotsVerdict::State::refused,
              bounded("disallowed by " + origin + "/robots.txt (" + v.rule + ")",
                      proto::kMaxDetailBytes)};
    }
    known_.erase(it); // older than a day: read it again
  }
  if (!parked_.count(origin)) start(origin);
  parked_[origin].push_back(task);
  ++parked_count_;
  return {RobotsVerdict::State::wait, {}};
}

void RobotsCache::start(const std::string& origin) {
  auto f = std::make_unique<Fetch>();
  f->origin = origin;
  CurlEasy& e = f->easy;
  e.set_ptr(CURLOPT_PRIVATE, f.get());
  e.set_ptr(CURLOPT_ERRORBUFFER, f->errbuf.data());
  e.set_str(CURLOPT_URL, (origin + "/robots.txt").c_str());
  e.set_write_fn(CURLOPT_WRITEFUNCTION, &Fetch::on_body);
  e.set_ptr(CURLOPT_WRITEDATA, f.get());
  e.set_str(CURLOPT_PROTOCOLS_STR, "http,https");
  e.set_str(CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
  e.set_long(CURLOPT_FOLLOWLOCATION, 1L);
  e.set_long(CURLOPT_MAXREDIRS, 5L); // RFC 9309 2.3.1.2: at least five
  e.set_long(CURLOPT_CONNECTTIMEOUT, settings_.connect_timeout_s);
  e.set_long(CURLOPT_TIMEOUT, settings_.timeout_s);
  e.set_long(CURLOPT_NOSIGNAL, 1L);
  e.set_str(CURLOPT_USERAGENT, settings_.user_agent.c_str());
  if (settings_.address_filter != nullptr) {
    f->gate.filter = settings_.address_filter;
    e.set_opensocket_fn(&open_gated_socket);
    e.set_ptr(CURLOPT_OPENSOCKETDATA, &f->gate);
  }
  multi_.add(e);
  CURL* key = e.get();
  fetches_.emplace(key, std::move(f));
}

std::optional<std::vector<proto::Task>> RobotsCache::on_done(CURL* easy, CURLcode code,
                                                             Clock::time_point now) {
  const auto it = fetches_.find(easy);
  if (it == fetches_.end()) return std::nullopt;
  std::unique_ptr<Fetch> f = std::move(it->second);
  fetches_.erase(it);
  multi_.remove(f->easy);
  ++fetched_;

  Known k;
  k.at = now;
  const long status = f->easy.info_long(CURLINFO_RESPONSE_CODE);
  if (code == CURLE_OK || (code == CURLE_WRITE_ERROR && f->capped)) {
    if (status >= 200 && status < 300) {
      k.rules = RobotsRules::parse(f->body, token_);
    } else if (status >= 500) {
      k.rules = RobotsRules::disallow_all();
      k.why = "HTTP " + std::to_string(status);
    } // 4xx (and any other answer): unavailable, everything allowed
  } else if (code != CURLE_TOO_MANY_REDIRECTS) {
    k.rules = RobotsRules::disallow_all();
    k.why = f->errbuf[0] != '\0' ? std::string(f->errbuf.data()) : curl_easy_strerror(code);
    if (!f->gate.refused.empty()) k.why = "refused by --deny-private: " + f->gate.refused;
  }
  if (known_.size() >= kMaxOrigins) forget_older_half();
  known_[f->origin] = std::move(k);

  std::vector<proto::Task> ready;
  if (auto p = parked_.find(f->origin); p != parked_.end()) {
    ready = std::move(p->second);
    parked_.erase(p);
    parked_count_ -= ready.size();
  }
  return ready;
}

std::vector<proto::Task> RobotsCache::take_parked() {
  for (auto& [easy, f] : fetches_) multi_.remove(f->easy);
  fetches_.clear();
  std::vector<proto::Task> all;
  for (auto& [origin, list] : parked_)
    for (auto& t : list) all.push_back(std::move(t));
  parked_.clear();
  parked_count_ = 0;
  return all;
}

void RobotsCache::forget_older_half() {
  std::vector<Clock::time_point> times;
  times.reserve(known_.size());
  for (const auto& [origin, k] : known_) times.push_back(k.at);
  auto mid = times.begin() + static_cast<std::ptrdiff_t>(times.size() / 2);
  std::nth_element(times.begin(), mid, times.end());
  const auto cut = *mid;
  std::erase_if(known_, [cut](const auto& kv) { return kv.second.at <= cut; });
}

} // namespace trawl::downloader
